"""Ballé et al.'s learned factorized ("fully factorized") density for the hyper-latent z.

Each channel c has a univariate density whose CDF is sigmoid(f_c(x)), f_c a small monotone network
(softplus-ed matrices, tanh "factors"), Ballé et al. 2018, appendix 6.1. Evaluated on unit bins:
P(z in (x - 1/2, x + 1/2]).

Unlike CompressAI there is no auxiliary loss and no `update()`: the median and the tails needed for
quantization offsets and coding tables are found by bisection on the CDF, as a pure function of the
parameters (`medians`, `factorized_tables`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.entropy import coder as coder_lib
from gencomp_jax.entropy.densities import MIN_PROB
from gencomp_jax.nn.layers import lower_bound

Array = Any
_SEARCH_RANGE = 2.0 ** 12  # bisection bracket for medians / tails, in latent units
_BISECT_STEPS = 40


class FactorizedPrior(nn.Module):
    """Learned per-channel density. Channels-last input [..., channels].

    __call__(x) -> likelihoods P(x - 1/2 < Z <= x + 1/2), float32 of x's shape, >= MIN_PROB.
    medians() -> [C] (where the CDF is 1/2); quantiles(q) -> [C].
    """

    channels: int
    filters: Sequence[int] = (3, 3, 3)
    init_scale: float = 10.0
    # True: the medians are a parameter "medians" [C] (CompressAI's learned quantiles, kept for converted
    # weights so that z is quantized exactly as there) instead of found by bisection on the CDF.
    stored_medians: bool = False

    def setup(self):
        c = self.channels
        filters = (1,) + tuple(self.filters) + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        layers = []
        for i in range(len(self.filters) + 1):
            init_m = float(np.log(np.expm1(1.0 / scale / filters[i + 1])))
            m = self.param(f"matrix{i}", nn.initializers.constant(init_m), (c, filters[i + 1], filters[i]))
            b = self.param(f"bias{i}", _uniform(-0.5, 0.5), (c, filters[i + 1], 1))
            f = (self.param(f"factor{i}", nn.initializers.zeros, (c, filters[i + 1], 1))
                 if i < len(self.filters) else None)
            layers.append((m, b, f))
        self._layers = layers
        if self.stored_medians:
            self._medians = self.param("medians", nn.initializers.zeros, (c,))

    def _logits_cdf(self, x):
        """x: [C, 1, n] -> logits of the CDF, [C, 1, n]."""
        logits = x
        for m, b, f in self._layers:
            logits = jnp.matmul(jax.nn.softplus(m), logits) + b
            if f is not None:
                logits = logits + jnp.tanh(f) * jnp.tanh(logits)
        return logits

    def __call__(self, x: Array) -> Array:
        c = self.channels
        if x.shape[-1] != c:
            raise ValueError(f"FactorizedPrior has {c} channels, got input of shape {x.shape}.")
        shape = x.shape
        v = jnp.moveaxis(x.reshape(-1, c), 0, 1)[:, None, :]  # [C, 1, n]
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -jnp.sign(lower + upper)  # evaluate far upper tails through the survival function
        p = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        p = lower_bound(p, jnp.asarray(MIN_PROB, p.dtype))  # floor that keeps the gradient raising p
        return jnp.moveaxis(p[:, 0, :], 0, 1).reshape(shape)

    def quantiles(self, q) -> Array:
        """[C] points where the CDF equals q (0 < q < 1), by bisection on the monotone CDF."""
        c = self.channels
        target = jnp.log(q) - jnp.log1p(-q)
        lo = jnp.full((c, 1, 1), -_SEARCH_RANGE)
        hi = jnp.full((c, 1, 1), _SEARCH_RANGE)

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = self._logits_cdf(mid) < target
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, _BISECT_STEPS, body, (lo, hi))
        return (0.5 * (lo + hi)).reshape(c)

    def medians(self) -> Array:
        """[C] medians of the per-channel densities (the quantization offsets of z)."""
        return self._medians if self.stored_medians else self.quantiles(0.5)


def _uniform(lo, hi):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, lo, hi)
    return init


def quantize_around(x: Array, centers: Array) -> tuple[Array, Array]:
    """Rounds x around per-channel centers: returns (integer symbols as float, x_hat = sym + centers)."""
    sym = jnp.round(x - centers)
    return sym, sym + centers


def factorized_tables(prior: FactorizedPrior, variables, *, tail_mass: float = 1e-6,
                      max_length: int = 4096, precision: int = coder_lib.PRECISION, host: bool = False) -> dict:
    """Integer coding tables for z symbols v = round(z - median), one row per channel.

    Pure function of the parameters. Returns a dict of numpy arrays:
      medians float32 [C], tables int64 [C, K] (zero-padded), offsets int64 [C], lengths int64 [C]
    for `coder.encode_indexed(values, tables, offsets, channel_index, lengths=lengths)`. Row c covers
    the symbols whose bins hold all but `tail_mass` of the density (escapes handle the rest).

    host=False: the density is evaluated by the jitted flax module in float32 (what every file before the
    host tables used): another XLA, CPU type or a GPU can round it differently and change a table entry.
    host=True: evaluated in float64 NumPy on the host (HostFactorizedPrior), independent of the accelerator
    and of XLA, so that the same parameters give the same tables on every platform (the quantized pmf and
    the float32 medians move only if a value sits within ~1e-15 of a rounding boundary).
    """
    if host:
        hp = HostFactorizedPrior(variables["params"] if "params" in variables else variables)
        meds, lo_q, hi_q = hp.medians(), hp.quantiles(tail_mass / 2), hp.quantiles(1 - tail_mass / 2)
        meds = meds.astype(np.float32).astype(np.float64)   # the symbols are relative to the float32 medians
    else:
        meds, lo_q, hi_q = _quantile_fn(prior)(variables, tail_mass)
        meds, lo_q, hi_q = (np.asarray(a, np.float64) for a in (meds, lo_q, hi_q))
    offsets = np.floor(lo_q - meds).astype(np.int64)
    hi = np.ceil(hi_q - meds).astype(np.int64)
    lengths = np.minimum(hi - offsets + 2, max_length)
    k = int(lengths.max())
    grid = offsets[:, None] + np.arange(k - 1)[None, :]  # [C, K-1] symbol values
    if host:
        pmf = hp.pmf(grid + meds[:, None])
    else:
        pmf = np.asarray(_pmf_fn(prior)(variables, jnp.asarray(grid, jnp.float32)), np.float64)
    col = np.arange(k)[None, :]
    valid = col < (lengths - 1)[:, None]
    pmf = np.concatenate([pmf, np.zeros((len(pmf), 1))], axis=1) * valid
    tail = np.maximum(1.0 - pmf.sum(axis=1), MIN_PROB)
    pmf[np.arange(len(pmf)), lengths - 1] = tail
    tables = np.zeros(pmf.shape, np.int64)
    for length in np.unique(lengths):  # quantize each row over its own support only
        rows = lengths == length
        tables[rows, :length] = coder_lib.quantize_pmf(pmf[rows, :length], precision)
    return {"medians": np.asarray(meds, np.float32), "tables": tables, "offsets": offsets,
            "lengths": lengths.astype(np.int64)}


class HostFactorizedPrior:
    """FactorizedPrior's density in float64 NumPy on the host, from its parameters (the same formulas:
    Balle et al. 2018, appendix 6.1): the tables of files that must decode on every platform.

    params: the prior's parameter dict (matrix{i} [C, f_out, f_in], bias{i} [C, f_out, 1], factor{i}
    [C, f_out, 1], optionally medians [C])."""

    BISECT_STEPS = 64   # 2 * 2^12 / 2^64: below float64 resolution

    def __init__(self, params):
        self.layers = []
        i = 0
        while f"matrix{i}" in params:
            f = params.get(f"factor{i}")
            self.layers.append((np.logaddexp(0.0, np.asarray(params[f"matrix{i}"], np.float64)),   # softplus
                                np.asarray(params[f"bias{i}"], np.float64),
                                None if f is None else np.tanh(np.asarray(f, np.float64))))
            i += 1
        if not self.layers:
            raise ValueError("not a factorized prior's parameters (no matrix0)")
        self.channels = self.layers[0][0].shape[0]
        self.stored_medians = None if "medians" not in params else np.asarray(params["medians"], np.float64)

    def logits_cdf(self, x: np.ndarray) -> np.ndarray:
        """x [C, n] -> logits of the CDF [C, n]."""
        logits = np.asarray(x, np.float64)[:, None, :]
        for m, b, f in self.layers:
            logits = np.matmul(m, logits) + b
            if f is not None:
                logits = logits + f * np.tanh(logits)
        return logits[:, 0, :]

    def quantiles(self, q: float) -> np.ndarray:
        """[C] points where the CDF equals q, by bisection on the monotone CDF (as FactorizedPrior.quantiles)."""
        target = np.log(q) - np.log1p(-q)
        lo = np.full((self.channels, 1), -_SEARCH_RANGE)
        hi = np.full((self.channels, 1), _SEARCH_RANGE)
        for _ in range(self.BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            below = self.logits_cdf(mid) < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (0.5 * (lo + hi))[:, 0]

    def medians(self) -> np.ndarray:
        return self.stored_medians if self.stored_medians is not None else self.quantiles(0.5)

    def pmf(self, x: np.ndarray) -> np.ndarray:
        """x [C, n] (absolute values, not relative to the medians) -> P(x - 1/2 < Z <= x + 1/2), >= MIN_PROB."""
        lower, upper = self.logits_cdf(x - 0.5), self.logits_cdf(x + 0.5)
        sign = -np.sign(lower + upper)   # far upper tails through the survival function
        return np.maximum(np.abs(_sigmoid(sign * upper) - _sigmoid(sign * lower)), MIN_PROB)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_CACHE: dict = {}


def _key(prior):
    return (type(prior), prior.channels, tuple(prior.filters), prior.init_scale, prior.stored_medians)


def _quantile_fn(prior):
    key = ("q", _key(prior))
    if key not in _CACHE:
        def f(variables, tail_mass):
            meds = prior.apply(variables, method=FactorizedPrior.medians)
            lo = prior.apply(variables, tail_mass / 2, method=FactorizedPrior.quantiles)
            hi = prior.apply(variables, 1 - tail_mass / 2, method=FactorizedPrior.quantiles)
            return meds, lo, hi
        _CACHE[key] = jax.jit(f)
    return _CACHE[key]


def _pmf_fn(prior):
    key = ("p", _key(prior))
    if key not in _CACHE:
        def f(variables, grid):  # grid: [C, n] symbols relative to the medians
            meds = prior.apply(variables, method=FactorizedPrior.medians)
            x = grid + meds[:, None]
            return jnp.moveaxis(prior.apply(variables, jnp.moveaxis(x, 0, 1)), 0, 1)
        _CACHE[key] = jax.jit(f)
    return _CACHE[key]
