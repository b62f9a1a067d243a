"""Dithered quantization (DQ): exact simulation of the uniform noise channel Y = X + U (review Eq. (14)).

Shared dither ``W ~ U(-D/2, D/2)^k`` (from :class:`~gencomp_jax.channel.randomness.SharedRandomness`);
the sender transmits ``K = round((X + W) / D)``, the receiver outputs ``Y = K D - W``.  Then
``Y - X ~ U(-D/2, D/2)`` independently of X, and with the entropy model below the expected code
length is ``H(K | W) = I(X; Y) = h(Y) - log2 D`` (ideal; the real coder adds < 1%).

Entropy model.  The density model of Y is ``P_Y = psi * U(-D/2, D/2)`` with ``psi`` a Gaussian or
logistic (``loc``, ``scale``) model of X.  Discretizing ``P_Y`` on the grid ``k D - w`` gives
``P(K = k | W = w) = D * p_Y(k D - w) = psi((k D - w - D/2, k D - w + D/2])`` - the psi-mass of the
quantization cell, i.e. :func:`gencomp_jax.entropy.densities.bin_probability` (the mass of ``P_Y``
itself on the cell, ``convolved_uniform_bin_probability``, would be a mismatched, smoother model).
The same quantity at ``Y = X + U`` is the training proxy: :func:`dq_rate_proxy_bits` returns
``-log2(D p_Y(y))``, whose expectation equals the real DQ rate.

Shapes: ``x, loc, scale, delta, w`` broadcast to a common shape ``S``; everything is element-wise.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel.index_coding import read_varint as _read_varint, write_varint as _varint
from gencomp_jax.entropy import coder as _coder
from gencomp_jax.entropy import densities

__all__ = [
    "dither",
    "dq_quantize",
    "dq_reconstruct",
    "dq_noisy_proxy",
    "dq_rate_proxy_bits",
    "dq_bits",
    "dq_tables",
    "dq_encode",
    "dq_decode",
]

MAX_HALF_WIDTH = 512  # table covers center +- half_width cells; further values use the coder's escape
TAIL_SCALES = {"gaussian": 8.0, "logistic": 16.0}
_MAX_ABS_INDEX = 2**24  # float32 represents integers exactly up to here
_BATCH = 1 << 16  # elements per entropy-coded sub-stream (bounds the [n, K] table memory)


def dither(key: jax.Array, shape, delta) -> jax.Array:
    """Shared dither W ~ U(-delta/2, delta/2): float32 of ``shape`` (delta broadcastable to it)."""
    u = jax.random.uniform(key, tuple(shape), jnp.float32, -0.5, 0.5)
    return u * jnp.asarray(delta, jnp.float32)


@jax.jit
def dq_quantize(x, w, delta):
    """K = round((x + w) / delta) -> int32 of the broadcast shape."""
    return jnp.round((jnp.asarray(x, jnp.float32) + w) / delta).astype(jnp.int32)


@jax.jit
def dq_reconstruct(k, w, delta):
    """Y = K delta - w -> float32."""
    return jnp.asarray(k, jnp.float32) * delta - w


def dq_noisy_proxy(key: jax.Array, x, delta):
    """Training-time proxy Y = x + U, U ~ U(-delta/2, delta/2) (same law as DQ's output given x)."""
    x = jnp.asarray(x, jnp.float32)
    return x + dither(key, x.shape, jnp.broadcast_to(delta, x.shape))


@functools.partial(jax.jit, static_argnames=("family",))
def dq_rate_proxy_bits(y, loc, scale, delta, *, family: str = "gaussian"):
    """-log2(delta * p_Y(y)) per element, p_Y = psi(loc, scale) * U(-delta/2, delta/2).

    Differentiable in (y, loc, scale); at y = X + U its mean is the DQ rate in bits.
    """
    half = 0.5 * jnp.asarray(delta, jnp.float32)
    return -jnp.log2(densities.bin_probability(family, loc, scale, y - half, y + half))


@functools.partial(jax.jit, static_argnames=("family",))
def dq_bits(k, w, loc, scale, delta, *, family: str = "gaussian"):
    """Ideal code length -log2 P(K = k | W = w) per element (float32)."""
    y = jnp.asarray(k, jnp.float32) * delta - w
    return dq_rate_proxy_bits(y, loc, scale, delta, family=family)


@functools.partial(jax.jit, static_argnames=("family", "half_width"))
def _tables(loc, scale, delta, w, family, half_width):
    c = jnp.round((loc + w) / delta)  # most likely K
    j = jnp.arange(-half_width, half_width + 1, dtype=jnp.float32)
    ks = c[:, None] + j[None, :]
    lower = ks * delta[:, None] - w[:, None] - 0.5 * delta[:, None]
    p = densities.bin_probability(family, loc[:, None], scale[:, None], lower, lower + delta[:, None])
    lo_edge = lower[:, 0]
    hi_edge = lower[:, -1] + delta
    tail = (densities.bin_probability(family, loc, scale, -jnp.inf, lo_edge)
            + densities.bin_probability(family, loc, scale, hi_edge, jnp.inf))
    return jnp.concatenate([p, tail[:, None]], axis=1), (c - half_width).astype(jnp.int32)


def _half_width(scale, delta, family) -> int:
    r = float(np.max(np.asarray(scale, np.float64) / np.asarray(delta, np.float64)))
    h = int(math.ceil(TAIL_SCALES[family] * r)) + 1
    h = 1 << max(h - 1, 1).bit_length()  # power of two: few distinct compiled shapes
    return min(h, MAX_HALF_WIDTH)


def dq_tables(loc, scale, delta, w, *, family: str = "gaussian"):
    """Float entropy-model tables for K given W.

    Args: loc, scale, delta, w: broadcastable arrays, flattened to n elements.
    Returns: (pmf float32 [n, 2h+2], offsets int32 [n]); row i codes K in offsets[i] .. offsets[i]+2h,
      the last column is the tail (escape) mass.  h = min(512, ~8 (gaussian) / 16 (logistic) scales).
    """
    densities._check_family(family)
    loc, scale, delta, w = (jnp.ravel(a) for a in jnp.broadcast_arrays(
        jnp.asarray(loc, jnp.float32), jnp.asarray(scale, jnp.float32), jnp.asarray(delta, jnp.float32),
        jnp.asarray(w, jnp.float32)))
    return _tables(loc, scale, delta, w, family, _half_width(scale, delta, family))


def _check_inputs(x, loc, scale, delta, w):
    arrs = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float32) for a in (x, loc, scale, delta, w)))
    x, loc, scale, delta, w = arrs
    if not bool(jnp.all(delta > 0)) or not bool(jnp.all(scale > 0)):
        raise ValueError("dq: delta and scale must be > 0 everywhere")
    if not bool(jnp.all(jnp.isfinite(x))) or not bool(jnp.all(jnp.isfinite(loc))):
        raise ValueError("dq: x and loc must be finite")
    if not bool(jnp.all(jnp.abs(w) <= 0.5 * delta * (1 + 1e-6))):
        raise ValueError("dq: the dither must lie in [-delta/2, delta/2]; draw it with dq.dither()")
    if bool(jnp.any(jnp.abs((x + w) / delta) >= _MAX_ABS_INDEX)):
        raise ValueError(f"dq: |x/delta| reaches {_MAX_ABS_INDEX}; float32 DQ would be inexact - rescale x or "
                         "raise delta")
    return x, loc, scale, delta, w


def _int_tables(loc, scale, delta, w, family):
    pmf, off = dq_tables(loc, scale, delta, w, family=family)
    return _coder.quantize_pmf(np.asarray(pmf, np.float64)), np.asarray(off, np.int64)


def dq_encode(x, loc, scale, delta, *, w, family: str = "gaussian"):
    """DQ-encode x with entropy model psi(loc, scale) * U.

    Args: x, loc, scale (> 0), delta (> 0), w (the shared dither, see :func:`dither`): broadcastable.
    Returns: (data: bytes, y: float32 of the broadcast shape) - y is exactly what dq_decode returns.
    Symbols beyond the table use the coder's escape, so any finite input is codable.
    """
    x, loc, scale, delta, w = _check_inputs(x, loc, scale, delta, w)
    k = dq_quantize(x, w, delta)
    kf, lf, sf, df, wf = (np.asarray(a).ravel() for a in (k, loc, scale, delta, w))
    parts = []
    for s in range(0, kf.shape[0], _BATCH):
        e = slice(s, s + _BATCH)
        tab, off = _int_tables(lf[e], sf[e], df[e], wf[e], family)
        blob = _coder.encode_per_symbol(kf[e].astype(np.int64), tab, off)
        parts.append(_varint(len(blob)) + blob)
    return b"".join(parts), dq_reconstruct(k, w, delta)


def dq_decode(data: bytes, loc, scale, delta, *, w, family: str = "gaussian"):
    """Inverse of :func:`dq_encode` -> y float32 (broadcast shape of loc, scale, delta, w)."""
    loc, scale, delta, w = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float32) for a in (loc, scale, delta, w)))
    lf, sf, df, wf = (np.asarray(a).ravel() for a in (loc, scale, delta, w))
    n = lf.shape[0]
    ks, pos = [], 0
    for s in range(0, n, _BATCH):
        e = slice(s, s + _BATCH)
        size, pos = _read_varint(data, pos)
        if pos + size > len(data):
            raise _coder.CodingError("dq: data is truncated")
        tab, off = _int_tables(lf[e], sf[e], df[e], wf[e], family)
        ks.append(_coder.decode_per_symbol(data[pos: pos + size], tab, off))
        pos += size
    if pos != len(data):
        raise _coder.CodingError("dq: trailing bytes after the last stream (wrong shape or corrupt data)")
    k = jnp.asarray(np.concatenate(ks) if ks else np.zeros(0, np.int64), jnp.int32).reshape(loc.shape)
    return dq_reconstruct(k, w, delta)
