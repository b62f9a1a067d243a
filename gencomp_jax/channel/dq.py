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

Real bits (:func:`dq_encode` / :func:`dq_decode`): each element's symbol ``K - round((loc + w)/D)`` is
coded with a model whose support adapts to ``scale/D`` (mass outside < 2^-20, plus an exact escape):
constriction's native ``QuantizedGaussian`` for the Gaussian family (no tables), and for the logistic
family float32 tables built under jit (numpy for small batches: no compile per shape), one level for
``scale/D <~ 1`` and two levels (coarse cell, then offset) above, so the cost stays ~O(sqrt(scale/D))
per element; see the comment above ``TAIL_MASS_SCALES``.
Throughput at k = 10^6 (encode + decode, 2 shared CPU cores): gaussian ~1-3.5 M elements/s, logistic
~0.6-1.9 M elements/s depending on the scale mix and machine load (benchmarks/channel.py).  Encoder and
decoder derive every model from the same float32 inputs with the same code, so they agree bit for bit
on one machine/software stack (as before, float behaviour of exp/erf may differ across CPU types).

Shapes: ``x, loc, scale, delta, w`` broadcast to a common shape ``S``; everything is element-wise.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.entropy import coder as _coder
from gencomp_jax.entropy import densities

__all__ = [
    "dither",
    "dq_quantize",
    "dq_reconstruct",
    "dq_noisy_proxy",
    "dq_rate_proxy_bits",
    "dq_bits",
    "dq_encode",
    "dq_decode",
]

_MAX_ABS_INDEX = 2**24  # float32 represents integers exactly up to here


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


# ----------------------------------------------------------------------------------------------
# Real bits.  Both sides derive, from the same float32 (loc, scale, delta, w), in float64 numpy (exact
# IEEE arithmetic, no transcendental functions): the table centre c = round((loc + w)/delta), the
# standardized offset m = (loc + w)/delta - c in [-1/2, 1/2] and s' = scale/delta, so that
# P(K = c + j | W = w) = psi-mass of the cell (j - 1/2, j + 1/2] under psi(m, s').  The symbol
# K - c is coded with a model whose support adapts per element: elements are grouped by half-width
# class H(s') ~ TAIL_MASS_SCALES * s' (mass beyond < 2^-20), and each group is one segment of a single
# ANS stream (gencomp_jax.entropy.coder's StreamEncoder):
#   gaussian: constriction's native QuantizedGaussian(-H, H) with per-symbol (m, s') - no tables;
#   logistic: float32 tables (CDF differences via the tail symmetry, last column = escape mass), 24-bit
#             quantized by constriction's Categorical: one table [rows, 2H + 2] for H <= _TWO_LEVEL, else
#             two levels - coarse cell a of g ~ sqrt(2H) cells, then the offset b | a - at ~O(sqrt(H)).
# Anything outside the support is escaped (exact, lossless).  Cost: O(1) per element (gaussian) or
# O(s') per element (logistic), instead of a fixed-width table per element.

TAIL_MASS_SCALES = {"gaussian": 6.0, "logistic": 15.0}  # P(|X - loc| > c * scale) < 2^-20
_MAX_CLASS_HALF_WIDTH = {"gaussian": 1 << 18, "logistic": 1 << 22}
_TWO_LEVEL = 16  # logistic classes above this half-width are coded in two levels (coarse cell, offset)
_EXACT_FINE = 1 << 12  # two-level classes up to here use exact CDF differences for the offset, above: density
_TABLE_ENTRIES = 1 << 21  # float32 table entries per jit call (8 MiB)


def _centre(loc, scale, delta, w):
    loc, scale, delta, w = (np.asarray(a, np.float32).astype(np.float64).ravel() for a in (loc, scale, delta, w))
    t = (loc + w) / delta
    c = np.round(t)
    return c.astype(np.int64), t - c, scale / delta


def _classes(sd, family):
    """Half-width class per element (int64).  gaussian: powers of two.  logistic: 2 steps per octave up
    to _TWO_LEVEL (one table), then powers of two (two levels; cost ~ sqrt(H)).  Few classes = few
    compiled table shapes."""
    hw = np.ceil(TAIL_MASS_SCALES[family] * np.minimum(sd, 1e9)).astype(np.int64) + 2
    hw = np.maximum(hw, 4)
    e = np.floor(np.log2(hw - 1)).astype(np.int64) + 1  # 2^(e-1) < hw <= 2^e
    h = np.left_shift(1, e)
    if family == "logistic":
        q = np.left_shift(1, np.maximum(e - 2, 0))
        h = np.where(h > _TWO_LEVEL, h, -(-hw // q) * q)
    return np.minimum(h, _MAX_CLASS_HALF_WIDTH[family])


def _two_level_geometry(h):
    """Coarse cell g (power of two ~ sqrt(2h)) and coarse half-width A for a two-level class h."""
    g = 1 << int(math.ceil(0.5 * math.log2(2 * h)))
    return g, -(-h // g) + 1


@functools.partial(jax.jit, static_argnames=("half_width", "cell"))
def _logistic_rows(m, sd, half_width, cell=1):
    """float32 [rows, 2H + 2]: masses of the cells [cell*i - 1/2, cell*(i+1) - 1/2), i = -H..H, under
    logistic(m, sd), then the tail (escape) mass."""
    j = cell * jnp.arange(-half_width, half_width + 2, dtype=jnp.float32) - 0.5  # 2H + 2 cell edges
    e = (j[None, :] - m[:, None]) / sd[:, None]
    lower, upper = jax.nn.sigmoid(e), jax.nn.sigmoid(-e)  # F(e), 1 - F(e) without cancellation
    flip = (e[:, :-1] + e[:, 1:]) > 0
    p = jnp.where(flip, upper[:, :-1] - upper[:, 1:], lower[:, 1:] - lower[:, :-1])
    tail = lower[:, 0] + upper[:, -1]
    return jnp.concatenate([jnp.maximum(p, 0.0), tail[:, None]], axis=1)


def _fine_rows(xp, sigmoid, softplus, a, m, sd, cell, exact):
    b = xp.arange(cell + 1 if exact else cell, dtype=xp.float32)
    x = a[:, None] * xp.float32(cell) + b[None, :] - m[:, None]
    if exact:  # masses of the unit cells (cell*a + b - 1/2, cell*a + b + 1/2], tail-symmetric differences
        e = (x - xp.float32(0.5)) / sd[:, None]
        lower, upper = sigmoid(e), sigmoid(-e)
        flip = (e[:, :-1] + e[:, 1:]) > 0
        f = xp.maximum(xp.where(flip, upper[:, :-1] - upper[:, 1:], lower[:, 1:] - lower[:, :-1]), 0)
        f = xp.where(xp.sum(f, axis=1, keepdims=True) > 0, f, 1)  # all-underflow row (escaped a): uniform
    else:  # density at the cell centre relative to the row maximum (no cancellation for huge sd)
        u = xp.abs(x / sd[:, None])
        logf = -u - 2 * softplus(-u)
        f = xp.exp(logf - xp.max(logf, axis=1, keepdims=True))
    return xp.concatenate([f, xp.zeros_like(f[:, :1])], axis=1).astype(xp.float32)


@functools.partial(jax.jit, static_argnames=("cell", "exact"))
def _logistic_fine_rows(a, m, sd, cell, exact):
    """float32 [rows, cell + 1]: relative masses of the unit cells cell*a + b, b = 0..cell-1, then an unused
    escape column of mass 0 (the coder's convention; b never escapes).  exact: CDF differences;
    otherwise the density at the cell centre (exact to O(sd^-2) relative; for huge sd, where float32
    CDF differences would cancel)."""
    return _fine_rows(jnp, jax.nn.sigmoid, jax.nn.softplus, a, m, sd, cell, exact)


def _np_logistic_rows(m, sd, half_width, cell=1):
    """numpy twin of :func:`_logistic_rows` for small batches (no compile; float32)."""
    j = (cell * np.arange(-half_width, half_width + 2, dtype=np.float32) - np.float32(0.5)).astype(np.float32)
    e = (j[None, :] - m[:, None]) / sd[:, None]
    with np.errstate(over="ignore"):
        lower, upper = 1 / (1 + np.exp(-e)), 1 / (1 + np.exp(e))
    flip = (e[:, :-1] + e[:, 1:]) > 0
    p = np.where(flip, upper[:, :-1] - upper[:, 1:], lower[:, 1:] - lower[:, :-1])
    tail = lower[:, 0] + upper[:, -1]
    return np.concatenate([np.maximum(p, 0), tail[:, None]], axis=1).astype(np.float32)


def _np_logistic_fine_rows(a, m, sd, cell, exact):
    """numpy twin of :func:`_logistic_fine_rows` for small batches."""
    def sigmoid(v):
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-v))
    return _fine_rows(np, sigmoid, lambda v: np.log1p(np.exp(v)), a, m, sd, cell, exact)


_SMALL_BATCH = 1 << 18  # table entries below which numpy builds the tables (no jit compile per shape)


def _rows(jax_fn, np_fn, entries, pad, arrays, **static):
    """Tables for one batch: numpy for small batches, padded jit otherwise (same choice on both sides)."""
    n = arrays[0].shape[0]
    if n * entries <= _SMALL_BATCH:
        return np_fn(*(np.asarray(a, np.float32) for a in arrays), **static)
    padded = _padded(pad, *((a, 1.0 if i == len(arrays) - 1 else 0.0) for i, a in enumerate(arrays)))  # sd last
    return np.asarray(jax_fn(*padded, **static))[:n]


def _segments(cls):
    """Stable grouping: [(H, positions)] in increasing H (identical on both sides)."""
    order = np.argsort(cls, kind="stable")
    cs = cls[order]
    cut = np.flatnonzero(np.diff(cs)) + 1
    return [(int(cs[a]), order[a:b]) for a, b in zip(np.r_[0, cut], np.r_[cut, len(cs)])] if len(cs) else []


def _table_batches(idx, entries):
    rows = max(256, _TABLE_ENTRIES // entries)
    rows = 1 << (rows.bit_length() - 1)
    for a in range(0, len(idx), rows):
        b = idx[a: a + rows]
        pad = max(256, 1 << max(len(b) - 1, 1).bit_length()) if len(b) < rows else rows
        yield b, pad


def _padded(pad, *arrays_and_fill):
    out = []
    for a, fill in arrays_and_fill:
        z = np.full(pad, fill, np.float32)
        z[: a.shape[0]] = a
        out.append(jnp.asarray(z))
    return out


def _code_logistic(coder, h, m, sd, s=None):
    """Codes (encoder: s given) or decodes (s None) one logistic class; returns the symbols."""
    n = m.shape[0]
    m, sd = m.astype(np.float32), sd.astype(np.float32)
    out = np.zeros(n, np.int64) if s is None else s
    if h <= _TWO_LEVEL:
        k = 2 * h + 2
        for b, pad in _table_batches(np.arange(n), k):
            probs = _rows(_logistic_rows, _np_logistic_rows, k, pad, (m[b], sd[b]), half_width=h)
            if s is None:
                out[b] = coder.categorical(probs, offset=-h)
            else:
                coder.categorical(s[b], probs, offset=-h)
        return out
    g, A = _two_level_geometry(h)
    for b, pad in _table_batches(np.arange(n), max(2 * A + 2, g + 1)):
        coarse = _rows(_logistic_rows, _np_logistic_rows, 2 * A + 2, pad, (m[b], sd[b]), half_width=A, cell=g)
        if s is None:
            a = coder.categorical(coarse, offset=-A)
        else:
            a = np.floor_divide(s[b], g)
            coder.categorical(a, coarse, offset=-A)
        fine = _rows(_logistic_fine_rows, _np_logistic_fine_rows, g + 1, pad, (a.astype(np.float32), m[b], sd[b]),
                     cell=g, exact=h <= _EXACT_FINE)
        if s is None:
            out[b] = g * a + coder.categorical(fine, offset=0)
        else:
            coder.categorical(s[b] - g * a, fine, offset=0)
    return out


def _check_coding_params(scale, delta):
    if not bool(jnp.all(jnp.isfinite(scale))) or not bool(jnp.all(jnp.isfinite(delta))):
        raise ValueError("dq: scale and delta must be finite")


def dq_encode(x, loc, scale, delta, *, w, family: str = "gaussian"):
    """DQ-encode x with entropy model psi(loc, scale) * U.

    Args: x, loc, scale (> 0), delta (> 0), w (the shared dither, see :func:`dither`): broadcastable.
    Returns: (data: bytes, y: float32 of the broadcast shape) - y is exactly what dq_decode returns.
    Symbols beyond the model's support use an escape, so any finite input is codable.
    """
    densities._check_family(family)
    x, loc, scale, delta, w = _check_inputs(x, loc, scale, delta, w)
    _check_coding_params(scale, delta)
    k = dq_quantize(x, w, delta)
    c, m, sd = _centre(loc, scale, delta, w)
    s = np.asarray(k, np.int64).ravel() - c
    enc = _coder.StreamEncoder()
    for h, idx in _segments(_classes(sd, family)):
        if family == "gaussian":
            enc.quantized_gaussian(s[idx], m[idx], sd[idx], half_width=h)
        else:
            _code_logistic(enc, h, m[idx], sd[idx], s[idx])
    return enc.finish(), dq_reconstruct(k, w, delta)


def dq_decode(data: bytes, loc, scale, delta, *, w, family: str = "gaussian"):
    """Inverse of :func:`dq_encode` -> y float32 (broadcast shape of loc, scale, delta, w)."""
    densities._check_family(family)
    loc, scale, delta, w = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float32) for a in (loc, scale, delta, w)))
    if not bool(jnp.all(delta > 0)) or not bool(jnp.all(scale > 0)):
        raise ValueError("dq: delta and scale must be > 0 everywhere")
    _check_coding_params(scale, delta)
    c, m, sd = _centre(loc, scale, delta, w)
    s = np.zeros(c.shape[0], np.int64)
    dec = _coder.StreamDecoder(data)
    for h, idx in _segments(_classes(sd, family)):
        if family == "gaussian":
            s[idx] = dec.quantized_gaussian(m[idx], sd[idx], half_width=h)
        else:
            s[idx] = _code_logistic(dec, h, m[idx], sd[idx])
    dec.finish()
    k = c + s
    if k.size and np.max(np.abs(k)) > _MAX_ABS_INDEX:
        raise _coder.CodingError("dq: decoded an index beyond the encoder's range: corrupt data")
    k = jnp.asarray(k.astype(np.int32)).reshape(loc.shape)
    return dq_reconstruct(k, w, delta)
