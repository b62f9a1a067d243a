"""Diffusion and flow-matching objectives (pure jnp, jit-able).

Conventions
- ``model_fn(z, t) -> prediction`` with z [B, ...] and t [B]; conditional variants pass ``y=...`` and the
  model is then called as ``model_fn(z, t, y)`` (the extra input y, e.g. an image-shaped embedding).
- Data x is float32 in [-1, 1]; for the discrete data term it must lie on the 8-bit grid
  x = k / 127.5 - 1, k in {0..255} (what the training loop produces from uint8 images).
- Log-SNR schedules gamma(t) follow `schedules.py` (alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma)).
- Losses are returned per example ([B]); rates are converted to bits (per dimension) before they leave
  this module: ``bits_per_dim = nats / (D ln 2)``, D = number of dimensions of one example.

Loss weightings (documented equivalences, tested in tests/diffusion/test_diffusion_losses.py). For a model
with prediction error expressed in eps space, e = eps - eps_hat, at log-SNR gamma (SNR = exp(-gamma)):
    ||x0 - x0_hat||^2 = ||e||^2 / SNR,
    ||v - v_hat||^2   = ((alpha^2 + sigma^2) / alpha)^2 ||e||^2   (= (1 + 1/SNR) ||e||^2 for VP),
and the continuous-time ELBO's diffusion term is 1/2 gamma'(t) ||e||^2 = -1/2 SNR'(t) ||x0 - x0_hat||^2.
`equivalent_weight` returns these factors.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.data import images
from gencomp_jax.diffusion import process
from gencomp_jax.diffusion.schedules import AlphaSigmaFn, alpha_sigma_from_gamma, flow_alpha_sigma

LN2 = math.log(2.0)


def _call(model_fn, z, t, y):
    return model_fn(z, t) if y is None else model_fn(z, t, y)


def _sum_dims(a):
    return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def _num_dims(x):
    return int(math.prod(x.shape[1:]))


def sample_times(rng, batch: int, *, antithetic: bool = True) -> jnp.ndarray:
    """t [batch] in [0, 1): low-discrepancy (VDM: (u + i / B) mod 1, one uniform u) or i.i.d. uniform."""
    if antithetic:
        u = jax.random.uniform(rng, ())
        return jnp.mod(u + jnp.arange(batch, dtype=jnp.float32) / batch, 1.0)
    return jax.random.uniform(rng, (batch,))


# ----------------------------------------------------------------------------------------------------
# terms of the variational bound

# The discretized data likelihood p(x | z_0) over the 256 levels of 8-bit data (one implementation, used by
# the VDM/DDPM bounds, the UQDM loss and the UQDM codec's X_0 tables):
#     p(x = x_k | z_0) proportional to N(z_0; alpha_0 x_k, sigma_0^2),  x_k = data.grid_values(grid=)[k],
# i.e. logits_k = -(z_0 - alpha_0 x_k)^2 / (2 sigma_0^2) = -exp(-gamma_0) (z_0 / alpha_0 - x_k)^2 / 2.
# `discrete_data_logits` / `discrete_data_log_probs` give the whole distribution (entropy-coding tables),
# `discrete_data_argmax` its mode, `discrete_data_nll` -log p(x | z_0) without storing the [..., 256] logits
# (training). tests/diffusion/test_diffusion_losses.py checks the three against each other.

_NUM_LEVELS = 256


def discrete_data_logits(z0, gamma0, *, grid: str = images.DEFAULT_GRID):
    """Logits of p(x | z_0) over the 256 grid values: z0 [...], gamma0 (log-SNR at t=0) broadcastable -> [..., 256].

    logits_k = -exp(-gamma0) (z0 / alpha0 - x_k)^2 / 2 with alpha0 = sqrt(sigmoid(-gamma0)) (unnormalised;
    `discrete_data_log_probs` normalises). Entropy coders build their tables from these numbers, so the
    formula is part of the UQDM file format: do not rewrite it.
    """
    alpha0, _ = alpha_sigma_from_gamma(gamma0)
    precision = jnp.exp(-gamma0)                   # alpha0^2 / sigma0^2
    if jnp.ndim(precision):
        precision = precision[..., None]
    d = (z0 / alpha0)[..., None] - images.grid_values(grid=grid)
    return -0.5 * precision * d * d


def discrete_data_log_probs(z0, gamma0, *, grid: str = images.DEFAULT_GRID):
    """log p(x = x_k | z_0) for every level k (nats): [...] -> [..., 256], normalised."""
    return jax.nn.log_softmax(discrete_data_logits(z0, gamma0, grid=grid), axis=-1)


def discrete_data_argmax(z0, gamma0, *, grid: str = images.DEFAULT_GRID):
    """Mode of p(x | z_0): the level nearest to z0 / alpha0 (int32 [...] in [0, 255])."""
    alpha0, _ = alpha_sigma_from_gamma(gamma0)
    return images.grid_index(z0 / alpha0, grid=grid)


def discrete_data_nll(x, z0, alpha0, sigma0, *, num_levels: int = _NUM_LEVELS, grid: str = images.DEFAULT_GRID):
    """-log p(x | z_0) elementwise (nats), p(x = v | z_0) proportional to N(z_0; alpha0 v, sigma0^2) over the grid.

    A normalised distribution over the 256 values of `grid` (data.grid_values) per dimension, so the ELBO built
    with it bounds -log P(x) of the discrete data. x (model space, snapped to the grid), z0: [B, ...]; alpha0,
    sigma0 broadcastable. Differentiable in z0, alpha0 and sigma0 (x is data: zero gradient).

    Computed as logsumexp_v(l_v) - l_x, l_v = -(z0 - alpha0 v)^2 / (2 sigma0^2), stabilised by l at the grid point
    nearest z0 / alpha0 (the maximum), with a hand-written VJP whose residuals are per-element expectations under
    p(v | z_0), so the [..., 256] logits are never stored. When sigma0 / alpha0 is small (log-SNR gamma_0
    below about -9.4, as in trained VDMs) only the 2 * 16 + 1 grid values around the maximum are summed: every
    value left out has exp(l_v - max) < 1e-45, which is exactly 0 in float32, so the result is the same.
    """
    if num_levels != _NUM_LEVELS:
        raise ValueError(f"discrete data has 256 levels (8-bit images), got num_levels={num_levels}")
    _grid_step(grid)  # checks the grid name
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(z0), jnp.shape(alpha0), jnp.shape(sigma0))
    args = (jnp.broadcast_to(jnp.asarray(v, jnp.float32), shape) for v in (x, z0, alpha0, sigma0))
    return _discrete_nll(*args, grid)


_NLL_WINDOW = 16


@functools.lru_cache(maxsize=None)
def _grid_step(grid: str) -> float:
    """Spacing of the levels of `grid` (a Python float, also while tracing)."""
    with jax.ensure_compile_time_eval():
        g = np.asarray(images.grid_values(grid=grid), np.float64)
    return float(g[1] - g[0])


def _discrete_nll_stats(x, z0, a0, s0, grid, window):
    """(x on the grid, u_x, max logit, sum e, E[u], E[u^2], E[u v]) with e_v = exp(l_v - max), u_v = (z0 - a0 v) / s0,
    summing over all grid values (window=None) or the 2 window + 1 nearest to z0 / a0."""
    xk = images.to_model(images.grid_index(x, grid=grid), grid=grid)               # x snapped to the grid
    jstar = images.grid_index(z0 / a0, grid=grid)                                   # argmax of the logits
    uk = (z0 - a0 * xk) / s0
    m = -0.5 * jnp.square((z0 - a0 * images.to_model(jstar, grid=grid)) / s0)
    if window is None:
        values, valid = images.grid_values(grid=grid), None
    else:
        idx = jstar[..., None] + jnp.arange(-window, window + 1, dtype=jnp.int32)
        valid = (idx >= 0) & (idx <= _NUM_LEVELS - 1)
        values = images.to_model(idx, grid=grid)
    u = (z0[..., None] - a0[..., None] * values) / s0[..., None]
    e = jnp.exp(-0.5 * jnp.square(u) - m[..., None])
    if valid is not None:
        e = jnp.where(valid, e, 0.0)
    eu = e * u
    s_0 = jnp.sum(e, -1)
    return xk, uk, m, s_0, jnp.sum(eu, -1) / s_0, jnp.sum(eu * u, -1) / s_0, jnp.sum(eu * values, -1) / s_0


def _discrete_nll_fwd(x, z0, a0, s0, grid):
    # grid spacing in u units: delta = a0 step / s0; a value d >= 1 steps away from the maximum has
    # l_v - max <= -delta^2 d (d - 1) / 2, so values beyond the window are < exp(-104) = 0 in float32 when
    # delta^2 W (W + 1) >= 208.
    w = _NLL_WINDOW
    delta = jnp.min(a0 / s0) * _grid_step(grid)
    use_window = delta * delta * (w * (w + 1)) >= 208.0
    stats = jax.lax.cond(use_window,
                         lambda *a: _discrete_nll_stats(*a, grid, w),
                         lambda *a: _discrete_nll_stats(*a, grid, None), x, z0, a0, s0)
    xk, uk, m, s_0, mean_u, mean_u2, mean_ug = stats
    out = m + jnp.log(s_0) + 0.5 * jnp.square(uk)
    return out, (x, xk, uk, s0, mean_u, mean_u2, mean_ug)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _discrete_nll(x, z0, a0, s0, grid):
    return _discrete_nll_fwd(x, z0, a0, s0, grid)[0]


def _discrete_nll_bwd(grid, res, g):
    # l_v = -u_v^2 / 2 with u_v = (z0 - a0 v) / s0;  d nll = E_p[d l_v] - d l_x
    x, xk, uk, s0, mean_u, mean_u2, mean_ug = res
    g = g / s0
    return (jnp.zeros_like(x), g * (uk - mean_u), g * (mean_ug - uk * xk), g * (mean_u2 - jnp.square(uk)))


_discrete_nll.defvjp(_discrete_nll_fwd, _discrete_nll_bwd)


def gaussian_data_nll(x, z0, alpha0, sigma0):
    """-log N(x; z0 / alpha0, (sigma0 / alpha0)^2) elementwise (nats): the data term for continuous data."""
    scale = sigma0 / alpha0
    return 0.5 * jnp.square((x - z0 / alpha0) / scale) + jnp.log(scale) + 0.5 * math.log(2 * math.pi)


def prior_kl(x, alpha1, sigma1):
    """KL(q(z_1 | x) || N(0, I)) elementwise (nats), q(z_1 | x) = N(alpha1 x, sigma1^2)."""
    var1 = sigma1 ** 2
    return 0.5 * (var1 + jnp.square(alpha1 * x) - 1.0 - jnp.log(var1))


def _endpoint_terms(x, rng, a0, s0, a1, s1, *, data: str, num_levels: int):
    """(recon, prior) in nats per example: -log p(x | z_0) with z_0 ~ q(z_0 | x), and KL(q(z_1 | x) || N(0, I))."""
    z0 = a0 * x + s0 * jax.random.normal(rng, x.shape)
    if data == "discrete":
        recon = _sum_dims(discrete_data_nll(x, z0, a0, s0, num_levels=num_levels))
    elif data == "gaussian":
        recon = _sum_dims(gaussian_data_nll(x, z0, a0, s0))
    else:
        raise ValueError(f"Unknown data term {data!r}; use 'discrete' (8-bit images) or 'gaussian'.")
    return recon, _sum_dims(prior_kl(x, a1, s1))


def vdm_elbo(model_fn, x, rng, *, gamma_fn: Callable, prediction: str = "eps", y=None,
             timesteps: int = 0, data: str = "discrete", num_levels: int = 256, antithetic: bool = True):
    """VDM negative ELBO, per example, in bits per dimension (a true upper bound on -log2 p(x) / D).

    -log p(x) <= E[-log p(x | z_0)] + KL(q(z_1 | x) || N(0, I)) + L_diffusion, with
      continuous time (timesteps=0): L = 1/2 E_t[gamma'(t) ||eps - eps_hat(z_t, t)||^2],  t ~ U(0, 1);
      T steps (timesteps=T):         L = T/2 E_i[expm1(gamma(t_i) - gamma(t_{i-1})) ||eps - eps_hat||^2],
                                      t_i = i / T, i ~ U{1..T} (an unbiased one-sample estimate of the sum
                                      of the T KL terms, see `ddpm_elbo_terms`).
    data: "discrete" (256-level data term, `discrete_data_nll`) or "gaussian" (continuous data, `gaussian_data_nll`).
    Returns dict of [B] arrays: bpd (total), bpd_recon, bpd_prior, bpd_diffusion.
    """
    process.check_prediction(prediction)
    if prediction == "velocity":
        raise ValueError("vdm_elbo is for VP schedules; use prediction 'eps', 'x0', 'v' or 'score'.")
    rng_t, rng_e, rng_0 = jax.random.split(rng, 3)
    b = x.shape[0]
    dims = _num_dims(x)
    ones = jnp.ones((b,), jnp.float32)

    # data term at t = 0 and prior term at t = 1
    g0, g1 = gamma_fn(0.0 * ones), gamma_fn(ones)
    a0, s0 = alpha_sigma_from_gamma(process.broadcast_to(g0, x))
    a1, s1 = alpha_sigma_from_gamma(process.broadcast_to(g1, x))
    recon, prior = _endpoint_terms(x, rng_0, a0, s0, a1, s1, data=data, num_levels=num_levels)

    # diffusion term
    t = sample_times(rng_t, b, antithetic=antithetic)
    if timesteps:
        t = (jnp.floor(t * timesteps) + 1.0) / timesteps
    if timesteps:
        g_t = gamma_fn(t)
        g_s = gamma_fn(t - 1.0 / timesteps)
    else:
        g_t, dg_t = jax.jvp(gamma_fn, (t,), (jnp.ones_like(t),))
    eps = jax.random.normal(rng_e, x.shape)
    a_t, s_t = alpha_sigma_from_gamma(process.broadcast_to(g_t, x))
    z_t = a_t * x + s_t * eps
    pred = _call(model_fn, z_t, t, y)
    _, eps_hat = process.to_x0_eps(pred, z_t, a_t, s_t, prediction=prediction)
    mse = _sum_dims(jnp.square(eps - eps_hat))
    if timesteps:
        diffusion = 0.5 * timesteps * jnp.expm1(g_t - g_s) * mse
    else:
        diffusion = 0.5 * dg_t * mse

    scale = 1.0 / (dims * LN2)
    out = {"bpd_recon": recon * scale, "bpd_prior": prior * scale, "bpd_diffusion": diffusion * scale}
    out["bpd"] = out["bpd_recon"] + out["bpd_prior"] + out["bpd_diffusion"]
    return out


def ddpm_elbo_terms(model_fn, x, rng, *, alpha_sigma: AlphaSigmaFn, num_steps: int, prediction: str = "eps",
                    y=None, data: str = "discrete", num_levels: int = 256):
    """Discrete-time DDPM negative ELBO (Eq. 2) with T = num_steps latent steps, as the sum of its KL terms.

    Latents z_{i/T}, i = 0..T, on the schedule `alpha_sigma`; the reverse kernel is
    p(z_s | z_t) = q(z_s | z_t, x_0 = x0_hat(z_t, t)). For each i = 1..T one z_t ~ q(z_t | x) is drawn and
    KL(q(z_s | z_t, x) || p(z_s | z_t)) is computed in closed form (s = t - 1/T).
    Returns nats, per example: recon [B] (-log p(x | z_0)), prior [B] (KL to N(0, I) at t = 1),
    kl [B, T] (step i at column i-1), total [B]; and bpd [B] = total / (D ln 2).
    """
    process.check_prediction(prediction)
    b = x.shape[0]
    dims = _num_dims(x)
    ts = jnp.arange(1, num_steps + 1, dtype=jnp.float32) / num_steps
    rng_0, rng_steps = jax.random.split(rng)

    a0, s0 = alpha_sigma(jnp.zeros((b,), jnp.float32))
    a0, s0 = process.broadcast_to(a0, x), process.broadcast_to(s0, x)
    a1, s1 = alpha_sigma(jnp.ones((b,), jnp.float32))
    a1, s1 = process.broadcast_to(a1, x), process.broadcast_to(s1, x)
    recon, prior = _endpoint_terms(x, rng_0, a0, s0, a1, s1, data=data, num_levels=num_levels)

    def step_kl(carry, inp):
        t, key = inp
        tb = jnp.full((b,), t)
        a_t, s_t = alpha_sigma(tb)
        a_s, s_s = alpha_sigma(tb - 1.0 / num_steps)
        a_t, s_t, a_s, s_s = (process.broadcast_to(v, x) for v in (a_t, s_t, a_s, s_s))
        z_t = a_t * x + s_t * jax.random.normal(key, x.shape)
        pred = _call(model_fn, z_t, tb, y)
        if prediction == "velocity":
            _, _, da, ds = _derivs(alpha_sigma, tb, x)
            x0_hat, _ = process.to_x0_eps(pred, z_t, a_t, s_t, prediction=prediction, dalpha=da, dsigma=ds)
        else:
            x0_hat, _ = process.to_x0_eps(pred, z_t, a_t, s_t, prediction=prediction)
        mean_q, var = process.posterior(z_t, x, a_s, s_s, a_t, s_t)
        mean_p, _ = process.posterior(z_t, x0_hat, a_s, s_s, a_t, s_t)
        return carry, _sum_dims(process.gaussian_kl(mean_q, var, mean_p, var))

    keys = jax.random.split(rng_steps, num_steps)
    _, kls = jax.lax.scan(step_kl, None, (ts, keys))
    kl = kls.T
    total = recon + prior + jnp.sum(kl, axis=1)
    return {"recon": recon, "prior": prior, "kl": kl, "total": total, "bpd": total / (dims * LN2)}


def _derivs(alpha_sigma, t, x):
    from gencomp_jax.diffusion.schedules import alpha_sigma_and_derivatives
    return tuple(process.broadcast_to(v, x) for v in alpha_sigma_and_derivatives(alpha_sigma, t))


# ----------------------------------------------------------------------------------------------------
# weighted denoising losses and flow matching

def equivalent_weight(target: str, alpha, sigma):
    """Factor c with ||target - target_hat||^2 = c ||eps - eps_hat||^2 at fixed x_t (see module docstring)."""
    if target == "eps":
        return jnp.ones_like(alpha)
    if target == "x0":
        return (sigma / alpha) ** 2
    if target == "v":
        return ((alpha ** 2 + sigma ** 2) / alpha) ** 2
    if target == "score":
        return 1.0 / sigma ** 2
    raise ValueError(f"Unknown target {target!r}; use 'eps', 'x0', 'v' or 'score'.")


def _noisy_sample(rng, x, alpha_sigma, antithetic):
    """Draws t ~ U(0, 1) (antithetic) and z_t = alpha_t x + sigma_t eps; returns (t, z_t, eps, (a, s, a', s'))."""
    rng_t, rng_e = jax.random.split(rng)
    t = sample_times(rng_t, x.shape[0], antithetic=antithetic)
    a, s, da, ds = _derivs(alpha_sigma, t, x)
    eps = jax.random.normal(rng_e, x.shape)
    return t, a * x + s * eps, eps, (a, s, da, ds)


def denoising_loss(model_fn, x, rng, *, alpha_sigma: AlphaSigmaFn, prediction: str = "eps",
                   target: Optional[str] = None, weighting: Optional[Callable] = None, y=None,
                   antithetic: bool = True):
    """Weighted denoising loss per example [B]: w(t) * sum_dims ||target - target_hat(z_t, t)||^2.

    The network predicts `prediction`; the regression is done in `target` space (default: same).
    weighting: None (w = 1) or a function w(t [B]) -> [B]. With target="eps" and
    w(t) = gamma'(t) / 2 (ln-2 scaled by 1/(D ln 2)) this is the VDM diffusion term; see `equivalent_weight`
    for how targets translate into each other.
    """
    target = target or prediction
    t, z_t, eps, (a, s, da, ds) = _noisy_sample(rng, x, alpha_sigma, antithetic)
    pred = _call(model_fn, z_t, t, y)
    x0_hat, eps_hat = process.to_x0_eps(pred, z_t, a, s, prediction=prediction, dalpha=da, dsigma=ds)
    tgt = process.from_x0_eps(x, eps, a, s, prediction=target, dalpha=da, dsigma=ds)
    tgt_hat = process.from_x0_eps(x0_hat, eps_hat, a, s, prediction=target, dalpha=da, dsigma=ds)
    loss = _sum_dims(jnp.square(tgt - tgt_hat))
    if weighting is not None:
        loss = weighting(t) * loss
    return loss


def flow_matching_loss(model_fn, x, rng, *, y=None, alpha_sigma: AlphaSigmaFn = flow_alpha_sigma,
                       antithetic: bool = True):
    """Flow matching (Eqs. 8, 10): mean over dims of ||v_theta(x_t, [y,] t) - (alpha' x + sigma' eps)||^2, [B].

    Default path alpha = 1 - t, sigma = t (target eps - x). The model predicts the velocity.
    """
    t, z_t, eps, (_, _, da, ds) = _noisy_sample(rng, x, alpha_sigma, antithetic)
    u = da * x + ds * eps
    pred = _call(model_fn, z_t, t, y)
    return jnp.mean(jnp.square(pred - u).reshape(x.shape[0], -1), axis=-1)
