"""Gaussian forward process and its posteriors, and conversions between parameterisations.

All functions are schedule-agnostic: they take ``alpha`` and ``sigma`` (arrays broadcastable against x,
e.g. shape [B, 1, 1, 1]) of the path x_t = alpha_t x_0 + sigma_t eps, so they serve VP diffusion and
flow matching alike.

Parameterisations of a network output at (x_t, t):
  "eps"      noise eps
  "x0"       clean data x_0
  "v"        v = alpha eps - sigma x_0  (Salimans & Ho; for VP schedules alpha^2 + sigma^2 = 1)
  "velocity" flow-matching velocity u = d alpha/dt x_0 + d sigma/dt eps  (needs the time derivatives)
  "score"    grad log p_t(x_t) = -eps / sigma
"""

from __future__ import annotations

import jax.numpy as jnp

PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def broadcast_to(a: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Reshapes a per-example array a [B] (or scalar) to broadcast against x [B, ...]."""
    a = jnp.asarray(a, x.dtype)
    if a.ndim == 0:
        return a
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def transition(alpha_s, sigma_s, alpha_t, sigma_t):
    """q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2 I) for s < t: returns (alpha_ts, sigma_ts^2)."""
    alpha_ts = alpha_t / alpha_s
    var_ts = sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2
    return alpha_ts, jnp.maximum(var_ts, 0.0)


def posterior(x_t, x0, alpha_s, sigma_s, alpha_t, sigma_t):
    """q(x_s | x_t, x_0) = N(mean, var I) for s < t: returns (mean [like x_t], var [broadcastable]).

    mean = alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_ts^2 / sigma_t^2 x_0,
    var  = sigma_ts^2 sigma_s^2 / sigma_t^2.
    """
    alpha_ts, var_ts = transition(alpha_s, sigma_s, alpha_t, sigma_t)
    var_t = sigma_t ** 2
    mean = (alpha_ts * sigma_s ** 2 / var_t) * x_t + (alpha_s * var_ts / var_t) * x0
    var = var_ts * sigma_s ** 2 / var_t
    return mean, var


def gaussian_kl(mean1, var1, mean2, var2):
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise (nats); variances broadcastable."""
    return 0.5 * (jnp.log(var2) - jnp.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def to_x0_eps(pred, x_t, alpha, sigma, *, prediction: str, dalpha=None, dsigma=None):
    """Converts a prediction of kind `prediction` at x_t into (x0_hat, eps_hat), both like x_t.

    For prediction="velocity" pass dalpha, dsigma (time derivatives of alpha, sigma).
    """
    if prediction == "eps":
        return (x_t - sigma * pred) / alpha, pred
    if prediction == "x0":
        return pred, (x_t - alpha * pred) / sigma
    if prediction == "v":
        norm = alpha ** 2 + sigma ** 2
        return (alpha * x_t - sigma * pred) / norm, (sigma * x_t + alpha * pred) / norm
    if prediction == "score":
        eps = -sigma * pred
        return (x_t - sigma * eps) / alpha, eps
    if prediction == "velocity":
        if dalpha is None or dsigma is None:
            raise ValueError("prediction='velocity' needs dalpha and dsigma (time derivatives of the path).")
        det = alpha * dsigma - sigma * dalpha
        return (dsigma * x_t - sigma * pred) / det, (alpha * pred - dalpha * x_t) / det
    raise ValueError(f"Unknown prediction {prediction!r}; use one of {PREDICTIONS}.")


def from_x0_eps(x0, eps, alpha, sigma, *, prediction: str, dalpha=None, dsigma=None):
    """Inverse of `to_x0_eps`: the prediction of kind `prediction` implied by (x0, eps)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "score":
        return -eps / sigma
    if prediction == "velocity":
        if dalpha is None or dsigma is None:
            raise ValueError("prediction='velocity' needs dalpha and dsigma (time derivatives of the path).")
        return dalpha * x0 + dsigma * eps
    raise ValueError(f"Unknown prediction {prediction!r}; use one of {PREDICTIONS}.")


def convert(pred, x_t, alpha, sigma, *, source: str, target: str, dalpha=None, dsigma=None):
    """Converts a prediction between parameterisations (eps / x0 / v / velocity / score)."""
    x0, eps = to_x0_eps(pred, x_t, alpha, sigma, prediction=source, dalpha=dalpha, dsigma=dsigma)
    return from_x0_eps(x0, eps, alpha, sigma, prediction=target, dalpha=dalpha, dsigma=dsigma)


def check_prediction(prediction: str):
    if prediction not in PREDICTIONS:
        raise ValueError(f"Unknown prediction {prediction!r}; use one of {PREDICTIONS}.")


__all__ = ["transition", "posterior", "gaussian_kl", "to_x0_eps", "from_x0_eps", "convert",
           "broadcast_to", "PREDICTIONS", "check_prediction"]
