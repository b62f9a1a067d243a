"""Universally quantized diffusion model (UQDM; Yang, Will & Mandt, ICLR 2025; review Sec. IV-B).

A T-step diffusion model whose forward steps are *uniform* channels, so that Algorithm 1 of the
review (progressive coding) runs with dithered quantization instead of Gaussian channel simulation.

Time grid: t_i = 1 - i / T, i = 0..T. Step i (0-based) goes from t = t_i to s = t_{i+1}.
Schedule: learned linear log-SNR gamma(t) = gamma_0 + (gamma_max - gamma_0) t with gamma_max fixed
(`diffusion.schedules.LearnedLinearSchedule(fix_gamma_max=True)`; the reference writes the same
line as |w| (t - 1) + gamma_max with w initialised to gamma_max - gamma_min = 18.3);
alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma).

Forward process (all elementwise, x in [-1, 1]):
  P(X_T | X_0 = x) = N(alpha_T x, sigma_T^2) ~ N(0, I)   (gamma_max = 6: SNR(1) = 0.0025);
  P(X_s | X_t = z, X_0 = x) = U(mu_Q - Delta/2, mu_Q + Delta/2) with the Gaussian posterior's moments
    e     = -expm1(gamma_s - gamma_t)                 (= sigma_{t|s}^2 / sigma_t^2)
    mu_Q  = alpha_s ((1 - e) / alpha_t z + e x)
    Delta = sigma_s sqrt(12 e)                        (variance Delta^2 / 12 = sigma_s^2 e).
Reverse process: p(z_s | z_t) = g(. - mu_P) * U(-Delta/2, Delta/2), g logistic (default) or Gaussian,
  mu_P = mu_Q with x replaced by x_hat = clip((z_t - sigma_t eps_hat) / alpha_t, -1, 1),
  std(g) = base * softplus-factor from the UNet's extra output channels (initialised to 1), with
  base = sigma_t sqrt(e) ("forward_kernel", the reference code's default) or sigma_s sqrt(e)
  ("posterior", the paper's text).
X_0: discretized p(x | z_0) over the 256 levels of the data grid (VDM's likelihood, the one implementation
  in diffusion/losses.py: `discrete_data_nll` in the loss, `discrete_data_log_probs` / `_argmax` in the codec).

Rates: KL(U(mu_Q, Delta) || p) = -log Delta - E log p(z_s), and -log Delta - log p(z_s) is exactly
minus the log-mass of g on the width-Delta bin centred at z_s; that mass is what dithered
quantization pays per element (codecs/uqdm.py). The loss is one Monte-Carlo sample of
  NELBO = KL(q(z_T|x) || N(0,I)) + sum_i KL_i + E[-log p(x | z_0)]          (in bits per dim).

Network input: the UNet sees z_t and the rescaled time (gamma_t - gamma_min) / (gamma_max -
gamma_min) with the *configured* constants, as in the reference.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gencomp_jax.data import images
from gencomp_jax.diffusion import losses, schedules
from gencomp_jax.entropy import densities
from gencomp_jax.models import unet as unet_lib

FAMILIES = ("logistic", "gaussian")
BASE_SCALES = ("forward_kernel", "posterior")
_LN2 = math.log(2.0)


def default_model_config() -> ml_collections.ConfigDict:
    """config.model for method "uqdm" (see configs/uqdm.py for presets)."""
    m = ml_collections.ConfigDict()
    m.diffusion_steps = 4              # T, the number of diffusion steps (= step segments of a file)
    m.family = "logistic"              # g: "logistic" | "gaussian"
    m.base_scale = "forward_kernel"    # "forward_kernel" (reference code) | "posterior" (paper text)
    m.learned_scale = True             # per-element scale factor from doubled UNet outputs
    m.gamma_min = -12.3                # initial gamma(0)
    m.gamma_max = 6.0                  # fixed gamma(1)
    m.learn_gamma = True               # learn gamma(0) (gamma_max stays fixed)
    m.prior_kl = True                  # include KL(q(z_T|x) || N(0, I)) in the training loss
    # z_T in the loss: "posterior" = z_T ~ q(z_T | x) (+ its KL), as the reference trains; "prior" =
    # z_T ~ N(0, I) at zero rate, exactly the codec's path (the loss is then the expected file size).
    m.z_T_source = "posterior"
    # network: models/unet.make_unet config (arch "vdm_unet" = the reference's single-resolution net)
    m.net = ml_collections.ConfigDict({"arch": "vdm_unet", "preset": "tiny"})
    # data grid of the model's inputs (data.images.GRIDS): "center" = 2 (k + 1/2) / 256 - 1 (VDM, the UQDM
    # reference and its released weights); configs written before this key existed read as "edge".
    m.data_grid = images.DEFAULT_GRID
    m.tile_size = 32                   # codec: images are padded and split into tiles of this size
    m.tile_batch = 1                   # codec: the network always runs on this many tiles at once
    return m


# Config keys renamed after 44b2816 (issue 10): old -> new. Workdirs written before keep their config.json;
# `model_config` maps the old names when a model config is read (make_method / make_codec / initial_params),
# and is the only place that knows them.
_RENAMED_KEYS = {"num_steps": "diffusion_steps", "unet": "net"}


def model_config(m) -> ml_collections.ConfigDict:
    """config.model with pre-rename keys (`num_steps` = T, `unet` = the network) mapped to today's
    (`diffusion_steps`, `net`); a copy, the argument is not changed. Both an old and a new key is an error."""
    m = ml_collections.ConfigDict(m.to_dict() if hasattr(m, "to_dict") else dict(m))
    for old, new in _RENAMED_KEYS.items():
        if old in m:
            if new in m:
                raise ValueError(f"config.model has both {old!r} (old name) and {new!r}; keep only {new!r}.")
            value = m[old]
            del m[old]
            m[new] = value
    if "data_grid" not in m:  # written before the grid was recorded: those models were trained on "edge"
        m.data_grid = "edge"
    return m


def _check_model_config(m) -> None:
    stale = [k for k in _RENAMED_KEYS if k in m]
    if stale:
        raise ValueError(f"config.model uses the old key(s) {stale}: pass it through "
                         f"gencomp_jax.models.uqdm.model_config() (renamed: {_RENAMED_KEYS}).")
    if m.family not in FAMILIES:
        raise ValueError(f"config.model.family={m.family!r}; use one of {FAMILIES}.")
    if m.base_scale not in BASE_SCALES:
        raise ValueError(f"config.model.base_scale={m.base_scale!r}; use one of {BASE_SCALES}.")
    if int(m.diffusion_steps) < 1:
        raise ValueError(f"config.model.diffusion_steps must be >= 1, got {m.diffusion_steps}.")
    if not m.gamma_max > m.gamma_min:
        raise ValueError("config.model.gamma_max must exceed gamma_min (SNR decreases in time).")
    if m.get("data_grid", "edge") not in images.GRIDS:
        raise ValueError(f"config.model.data_grid={m.data_grid!r}; use one of {images.GRIDS}.")


# ---------------------------------------------------------------------------------------------------
# Parameter-free math (elementwise; gammas are scalars or broadcastable arrays)


def time_grid(num_steps: int) -> list[float]:
    """[t_0 = 1, t_1, ..., t_T = 0] (Python floats): step i goes from t_i to t_{i+1}."""
    return [1.0 - i / num_steps for i in range(num_steps + 1)]


def forward_posterior(z_t, x, gamma_t, gamma_s):
    """Uniform forward kernel P(X_s | X_t = z_t, X_0 = x): returns (mu_Q like z_t, Delta scalar).

    mu_Q = alpha_s ((1 - e)/alpha_t z_t + e x), Delta = sigma_s sqrt(12 e), e = -expm1(gamma_s - gamma_t);
    mean and variance equal those of the Gaussian posterior q(z_s | z_t, x) of VP diffusion.
    """
    alpha_t, _ = schedules.alpha_sigma_from_gamma(gamma_t)
    alpha_s, sigma_s = schedules.alpha_sigma_from_gamma(gamma_s)
    e = -jnp.expm1(gamma_s - gamma_t)
    mu = alpha_s * ((1.0 - e) / alpha_t * z_t + e * x)
    return mu, sigma_s * jnp.sqrt(12.0 * e)


def std_to_scale(family: str, std):
    """Family scale parameter with the given standard deviation (logistic: s = std sqrt(3) / pi)."""
    return std * (math.sqrt(3.0) / math.pi) if family == "logistic" else std


def step_rate_nats(family: str, z_s, loc, scale, width):
    """-log mass of g(loc, scale) on [z_s - width/2, z_s + width/2] (= -log Delta - log p(z_s)), nats.

    In log space with no floor (densities.log_bin_probability), as the reference computes it: the
    NELBO stays an upper bound however far z_s is from loc, and every element keeps its gradient.
    """
    return -densities.log_bin_probability(family, loc, scale, z_s - 0.5 * width, z_s + 0.5 * width)


def sample_family(family: str, rng, shape):
    """Standard logistic / Gaussian samples."""
    if family == "logistic":
        return jax.random.logistic(rng, shape)
    return jax.random.normal(rng, shape)


# ---------------------------------------------------------------------------------------------------
# The model


def _make_unet(model_cfg):
    cfg = dict(model_cfg.net)
    cfg["double_output"] = bool(model_cfg.learned_scale)
    return unet_lib.make_unet(cfg)


class UQDM(nn.Module):
    """Linen UQDM: schedule + score network. See the module docstring for the math.

    Attributes: cfg: config.model (default_model_config()).
    Methods (call with model.apply(params, ..., method=UQDM.<name>)):
      __call__(x, rng, train)           -> dict of per-example terms (nats) [B] (the loss terms)
      gammas()                          -> float32 [T + 1], gamma(t_i)
      reverse(z_t, i, train=False)      -> dict(loc, scale, width, x_hat, eps_hat), step i's p(z_s | z_t)
    """

    cfg: Any

    def setup(self):
        c = self.cfg
        _check_model_config(c)
        self.schedule = schedules.LearnedLinearSchedule(
            gamma_min=float(c.gamma_min), gamma_max=float(c.gamma_max), fix_gamma_max=True)
        self.net = _make_unet(c)

    # -- schedule ---------------------------------------------------------------------------------
    def gamma(self, t):
        g = self.schedule(jnp.asarray(t, jnp.float32))
        if not self.cfg.learn_gamma:
            g = jax.lax.stop_gradient(g)
        return g

    def gammas(self):
        return self.gamma(jnp.asarray(time_grid(int(self.cfg.diffusion_steps)), jnp.float32))

    def _step_gammas(self, i):
        """(gamma(t_i), gamma(t_{i+1})); i may be a Python int or a traced int32 scalar."""
        times = jnp.asarray(time_grid(int(self.cfg.diffusion_steps)), jnp.float32)
        return self.gamma(times[i]), self.gamma(times[i + 1])

    # -- network ----------------------------------------------------------------------------------
    def predict(self, z_t, gamma_t, train: bool = False):
        """eps_hat [like z_t], scale factor [like z_t] (ones without learned scale)."""
        c = self.cfg
        t_in = (gamma_t - c.gamma_min) / (c.gamma_max - c.gamma_min)
        t_in = jnp.broadcast_to(jnp.asarray(t_in, jnp.float32), (z_t.shape[0],))
        out = self.net(z_t, t_in, train=train)
        if c.learned_scale:
            eps_hat, f = unet_lib.split_mean_scale(out)
        else:
            eps_hat, f = out, jnp.ones_like(z_t)
        return eps_hat, f

    def reverse(self, z_t, i: int, train: bool = False):
        """Parameters of step i's reverse kernel p(z_s | z_t) = g(loc, scale) * U(+-width/2).

        z_t: float32 [B, H, W, 3]; i: step index in [0, T) (Python int or traced int32). Returns dict with loc, scale (g's scale
        parameter), width (scalar Delta), x_hat (clipped denoised prediction), eps_hat.
        """
        c = self.cfg
        g_t, g_s = self._step_gammas(i)
        alpha_t, sigma_t = schedules.alpha_sigma_from_gamma(g_t)
        alpha_s, sigma_s = schedules.alpha_sigma_from_gamma(g_s)
        e = -jnp.expm1(g_s - g_t)
        eps_hat, f = self.predict(z_t, g_t, train)
        x_hat = jnp.clip((z_t - sigma_t * eps_hat) / alpha_t, -1.0, 1.0)
        loc, width = forward_posterior(z_t, x_hat, g_t, g_s)
        base = (sigma_t if c.base_scale == "forward_kernel" else sigma_s) * jnp.sqrt(e)
        scale = std_to_scale(c.family, base * f)
        return dict(loc=loc, scale=scale, width=width, x_hat=x_hat, eps_hat=eps_hat,
                    alpha_s=alpha_s, sigma_s=sigma_s)

    def flow_step(self, z_t, i: int):
        """Deterministic (probability-flow / DDIM) step: z_s = alpha_s x_hat + sigma_s eps_hat (unclipped)."""
        g_t, g_s = self._step_gammas(i)
        alpha_t, sigma_t = schedules.alpha_sigma_from_gamma(g_t)
        alpha_s, sigma_s = schedules.alpha_sigma_from_gamma(g_s)
        eps_hat, _ = self.predict(z_t, g_t)
        return alpha_s / alpha_t * z_t + (sigma_s - alpha_s / alpha_t * sigma_t) * eps_hat

    def ancestral_step(self, z_t, i: int, rng):
        """A sample of p(z_s | z_t) = loc + scale * G + width * (U - 1/2)."""
        p = self.reverse(z_t, i)
        r1, r2 = jax.random.split(rng)
        g = sample_family(self.cfg.family, r1, z_t.shape)
        u = jax.random.uniform(r2, z_t.shape)
        return p["loc"] + p["scale"] * g + p["width"] * (u - 0.5)

    def __call__(self, x, rng, train: bool = False, z_T_source: str | None = None, noise: dict | None = None):
        """Per-example NELBO terms in nats for x float32 [B, H, W, 3] on the data grid (data.to_model).

        Returns dict: prior [B], steps [T, B], recon [B]. One Monte-Carlo sample of each step
        (z_T ~ q(z_T | x) or N(0, I), see `z_T_source` (default config.model.z_T_source);
        z_s ~ U(mu_Q +- Delta/2)). With z_T_source="prior" the prior term is 0 and the sum is the
        expected code length of the codec (codecs/uqdm.py), which draws z_T from shared randomness.

        noise: optional fixed draws instead of `rng`'s: {"eps": [B, H, W, 3] standard normal (z_T),
        "u": [T, B, H, W, 3] uniform on [0, 1) (z_s = mu_Q + Delta (u_i - 1/2))}, e.g. to compare term by
        term with another implementation fed the same numbers.
        """
        c = self.cfg
        z_T_source = z_T_source or c.get("z_T_source", "posterior")
        if z_T_source not in ("posterior", "prior"):
            raise ValueError(f"z_T_source={z_T_source!r}; use 'posterior' or 'prior'.")
        T = int(c.diffusion_steps)
        gam = self.gammas()
        rngs = jax.random.split(rng, T + 1)
        if noise is None:
            eps = jax.random.normal(rngs[0], x.shape)
            us = [jax.random.uniform(rngs[i + 1], x.shape) for i in range(T)]
        else:
            eps, us = noise["eps"], noise["u"]
            if eps.shape != x.shape or us.shape != (T,) + x.shape:
                raise ValueError(f"noise needs eps of shape {x.shape} and u of shape {(T,) + x.shape}, got "
                                 f"{eps.shape} and {us.shape}.")
        alpha_T, sigma_T = schedules.alpha_sigma_from_gamma(gam[0])
        if z_T_source == "posterior":
            z = alpha_T * x + sigma_T * eps
            prior = jnp.sum(losses.prior_kl(x, alpha_T, sigma_T), axis=(1, 2, 3))
        else:
            z = eps
            prior = jnp.zeros(x.shape[:1], jnp.float32)
        steps = []
        for i in range(T):
            mu_q, width = forward_posterior(z, x, gam[i], gam[i + 1])
            z_s = mu_q + width * (us[i] - 0.5)
            p = self.reverse(z, i, train)
            steps.append(jnp.sum(step_rate_nats(c.family, z_s, p["loc"], p["scale"], p["width"]),
                                 axis=(1, 2, 3)))
            z = z_s
        alpha_0, sigma_0 = schedules.alpha_sigma_from_gamma(gam[T])
        recon = jnp.sum(losses.discrete_data_nll(x, z, alpha_0, sigma_0, grid=c.get("data_grid", "edge")),
                        axis=(1, 2, 3))
        return dict(prior=prior, steps=jnp.stack(steps), recon=recon)


def nelbo_metrics(terms: dict, num_dims: int, *, prior_kl: bool = True) -> tuple[jnp.ndarray, dict]:
    """Loss (bits per dim, batch mean) and scalar metrics from UQDM.__call__ terms."""
    scale = 1.0 / (num_dims * _LN2)
    prior = jnp.mean(terms["prior"]) * scale
    steps = jnp.mean(terms["steps"], axis=1) * scale
    recon = jnp.mean(terms["recon"]) * scale
    bpd = (prior if prior_kl else 0.0) + jnp.sum(steps) + recon
    metrics = {"bits_per_dim": bpd, "bpd_prior": prior, "bpd_recon": recon,
               "bpd_diffusion": jnp.sum(steps), "bpp": bpd * 3.0}
    for i in range(steps.shape[0]):
        metrics[f"bpd_step{i}"] = steps[i]
    return bpd, metrics
