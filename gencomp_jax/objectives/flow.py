"""Flow matching (review Eq. 8) on the path alpha = 1 - t, sigma = t, with a velocity network.

Method "flow" (configs/flow.py). loss = flow-matching MSE (metric fm_loss). With train=False the metrics also
hold the bits/dim of the same network viewed as a diffusion model: a Gaussian path is a VP path rescaled (at
log-SNR gamma, z_flow = z_vp / (alpha + sigma) at flow time t = sigma / (alpha + sigma)), so the velocity
network gives an eps-predictor on the fixed linear log-SNR schedule [gamma_min, gamma_max], whose VDM bound
(objectives/vdm.py `ELBOTerms`) is a true bound on -log2 p(x) / D.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gencomp_jax.codecs.base import register
from gencomp_jax.diffusion import losses, schedules
from gencomp_jax.objectives.base import DiffusionObjective
from gencomp_jax.objectives.vdm import ELBOTerms, elbo_terms


class FlowMatching(DiffusionObjective):
    """Flow matching; gamma_min / gamma_max: the linear log-SNR schedule of its bits/dim evaluation."""

    prediction = "velocity"

    def __init__(self, *, gamma_min: float, gamma_max: float, **kwargs):
        super().__init__(**kwargs)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)

    @classmethod
    def from_config(cls, config) -> "FlowMatching":
        m = config.model
        return cls(gamma_min=m.gamma_min, gamma_max=m.gamma_max, **DiffusionObjective.config_kwargs(config))

    def alpha_sigma(self, params):
        return schedules.flow_alpha_sigma

    def model_fn(self, params, *, train=False, rng=None):
        """model_fn(z, t[, y]) -> velocity at flow time t."""
        return lambda z, t, y=None: self.net_apply(params, z, t, y, train=train, rng=rng)

    def gamma_fn(self, params):
        """The fixed linear log-SNR schedule on which `elbo` views the network as a diffusion model."""
        return functools.partial(schedules.linear_gamma, gamma_min=self.gamma_min, gamma_max=self.gamma_max)

    def as_eps_fn(self, params):
        """The velocity network as an eps-predictor on the VP path of `gamma_fn` (see module docstring)."""
        gamma = self.gamma_fn(params)

        def fn(z, t, y=None):
            a, s = schedules.alpha_sigma_from_gamma(gamma(t))
            tf = s / (a + s)
            zf = z / (a + s)[:, None, None, None]
            u = self.net_apply(params, zf, tf, y)
            return (1.0 - tf)[:, None, None, None] * u + zf
        return fn

    def elbo(self, params, batch, rng) -> ELBOTerms:
        """Per-example `ELBOTerms` (bits/dim) of the network as a diffusion model."""
        return elbo_terms(self.as_eps_fn(params), jnp.asarray(batch["image"], jnp.float32), rng,
                          gamma_fn=self.gamma_fn(params), prediction="eps", y=self.cond(batch))

    def loss(self, params, batch, rng, train):
        r_loss, r_drop, r_eval = jax.random.split(rng, 3)
        x, y = jnp.asarray(batch["image"], jnp.float32), self.cond(batch)
        fm = jnp.mean(losses.flow_matching_loss(self.model_fn(params, train=train, rng=r_drop), x, r_loss, y=y))
        metrics = {"fm_loss": fm}
        if not train:
            metrics.update(self.elbo(params, batch, r_eval).metrics())
        return fm, metrics


register("flow", method=FlowMatching.from_config)
