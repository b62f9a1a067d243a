"""Gaussian conditional entropy model with a scale table (Ballé et al. 2018).

y_i ~ N(mean_i, scale_i^2) convolved with U(-1/2, 1/2), evaluated on unit bins. Scales are lower
bounded (`SCALE_MIN` = 0.11, as CompressAI). For coding, each symbol uses the integer table of the
nearest scale (in log space) of a fixed geometric scale table; the tables are a pure function of
that scale table (no parameters, no `update()`), computed in float64 numpy and quantized with
`coder.quantize_pmf`, so they are identical in every process.

Symbols are v = round(y - mean) (the scale hyperprior has mean 0: v = round(y)).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from scipy import special

from gencomp_jax.entropy import coder as coder_lib
from gencomp_jax.entropy.densities import MIN_PROB, bin_probability
from gencomp_jax.nn.layers import lower_bound

SCALE_MIN = 0.11
SCALE_MAX = 256.0
NUM_SCALES = 256


def lower_bound_scale(scale, minimum: float = SCALE_MIN):
    """max(scale, minimum) with Ballé's gradient pass-through below the bound."""
    return lower_bound(scale, jnp.asarray(minimum, scale.dtype))


def likelihood(y_hat, scale, mean=0.0):
    """P(y_hat - 1/2 < Y <= y_hat + 1/2) for Y ~ N(mean, max(scale, SCALE_MIN)^2).

    y_hat: float [...] (y + noise in training, the rounded value at test time); scale, mean:
    broadcastable. Returns float32 [...] >= MIN_PROB. Bits = -log2(likelihood).
    """
    scale = lower_bound_scale(scale)  # idempotent: a scale bounded before keeps its whole gradient
    return bin_probability("gaussian", mean, scale, y_hat - 0.5, y_hat + 0.5)


def scale_table(num_scales: int = NUM_SCALES, lo: float = SCALE_MIN, hi: float = SCALE_MAX) -> np.ndarray:
    """float64 [num_scales], geometric from lo to hi."""
    return np.exp(np.linspace(np.log(lo), np.log(hi), num_scales))


SCALE_RULES = ("nearest", "ceil")


def scale_indexes(scales, table: np.ndarray | None = None, *, rule: str = "nearest") -> np.ndarray:
    """Table index of each scale: float [...] -> int64 [...] (numpy, host-side).

    rule "nearest": the nearest table scale in log space; "ceil": the smallest table scale >= the scale
    (CompressAI's `build_indexes`, used with its 64-scale table for converted models).
    Deterministic given the float32 scales (float64 arithmetic on both encoder and decoder).
    """
    table = scale_table() if table is None else table
    if rule not in SCALE_RULES:
        raise ValueError(f"scale rule {rule!r}; use one of {SCALE_RULES}.")
    if rule == "ceil":
        s = np.asarray(scales, np.float64)
        return np.minimum(np.searchsorted(table, s, side="left"), len(table) - 1).astype(np.int64)
    s = np.maximum(np.asarray(scales, np.float64), table[0])
    log_t = np.log(table)
    mids = 0.5 * (log_t[1:] + log_t[:-1])
    return np.searchsorted(mids, np.log(s), side="left").astype(np.int64)


@functools.lru_cache(maxsize=8)
def gaussian_tables(num_scales: int = NUM_SCALES, lo: float = SCALE_MIN, hi: float = SCALE_MAX,
                    tail_mass: float = 1e-6, precision: int = coder_lib.PRECISION) -> dict:
    """Integer tables for symbols v = round(y - mean), one row per table scale (float64 numpy).

    Returns dict of numpy arrays: scales float64 [S], tables int64 [S, K] (zero-padded), offsets int64
    [S], lengths int64 [S] — for `coder.encode_indexed(v, tables, offsets, idx, lengths=lengths)`.
    Row s covers |v| <= ceil(z * scale) with 2 Phi(-z) = tail_mass; the rest is escaped.
    Cached; treat the arrays as read-only.
    """
    scales = scale_table(num_scales, lo, hi)
    z = -special.ndtri(tail_mass / 2)
    half = np.ceil(z * scales).astype(np.int64)
    lengths = 2 * half + 2  # 2*half+1 symbols plus the escape
    k = int(lengths.max())
    offsets = -half
    tables = np.zeros((num_scales, k), np.int64)
    for i, (s, h) in enumerate(zip(scales, half)):
        v = np.arange(-h, h + 1, dtype=np.float64)
        # P(v - 1/2 < Y <= v + 1/2), upper half through the survival function (exact tails)
        a, b = (np.abs(v) - 0.5) / s, (np.abs(v) + 0.5) / s
        p = special.ndtr(-a) - special.ndtr(-b)
        p = np.maximum(p, MIN_PROB)
        pmf = np.append(p, max(1.0 - p.sum(), MIN_PROB))
        tables[i, :len(pmf)] = coder_lib.quantize_pmf(pmf, precision)
    for arr in (scales, tables, offsets, lengths):
        arr.setflags(write=False)
    return {"scales": scales, "tables": tables, "offsets": offsets, "lengths": lengths}
