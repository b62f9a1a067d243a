"""Discretized and uniform-convolved densities (pure jnp, jit-able).

Families: "gaussian" and "logistic", each with location `loc` and scale `scale` (the logistic scale
parameter s, variance s^2 pi^2 / 3). All functions broadcast their array arguments and return
float32.

Numerical stability: a bin far in the upper tail is evaluated through the survival function (by the
symmetry F(u) = 1 - F(-u) of both families), so that tiny probabilities are computed relative to
themselves instead of as the difference of two numbers close to 1. Results are floored at
`MIN_PROB` = 1e-9 so that log-probabilities stay finite, with CompressAI's `LowerBound` gradient
(nn.layers.lower_bound): below the floor the gradient that raises the probability still flows, so
the elements that cost the most are not frozen. `log_bin_probability` has no floor at all: the
log-mass in log space (as the UQDM reference computes its rates), exact in the far tails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gencomp_jax.nn.layers import lower_bound

MIN_PROB = 1e-9
FAMILIES = ("gaussian", "logistic")
_SQRT2 = 1.4142135623730951
_INV_SQRT_2PI = 0.3989422804014327
_BIG = 1e4  # standardized arguments are clipped to [-_BIG, _BIG] (handles +-inf bounds)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"Unknown density family {family!r}; use one of {FAMILIES}.")


def std_cdf(family: str, u):
    """Standard CDF of `family` at u (any shape) -> float32, same shape."""
    _check_family(family)
    u = jnp.asarray(u, jnp.float32)
    if family == "gaussian":
        return 0.5 * jax.scipy.special.erfc(-u / _SQRT2)
    return jax.nn.sigmoid(u)


def _std_cdf_integral(family: str, u):
    """Antiderivative I(u) of the standard CDF with I(-inf) = 0.

    gaussian: u Phi(u) + phi(u);  logistic: softplus(u). Both satisfy I(u) - u = I(-u).
    """
    if family == "gaussian":
        return u * std_cdf("gaussian", u) + _INV_SQRT_2PI * jnp.exp(-0.5 * u * u)
    return jax.nn.softplus(u)


def _standardize(x, loc, scale):
    u = (jnp.asarray(x, jnp.float32) - loc) / scale
    return jnp.clip(u, -_BIG, _BIG)


def bin_probability(family: str, loc, scale, lower, upper):
    """P(lower < X <= upper) for X = loc + scale * (standard `family` variable).

    Args: loc, scale (> 0), lower, upper: broadcastable arrays (lower/upper may be +-inf).
    Returns: float32 array of the broadcast shape, in [MIN_PROB, 1].
    """
    a, b = _lower_side_bounds(family, loc, scale, lower, upper)
    return _floor(std_cdf(family, b) - std_cdf(family, a))


def _lower_side_bounds(family: str, loc, scale, lower, upper):
    """Standardized bin bounds (a, b), mirrored for bins in the upper tail so that the bin lies on the
    lower side of the median: P = F(b) - F(a) there (P = S(ul) - S(uu) = F(-ul) - F(-uu))."""
    _check_family(family)
    loc = jnp.asarray(loc, jnp.float32)
    scale = jnp.asarray(scale, jnp.float32)
    ul = _standardize(lower, loc, scale)
    uu = _standardize(upper, loc, scale)
    flip = (ul + uu) > 0
    return jnp.where(flip, -uu, ul), jnp.where(flip, -ul, uu)


def _floor(p):
    """p floored at MIN_PROB (gradient kept where it raises p) and capped at 1."""
    return jnp.minimum(lower_bound(p, jnp.asarray(MIN_PROB, p.dtype)), 1.0)


def std_log_cdf(family: str, u):
    """log of the standard CDF of `family` at u, accurate in the lower tail (log_ndtr / log_sigmoid)."""
    _check_family(family)
    u = jnp.asarray(u, jnp.float32)
    if family == "gaussian":
        return jax.scipy.special.log_ndtr(u)
    return jax.nn.log_sigmoid(u)


def log_bin_probability(family: str, loc, scale, lower, upper):
    """log P(lower < X <= upper) (nats) for X = loc + scale * (standard `family` variable), no floor.

    Computed as log F(b) + log(1 - exp(log F(a) - log F(b))) on the lower side of the median (upper-tail
    bins mirrored, as in `bin_probability`), so that a bin 25 scales from loc costs its exact ~25 nats
    (logistic) and keeps its gradient. lower < upper, finite. Returns float32 of the broadcast shape.
    """
    a, b = _lower_side_bounds(family, loc, scale, lower, upper)
    la, lb = std_log_cdf(family, a), std_log_cdf(family, b)
    return lb + jnp.log(-jnp.expm1(jnp.minimum(la - lb, 0.0)))


def convolved_uniform_bin_probability(family: str, loc, scale, width, lower, upper):
    """Mass on (lower, upper] of X + U, X ~ family(loc, scale), U ~ Uniform(-width/2, width/2).

    Closed form: the CDF of X + U is G(t) = (scale / width) [I((t + w/2 - loc)/scale) -
    I((t - w/2 - loc)/scale)], with I the integral of the standard CDF (u Phi(u) + phi(u) for the
    Gaussian, softplus(u) for the logistic). Upper-tail bins use the mirrored form (I(u) - u = I(-u)).
    Accuracy: float32 second differences of I; the relative error grows like eps * (scale/width)^2
    for scale >> width, where the uniform convolution is negligible anyway (use `bin_probability`).

    Args: loc, scale (> 0), width (> 0), lower, upper: broadcastable arrays.
    Returns: float32 array of the broadcast shape, in [MIN_PROB, 1].
    """
    _check_family(family)
    loc = jnp.asarray(loc, jnp.float32)
    scale = jnp.asarray(scale, jnp.float32)
    width = jnp.asarray(width, jnp.float32)
    half = 0.5 * width
    lower = jnp.asarray(lower, jnp.float32)
    upper = jnp.asarray(upper, jnp.float32)
    flip = (lower + upper) > 2.0 * loc  # bin centre in the upper tail (nan-safe: inf+inf > x)
    # Mirror around loc for upper-tail bins: mass of (l, u] equals mass of [2 loc - u, 2 loc - l).
    lo = jnp.where(flip, 2.0 * loc - upper, lower)
    hi = jnp.where(flip, 2.0 * loc - lower, upper)

    def cdf_int(t):
        a2 = _standardize(t + half, loc, scale)
        a1 = _standardize(t - half, loc, scale)
        return _std_cdf_integral(family, a2) - _std_cdf_integral(family, a1)

    p = (scale / width) * (cdf_int(hi) - cdf_int(lo))
    p = jnp.where(jnp.isneginf(lower) & jnp.isposinf(upper), 1.0, p)
    return _floor(p)
