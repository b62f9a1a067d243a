"""Shared (common) randomness for channel simulation, addressed by counters.

Encoder and decoder both hold a :class:`SharedRandomness` made from the same 64-bit seed (carried in
the bitstream header, ``Header.seed``).  Every draw is addressed by a *path* of counters, e.g.
``(PURPOSE_PFR, step, chunk)`` and then the candidate index, and derived with
``jax.random.fold_in``; nothing depends on how many draws were made before, on the batch size, on
the process or on the order in which the two sides ask for them.

Overflow safety (DiffC once drew different candidates on the two sides because an ``int32``
offset ``index * dim`` wrapped): no offsets are ever computed.  Each counter is folded in as two
``uint32`` halves (``fold_in(fold_in(key, hi), lo)``), so any counter in ``[0, 2**64)`` is
addressed exactly, and per-candidate draws use one key per candidate index (``uint32``, checked).

The PRNG implementation is pinned to ``threefry2x32`` so that bitstreams do not change if JAX's
default PRNG changes.  Bits are identical on every backend; float transforms (normal via erfinv)
are deterministic per backend (CPU encoder + CPU decoder reproduce samples bit-exactly).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SharedRandomness",
    "PURPOSE_DQ",
    "PURPOSE_PFR",
    "PURPOSE_SHUFFLE",
    "PURPOSE_PRIOR",
    "fold_in_u64",
    "candidate_keys",
]

# Domain-separation tags: first counter of every path.
PURPOSE_DQ = 1
PURPOSE_PFR = 2
PURPOSE_SHUFFLE = 3
PURPOSE_PRIOR = 4

_U64 = 2**64
IMPL = "threefry2x32"


def _check_counter(c) -> int:
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
        raise TypeError(f"randomness counters must be Python/NumPy integers, got {type(c).__name__}")
    c = int(c)
    if not 0 <= c < _U64:
        raise ValueError(f"randomness counter {c} is outside [0, 2**64); use non-negative 64-bit counters")
    return c


def fold_in_u64(key: jax.Array, counter: int) -> jax.Array:
    """fold a 64-bit non-negative Python integer into ``key`` as two uint32 halves (hi, then lo)."""
    c = _check_counter(counter)
    key = jax.random.fold_in(key, np.uint32(c >> 32))
    return jax.random.fold_in(key, np.uint32(c & 0xFFFFFFFF))


def candidate_keys(key: jax.Array, start, size: int) -> jax.Array:
    """Keys for candidate indices ``start, ..., start + size - 1`` (jit-able; ``start`` may be traced).

    Index ``i`` gets ``fold_in(key, uint32(i))``: the same key whether it is generated inside a
    vectorised block or alone, for any block size.  Indices must be < 2**32 (callers check).

    Returns a key array of shape [size].
    """
    idx = jnp.asarray(start, jnp.uint32) + jnp.arange(size, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)


@dataclasses.dataclass(frozen=True)
class SharedRandomness:
    """Common randomness from a 64-bit seed.

    ``SharedRandomness(seed).key(PURPOSE_PFR, step, chunk)`` returns the same key in any process.
    ``seed`` must be in [0, 2**64) (the bitstream stores it as u64).
    """

    seed: int

    def __post_init__(self):
        _check_counter(self.seed)

    @property
    def root(self) -> jax.Array:
        hi, lo = self.seed >> 32, self.seed & 0xFFFFFFFF
        return jax.random.wrap_key_data(np.array([hi, lo], dtype=np.uint32), impl=IMPL)

    def key(self, *counters: int) -> jax.Array:
        """Key addressed by a path of 64-bit counters (Python ints)."""
        k = self.root
        for c in counters:
            k = fold_in_u64(k, c)
        return k

    def uniform(self, counters: Sequence[int], shape, *, minval=0.0, maxval=1.0, dtype=jnp.float32):
        return jax.random.uniform(self.key(*counters), tuple(shape), dtype, minval, maxval)

    def normal(self, counters: Sequence[int], shape, dtype=jnp.float32):
        return jax.random.normal(self.key(*counters), tuple(shape), dtype)

    def permutation(self, counters: Sequence[int], n: int) -> np.ndarray:
        """A reproducible permutation of range(n) (int64 NumPy array; exact for any n)."""
        if n <= 0:
            raise ValueError(f"permutation size must be positive, got {n}")
        # random bits per element, ties broken by position: stable argsort -> identical everywhere.
        bits = np.asarray(jax.random.bits(self.key(*counters), (n,), jnp.uint32)).astype(np.uint64)
        return np.argsort((bits << np.uint64(32)) | np.arange(n, dtype=np.uint64), kind="stable").astype(np.int64)
