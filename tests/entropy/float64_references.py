"""Entropy-model formulas written independently of gencomp_jax, in float64 numpy, for tests to compare with.

    factorized_log_likelihood(prior_params, z) -> float64 [..., C]: ln P(z - 1/2 < Z <= z + 1/2) of Ballé et
        al.'s factorized density (2018, appendix 6.1) from the "prior" parameters {matrix_i [C, o, i],
        bias_i [C, o, 1], factor_i [C, o, 1]}, exact in the far tails (no floor).
    gaussian_log_bin(y, scale, mean=0) -> float64: ln P(y - 1/2 < Y <= y + 1/2), Y ~ N(mean, scale^2), no floor.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def _log_diff_sigmoid(hi, lo):
    """ln(sigmoid(hi) - sigmoid(lo)) for hi >= lo, computed on the side of 0 where it does not cancel."""
    flip = (hi + lo) > 0  # upper tail: sigmoid(hi) - sigmoid(lo) = sigmoid(-lo) - sigmoid(-hi)
    a, b = np.where(flip, -lo, hi), np.where(flip, -hi, lo)  # ln(sigmoid(a) - sigmoid(b)), a >= b, a + b <= 0
    log_a, log_b = -np.logaddexp(0.0, -a), -np.logaddexp(0.0, -b)
    return log_a + np.log1p(-np.exp(log_b - log_a))


def factorized_log_likelihood(prior_params, z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    c = z.shape[-1]
    v = np.moveaxis(z.reshape(-1, c), 0, 1)[:, None, :]  # [C, 1, n]
    n_layers = len([k for k in prior_params if k.startswith("matrix")])

    def logits(x):
        for i in range(n_layers):
            x = np.log1p(np.exp(np.asarray(prior_params[f"matrix{i}"], np.float64))) @ x \
                + np.asarray(prior_params[f"bias{i}"], np.float64)
            if f"factor{i}" in prior_params:
                x = x + np.tanh(np.asarray(prior_params[f"factor{i}"], np.float64)) * np.tanh(x)
        return x

    logp = _log_diff_sigmoid(logits(v + 0.5), logits(v - 0.5))
    return np.moveaxis(logp[:, 0, :], 0, 1).reshape(z.shape)


def gaussian_log_bin(y, scale, mean=0.0) -> np.ndarray:
    u = (np.asarray(y, np.float64) - mean) / scale
    half = 0.5 / np.asarray(scale, np.float64)
    hi, lo = np.where(u > 0, -u + half, u + half), np.where(u > 0, -u - half, u - half)  # mirrored to the lower side
    log_hi, log_lo = special.log_ndtr(hi), special.log_ndtr(lo)
    return log_hi + np.log1p(-np.exp(log_lo - log_hi))
