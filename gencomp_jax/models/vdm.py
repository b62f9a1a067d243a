"""Diffusion (VDM) and flow-matching image models: the `Method`s for config.method "vdm" and "flow".

make_method(config) -> DiffusionMethod with
  init(rng, batch) -> {"net": unet variables, "schedule": schedule variables ({} if fixed)}
  loss(params, batch, rng, train) -> (loss, metrics)
    "vdm":  loss = VDM negative ELBO in bits/dim (continuous time, or T steps with model.timesteps = T),
            metrics bits_per_dim, bpd_recon, bpd_prior, bpd_diffusion, gamma_0, gamma_1.
    "flow": loss = flow-matching MSE (Eq. 8); with train=False also bits_per_dim: the VDM bound of the same
            network viewed as a diffusion model (a Gaussian path is a VP path rescaled: at log-SNR gamma,
            z_flow = z_vp / (alpha + sigma) at flow time t = sigma / (alpha + sigma)), evaluated on the fixed
            linear log-SNR schedule [model.gamma_min, model.gamma_max]; a true bound on -log2 p(x) / D.
  eval_artifacts(params, rng, outdir, step) -> dict: writes samples_<step>.png (a grid) and returns
            sample statistics (no held-out data needed).
  sample(params, rng, n, *, sampler=None, steps=None, shape=None) -> uint8 [n, H, W, 3]

config.model keys: net (dict for gencomp_jax.models.unet.make_unet), schedule ("linear" | "cosine" |
"learned_linear" | "learned_nnet"; vdm only), gamma_min, gamma_max, timesteps (0 = continuous),
prediction ("eps" | "x0" | "v"; vdm only), sampler, sample_steps, num_samples, sample_size (0 = crop_size).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.diffusion import losses, samplers, schedules
from gencomp_jax.models.unet import make_unet


def _get(cfg, key, default):
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


class DiffusionMethod:
    """VDM / flow-matching model (see module docstring)."""

    def __init__(self, config):
        self.config = config
        self.kind = config.method
        if self.kind not in ("vdm", "flow"):
            raise ValueError(f"models.vdm implements methods 'vdm' and 'flow', not {self.kind!r}.")
        m = config.model
        net_cfg = dict(_get(m, "net", {"arch": "unet"}))
        self.net = make_unet(net_cfg)
        self.dropout = float(net_cfg.get("dropout", 0.0))
        self.gamma_min = float(_get(m, "gamma_min", schedules.GAMMA_MIN))
        self.gamma_max = float(_get(m, "gamma_max", schedules.GAMMA_MAX))
        self.timesteps = int(_get(m, "timesteps", 0))
        self.schedule_name = str(_get(m, "schedule", "learned_linear"))
        self.prediction = str(_get(m, "prediction", "eps")) if self.kind == "vdm" else "velocity"
        if self.kind == "vdm" and self.prediction not in ("eps", "x0", "v"):
            raise ValueError(f"model.prediction must be 'eps', 'x0' or 'v' for vdm, got {self.prediction!r}.")
        default_sampler = "ode_heun" if self.kind == "vdm" else "ode_euler"
        self.sampler = str(_get(m, "sampler", default_sampler))
        self.sample_steps = int(_get(m, "sample_steps", 100))
        self.num_samples = int(_get(m, "num_samples", 16))
        self.sample_size = int(_get(m, "sample_size", 0)) or int(config.data.crop_size)
        self.schedule_module = None
        if self.kind == "vdm":
            kw = dict(gamma_min=self.gamma_min, gamma_max=self.gamma_max)
            if self.schedule_name == "learned_linear":
                self.schedule_module = schedules.LearnedLinearSchedule(
                    fix_gamma_max=bool(_get(m, "fix_gamma_max", False)), **kw)
            elif self.schedule_name == "learned_nnet":
                self.schedule_module = schedules.MonotoneNetSchedule(**kw)
            elif self.schedule_name == "linear":
                self._gamma = functools.partial(schedules.linear_gamma, **kw)
            elif self.schedule_name == "cosine":
                self._gamma = functools.partial(schedules.cosine_gamma, **kw)
            else:
                raise ValueError(f"Unknown model.schedule {self.schedule_name!r}; use 'linear', 'cosine', "
                                 "'learned_linear' or 'learned_nnet'.")

    # -- pieces -------------------------------------------------------------------------------------
    def gamma_fn(self, params):
        """t [B] -> gamma [B] (the log-SNR schedule; for flow the fixed linear one used for bits/dim)."""
        if self.schedule_module is not None:
            return lambda t: self.schedule_module.apply(params["schedule"], t)
        if self.kind == "flow":
            return functools.partial(schedules.linear_gamma, gamma_min=self.gamma_min, gamma_max=self.gamma_max)
        return self._gamma

    def _net(self, params, x, cond, y=None, *, train=False, rng=None):
        rngs = {"dropout": rng} if (train and self.dropout > 0 and rng is not None) else None
        return self.net.apply(params["net"], x, cond, y, train=train, rngs=rngs)

    def model_fn(self, params, *, train=False, rng=None):
        """model_fn(z, t[, y]) in the method's own time and parameterisation (eps/x0/v on gamma(t); velocity)."""
        if self.kind == "flow":
            return lambda z, t, y=None: self._net(params, z, t, y, train=train, rng=rng)
        gamma = self.gamma_fn(params)

        def fn(z, t, y=None):
            g = gamma(t)
            cond = (g - self.gamma_min) / (self.gamma_max - self.gamma_min)   # normalised log-SNR, as VDM
            return self._net(params, z, cond, y, train=train, rng=rng)
        return fn

    def _flow_as_eps_fn(self, params):
        """The flow network as an eps-predictor on the linear VP schedule (see module docstring)."""
        gamma = self.gamma_fn(params)

        def fn(z, t, y=None):
            a, s = schedules.alpha_sigma_from_gamma(gamma(t))
            tf = s / (a + s)
            zf = z / (a + s)[:, None, None, None]
            u = self._net(params, zf, tf, y)
            return (1.0 - tf)[:, None, None, None] * u + zf
        return fn

    def alpha_sigma(self, params):
        if self.kind == "flow":
            return schedules.flow_alpha_sigma
        return schedules.vp_alpha_sigma(self.gamma_fn(params))

    # -- Method protocol ----------------------------------------------------------------------------
    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        r1, r2 = jax.random.split(rng)
        t = jnp.zeros((x.shape[0],), jnp.float32)
        params = {"net": self.net.init(r1, x, t), "schedule": {}}
        if self.schedule_module is not None:
            params["schedule"] = self.schedule_module.init(r2, t)
        return params

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        y = batch.get("cond") if hasattr(batch, "get") else None
        r_loss, r_drop, r_eval = jax.random.split(rng, 3)
        if self.kind == "vdm":
            out = losses.vdm_elbo(self.model_fn(params, train=train, rng=r_drop), x, r_loss,
                                  gamma_fn=self.gamma_fn(params), prediction=self.prediction, y=y,
                                  timesteps=self.timesteps)
            loss = jnp.mean(out["bpd"])
            g = self.gamma_fn(params)(jnp.array([0.0, 1.0]))
            metrics = {"bits_per_dim": loss, "bpd_recon": jnp.mean(out["bpd_recon"]),
                       "bpd_prior": jnp.mean(out["bpd_prior"]), "bpd_diffusion": jnp.mean(out["bpd_diffusion"]),
                       "gamma_0": g[0], "gamma_1": g[1]}
            return loss, metrics
        fm = jnp.mean(losses.flow_matching_loss(self.model_fn(params, train=train, rng=r_drop), x, r_loss, y=y))
        metrics = {"fm_loss": fm}
        if not train:
            out = losses.vdm_elbo(self._flow_as_eps_fn(params), x, r_eval, gamma_fn=self.gamma_fn(params),
                                  prediction="eps", y=y)
            metrics.update(bits_per_dim=jnp.mean(out["bpd"]), bpd_diffusion=jnp.mean(out["bpd_diffusion"]))
        return fm, metrics

    # -- sampling -----------------------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=("sampler", "steps", "shape"))
    def _sample_float(self, params, rng, n, *, sampler, steps, shape):
        r0, r1 = jax.random.split(rng)
        x1 = jax.random.normal(r0, (n,) + shape)
        fn = samplers.get_sampler(sampler)
        pred = "velocity" if self.kind == "flow" else self.prediction
        return fn(self.model_fn(params), x1, r1, alpha_sigma=self.alpha_sigma(params), prediction=pred,
                  steps=steps)

    def sample(self, params, rng, n, *, sampler=None, steps=None, shape=None):
        """n samples as uint8 [n, H, W, 3] (shape defaults to (sample_size, sample_size, 3))."""
        shape = tuple(shape or (self.sample_size, self.sample_size, 3))
        x = self._sample_float(params, rng, int(n), sampler=sampler or self.sampler,
                               steps=int(steps or self.sample_steps), shape=shape)
        return np.asarray(jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255)).astype(np.uint8)

    def eval_artifacts(self, params, rng, outdir, step) -> dict[str, Any]:
        imgs = self.sample(params, rng, self.num_samples)
        n = imgs.shape[0]
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        h, w = imgs.shape[1:3]
        grid = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 255, np.uint8)
        for i in range(n):
            r, c = divmod(i, cols)
            grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = imgs[i]
        os.makedirs(outdir, exist_ok=True)
        from gencomp_jax.data import write_png
        write_png(os.path.join(outdir, f"samples_{int(step):07d}.png"), grid)
        f = imgs.astype(np.float64)
        return {"sample_mean": float(f.mean()), "sample_std": float(f.std()),
                "sample_finite": float(np.isfinite(f).all())}


def make_method(config) -> DiffusionMethod:
    return DiffusionMethod(config)
