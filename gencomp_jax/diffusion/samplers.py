"""Samplers for Gaussian diffusion and flow models, all `jax.lax.scan`-based and jit-able.

Common signature:
    sampler(model_fn, x_start, rng, *, alpha_sigma, prediction, steps, t_start=1.0, t_end=0.0, y=None, ...)
      model_fn(x [B, ...], t [B]) -> prediction (or model_fn(x, t, y) when y is given: conditional models)
      x_start: x at time t_start (N(0, I) noise for generation; X_tau for reconstruction in compression)
      alpha_sigma: t -> (alpha_t, sigma_t) (schedules.py); prediction: "eps" | "x0" | "v" | "velocity" | "score"
      steps: number of steps on the uniform time grid t_start -> t_end (static)
    returns x at t_end [B, ...].

Samplers
  ancestral_sampler  DDPM: x_s ~ q(x_s | x_t, x_0 = x0_hat) (last step returns the mean)
  ddim_sampler       DDIM: x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z, c = eta * posterior std
                     (eta = 0: deterministic, a first-order solver of the probability-flow ODE; eta = 1: DDPM)
  ode_sampler        probability-flow ODE dx/dt = alpha' x0_hat + sigma' eps_hat with Euler or Heun steps
                     (for a Gaussian path this velocity is E[alpha' X_0 + sigma' N | X_t = x], so the same
                     code is the flow-matching ODE (Eq. 9) with the flow path and prediction "velocity")
  sde_sampler        reverse SDE (Eq. 6) by Euler-Maruyama: dx = [f x - g^2 score] dt + g dW,
                     f = alpha'/alpha, g^2 = d sigma^2/dt - 2 f sigma^2 (no noise added on the last step)
  flow_ode_sampler   ode_sampler on the flow path alpha = 1 - t, sigma = t with a velocity model
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gencomp_jax.diffusion import process
from gencomp_jax.diffusion.schedules import alpha_sigma_and_derivatives, flow_alpha_sigma


def _call(model_fn, x, t, y):
    return model_fn(x, t) if y is None else model_fn(x, t, y)


def _check(steps, t_start, t_end, prediction):
    process.check_prediction(prediction)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (static), got {steps!r}.")
    if isinstance(t_start, (int, float)) and isinstance(t_end, (int, float)) and \
            not (0.0 <= t_end < t_start <= 1.0):
        raise ValueError(f"Need 0 <= t_end < t_start <= 1, got t_start={t_start}, t_end={t_end}.")


def _grid(steps, t_start, t_end):
    ts = jnp.linspace(t_start, t_end, steps + 1, dtype=jnp.float32)
    last = jnp.arange(steps) == steps - 1
    return ts[:-1], ts[1:], last


def _coeffs(alpha_sigma, t, x):
    b = x.shape[0]
    tb = jnp.full((b,), t, jnp.float32)
    a, s, da, ds = alpha_sigma_and_derivatives(alpha_sigma, tb)
    return tb, tuple(process.broadcast_to(v, x) for v in (a, s, da, ds))


def _denoise(model_fn, x, t, alpha_sigma, prediction, y):
    """(x0_hat, eps_hat, (alpha, sigma, dalpha, dsigma)) at time t (scalar)."""
    tb, (a, s, da, ds) = _coeffs(alpha_sigma, t, x)
    pred = _call(model_fn, x, tb, y)
    x0, eps = process.to_x0_eps(pred, x, a, s, prediction=prediction, dalpha=da, dsigma=ds)
    return x0, eps, (a, s, da, ds)


def _velocity(x0, eps, coeffs):
    a, s, da, ds = coeffs
    return da * x0 + ds * eps


def ancestral_sampler(model_fn, x_start, rng, *, alpha_sigma, prediction="eps", steps=100, t_start=1.0,
                      t_end=0.0, y=None):
    """DDPM ancestral sampling from t_start to t_end (see module docstring)."""
    return ddim_sampler(model_fn, x_start, rng, alpha_sigma=alpha_sigma, prediction=prediction, steps=steps,
                        t_start=t_start, t_end=t_end, y=y, eta=1.0)


def ddim_sampler(model_fn, x_start, rng, *, alpha_sigma, prediction="eps", steps=100, t_start=1.0, t_end=0.0,
                 y=None, eta=0.0):
    """DDIM with stochasticity eta in [0, 1] (see module docstring)."""
    _check(steps, t_start, t_end, prediction)
    t_now, t_next, last = _grid(steps, t_start, t_end)
    keys = jax.random.split(rng, steps)

    def step(x, inp):
        t, s, is_last, key = inp
        x0, eps, (a_t, s_t, _, _) = _denoise(model_fn, x, t, alpha_sigma, prediction, y)
        _, (a_s, s_s, _, _) = _coeffs(alpha_sigma, s, x)
        _, var = process.posterior(x, x0, a_s, s_s, a_t, s_t)
        c = eta * jnp.sqrt(var)
        noise = jnp.where(is_last, 0.0, c) * jax.random.normal(key, x.shape)
        x_next = a_s * x0 + jnp.sqrt(jnp.maximum(s_s ** 2 - c ** 2, 0.0)) * eps + noise
        return x_next, None

    x, _ = jax.lax.scan(step, x_start, (t_now, t_next, last, keys))
    return x


def ode_sampler(model_fn, x_start, rng=None, *, alpha_sigma, prediction="eps", steps=100, t_start=1.0,
                t_end=0.0, y=None, solver="heun"):
    """Probability-flow ODE with "euler" or "heun" (2nd order; Euler on a step that ends at sigma = 0)."""
    del rng  # deterministic
    _check(steps, t_start, t_end, prediction)
    if solver not in ("euler", "heun"):
        raise ValueError(f"Unknown ODE solver {solver!r}; use 'euler' or 'heun'.")
    t_now, t_next, _ = _grid(steps, t_start, t_end)

    def f(x, t):
        x0, eps, coeffs = _denoise(model_fn, x, t, alpha_sigma, prediction, y)
        return _velocity(x0, eps, coeffs)

    def step(x, inp):
        t, s = inp
        h = s - t
        d1 = f(x, t)
        x_euler = x + h * d1
        if solver == "euler":
            return x_euler, None
        d2 = f(x_euler, s)
        x_heun = x + 0.5 * h * (d1 + d2)
        _, sig_s = alpha_sigma(s)
        return jnp.where(sig_s > 0, x_heun, x_euler), None

    x, _ = jax.lax.scan(step, x_start, (t_now, t_next))
    return x


def sde_sampler(model_fn, x_start, rng, *, alpha_sigma, prediction="eps", steps=100, t_start=1.0, t_end=0.0,
                y=None):
    """Reverse SDE (Eq. 6) with Euler-Maruyama (see module docstring)."""
    _check(steps, t_start, t_end, prediction)
    t_now, t_next, last = _grid(steps, t_start, t_end)
    keys = jax.random.split(rng, steps)

    def step(x, inp):
        t, s, is_last, key = inp
        h = t - s  # > 0
        x0, eps, (a, sg, da, ds) = _denoise(model_fn, x, t, alpha_sigma, prediction, y)
        f = da / a
        g2 = 2.0 * sg * ds - 2.0 * f * sg ** 2
        score = -eps / sg
        drift = f * x - g2 * score
        noise = jnp.where(is_last, 0.0, jnp.sqrt(jnp.maximum(g2, 0.0) * h)) * jax.random.normal(key, x.shape)
        return x - h * drift + noise, None

    x, _ = jax.lax.scan(step, x_start, (t_now, t_next, last, keys))
    return x


def flow_ode_sampler(model_fn, x_start, rng=None, *, steps=100, t_start=1.0, t_end=0.0, y=None, solver="euler"):
    """Flow-matching ODE (Eq. 9) dX = v_theta(X, t) dt from t_start to t_end, path alpha = 1 - t, sigma = t."""
    return ode_sampler(model_fn, x_start, rng, alpha_sigma=flow_alpha_sigma, prediction="velocity", steps=steps,
                       t_start=t_start, t_end=t_end, y=y, solver=solver)


SAMPLERS = {
    "ancestral": ancestral_sampler,
    "ddim": ddim_sampler,
    "ode_euler": lambda *a, **k: ode_sampler(*a, solver="euler", **k),
    "ode_heun": lambda *a, **k: ode_sampler(*a, solver="heun", **k),
    "sde": sde_sampler,
}


def get_sampler(name: str):
    """Sampler by name: 'ancestral', 'ddim', 'ode_euler', 'ode_heun', 'sde'."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; use one of {sorted(SAMPLERS)}.")
    return SAMPLERS[name]
