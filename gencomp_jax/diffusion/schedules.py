"""Noise schedules.

Variance-preserving (VP) schedules are given as the log-SNR parameterisation of VDM,
``gamma(t) = -log SNR(t) = log(sigma_t^2 / alpha_t^2)``, increasing in t in [0, 1], with

    alpha_t^2 = sigmoid(-gamma(t)),     sigma_t^2 = sigmoid(gamma(t)).

The flow-matching (rectified-flow) path uses ``alpha_t = 1 - t, sigma_t = t`` (not variance preserving).

Everything a sampler or loss needs from a schedule is ``alpha_sigma(t) -> (alpha_t, sigma_t)``; time
derivatives are taken with ``jax.jvp`` (`alpha_sigma_and_derivatives`). Parameter-free schedules are plain
functions; the learnable ones are linen modules (`LearnedLinearSchedule`, `MonotoneNetSchedule`), whose
``apply`` gives gamma(t).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

AlphaSigmaFn = Callable[[jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]

GAMMA_MIN = -13.3   # VDM defaults: alpha_0 ~ 1 - 8e-7, sigma_0 ~ 1.3e-3
GAMMA_MAX = 5.0     # SNR(1) = exp(-5) ~ 6.7e-3


# ----------------------------------------------------------------------------------------------------
# log-SNR <-> (alpha, sigma)

def alpha_sigma_from_gamma(gamma: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """VP schedule: gamma [...] -> (alpha [...], sigma [...]), alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma)."""
    return jnp.sqrt(jax.nn.sigmoid(-gamma)), jnp.sqrt(jax.nn.sigmoid(gamma))


# ----------------------------------------------------------------------------------------------------
# parameter-free schedules: t [...] -> gamma [...]

def linear_gamma(t: jnp.ndarray, *, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX) -> jnp.ndarray:
    """Fixed linear log-SNR schedule (VDM): gamma(t) = gamma_min + (gamma_max - gamma_min) t."""
    return gamma_min + (gamma_max - gamma_min) * t


def cosine_gamma(t: jnp.ndarray, *, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX,
                 shift: float = 0.0) -> jnp.ndarray:
    """Cosine schedule (Nichol & Dhariwal) in log-SNR form, truncated to [gamma_min, gamma_max].

    alpha = cos(pi u / 2), sigma = sin(pi u / 2) gives gamma(u) = 2 log tan(pi u / 2); u runs over the
    interval [u_min, u_max] that maps onto [gamma_min, gamma_max] as t runs over [0, 1].

    shift s (nats of log-SNR; HFD, Hoogeboom et al. 2023, and the "shifted cosine" of simple diffusion): the
    cosine curve of the endpoints [gamma_min + s, gamma_max + s] moved down by s, so the endpoints stay
    [gamma_min, gamma_max] while every interior time has a lower gamma (s > 0: less noise, SNR up to e^s times
    higher; s = 0 is the plain schedule).
    """
    u_min = 2.0 / math.pi * math.atan(math.exp(0.5 * (gamma_min + shift)))
    u_max = 2.0 / math.pi * math.atan(math.exp(0.5 * (gamma_max + shift)))
    u = u_min + (u_max - u_min) * t
    g = 2.0 * jnp.log(jnp.tan(0.5 * jnp.pi * u))
    return g - shift if shift else g


def vp_alpha_sigma(gamma_fn: Callable[[jnp.ndarray], jnp.ndarray]) -> AlphaSigmaFn:
    """Turns a log-SNR schedule gamma(t) into ``alpha_sigma(t)`` for samplers and losses."""
    return lambda t: alpha_sigma_from_gamma(gamma_fn(t))


def flow_alpha_sigma(t: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Flow-matching (rectified-flow) path: alpha_t = 1 - t, sigma_t = t (data at t=0, N(0, I) at t=1)."""
    t = jnp.asarray(t, jnp.float32)
    return 1.0 - t, t


def get_alpha_sigma(name: str, *, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX,
                    shift: float = 0.0) -> AlphaSigmaFn:
    """Named parameter-free schedule: "linear", "cosine" (VP, log-SNR form; `shift` as in `cosine_gamma`) or
    "flow"."""
    if shift and name != "cosine":
        raise ValueError(f"a log-SNR shift applies to the 'cosine' schedule only (on 'linear' with fixed endpoints "
                         f"it is the identity), got schedule {name!r} with shift={shift!r}.")
    if name == "linear":
        return vp_alpha_sigma(functools.partial(linear_gamma, gamma_min=gamma_min, gamma_max=gamma_max))
    if name == "cosine":
        return vp_alpha_sigma(functools.partial(cosine_gamma, gamma_min=gamma_min, gamma_max=gamma_max, shift=shift))
    if name == "flow":
        return flow_alpha_sigma
    raise ValueError(f"Unknown schedule {name!r}; use one of 'linear', 'cosine', 'flow' "
                     "(learnable schedules are the modules LearnedLinearSchedule / MonotoneNetSchedule).")


def alpha_sigma_and_derivatives(alpha_sigma: AlphaSigmaFn, t: jnp.ndarray):
    """(alpha, sigma, d alpha/dt, d sigma/dt) at t [...] via forward-mode differentiation."""
    t = jnp.asarray(t, jnp.float32)
    (a, s), (da, ds) = jax.jvp(alpha_sigma, (t,), (jnp.ones_like(t),))
    return a, s, da, ds


# ----------------------------------------------------------------------------------------------------
# learnable schedules (linen)

class LearnedLinearSchedule(nn.Module):
    """VDM's learnable scalar endpoints: gamma(t) = b + |w| t, initialised at [gamma_min, gamma_max].

    ``fix_gamma_max=True`` keeps gamma(1) = gamma_max fixed (as UQDM does) and learns only gamma(0).
    Call with t [...] -> gamma [...].
    """

    gamma_min: float = GAMMA_MIN
    gamma_max: float = GAMMA_MAX
    fix_gamma_max: bool = False

    @nn.compact
    def __call__(self, t):
        b = self.param("gamma_0", nn.initializers.constant(self.gamma_min), ())
        if self.fix_gamma_max:
            return b + (self.gamma_max - b) * t
        w = self.param("gamma_range", nn.initializers.constant(self.gamma_max - self.gamma_min), ())
        return b + jnp.abs(w) * t


class _DenseMonotone(nn.Module):
    """Dense layer with non-negative (|W|) weights: monotone non-decreasing in each input."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.normal(1.0)
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        kernel = jnp.abs(self.param("kernel", self.kernel_init, (x.shape[-1], self.features)))
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y


class MonotoneNetSchedule(nn.Module):
    """VDM's ``NoiseSchedule_NNet``: a learnable, strictly increasing gamma(t).

    gamma(t) = l1(t) + l3(2 (sigmoid(l2(2t - 1)) - 1/2)) / n_features, all layers with |W|; l1 is initialised
    to the linear schedule [gamma_min, gamma_max]. Call with t [...] -> gamma [...].
    """

    gamma_min: float = GAMMA_MIN
    gamma_max: float = GAMMA_MAX
    n_features: int = 1024
    nonlinear: bool = True

    @nn.compact
    def __call__(self, t):
        t = jnp.asarray(t, jnp.float32)
        shape = t.shape
        x = t.reshape(-1, 1)
        h = _DenseMonotone(1, kernel_init=nn.initializers.constant(self.gamma_max - self.gamma_min),
                           bias_init=nn.initializers.constant(self.gamma_min), name="l1")(x)
        if self.nonlinear:
            g = _DenseMonotone(self.n_features, name="l2")(2.0 * (x - 0.5))
            g = 2.0 * (jax.nn.sigmoid(g) - 0.5)
            g = _DenseMonotone(1, use_bias=False, name="l3")(g) / self.n_features
            h = h + g
        return h.reshape(shape)
