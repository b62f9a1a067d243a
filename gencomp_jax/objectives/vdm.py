"""The variational diffusion model (Kingma et al. 2021): trained on its negative ELBO in bits/dim.

Method "vdm" (configs/vdm.py). loss = E[-ELBO] / (D ln 2) (continuous time, or T steps with
model.timesteps = T), a true upper bound on -log2 p(x) / D; metrics bits_per_dim, bpd_recon, bpd_prior,
bpd_diffusion, gamma_0, gamma_1. The per-example terms are typed (`ELBOTerms`, as google-research/vdm's
output dataclass) so that a codec that codes with the same model (DiffC, UQDM) reads the same numbers.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp

from gencomp_jax.codecs.base import register
from gencomp_jax.diffusion import losses
from gencomp_jax.objectives.base import VPObjective


@flax.struct.dataclass
class ELBOTerms:
    """Per-example terms of the negative ELBO, each [B] in bits per dimension."""

    recon: jax.Array       # -log2 p(x | z_0) / D (the 256-level data term)
    prior: jax.Array       # KL(q(z_1 | x) || N(0, I)) / (D ln 2)
    diffusion: jax.Array   # the diffusion (denoising) term / (D ln 2)

    @property
    def bits_per_dim(self) -> jax.Array:
        return self.recon + self.prior + self.diffusion

    def metrics(self) -> dict:
        """Batch means: bits_per_dim, bpd_recon, bpd_prior, bpd_diffusion."""
        return {"bits_per_dim": jnp.mean(self.bits_per_dim), "bpd_recon": jnp.mean(self.recon),
                "bpd_prior": jnp.mean(self.prior), "bpd_diffusion": jnp.mean(self.diffusion)}


def elbo_terms(model_fn, x, rng, *, gamma_fn, prediction: str, y=None, timesteps: int = 0) -> ELBOTerms:
    """`ELBOTerms` of model_fn(z, t[, y]) (predicting `prediction` on the VP path of gamma_fn) at data x."""
    out = losses.vdm_elbo(model_fn, x, rng, gamma_fn=gamma_fn, prediction=prediction, y=y, timesteps=timesteps)
    return ELBOTerms(recon=out["bpd_recon"], prior=out["bpd_prior"], diffusion=out["bpd_diffusion"])


class VDM(VPObjective):
    """VDM negative ELBO (see module docstring). timesteps: 0 = continuous time, T = T-step bound."""

    def __init__(self, *, timesteps: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.timesteps = int(timesteps)

    @classmethod
    def from_config(cls, config) -> "VDM":
        return cls(timesteps=config.model.timesteps, **VPObjective.config_kwargs(config))

    def elbo(self, params, batch, rng, *, train=False) -> ELBOTerms:
        """Per-example `ELBOTerms` of batch["image"] (float32 [B, H, W, 3] in [-1, 1]; batch["cond"] if conditional)."""
        r_loss, r_drop, _ = jax.random.split(rng, 3)
        return elbo_terms(self.model_fn(params, train=train, rng=r_drop), jnp.asarray(batch["image"], jnp.float32),
                          r_loss, gamma_fn=self.gamma_fn(params), prediction=self.prediction, y=self.cond(batch),
                          timesteps=self.timesteps)

    def loss(self, params, batch, rng, train):
        terms = self.elbo(params, batch, rng, train=train)
        g = self.gamma_fn(params)(jnp.array([0.0, 1.0]))
        metrics = {**terms.metrics(), "gamma_0": g[0], "gamma_1": g[1]}
        return metrics["bits_per_dim"], metrics


register("vdm", method=VDM.from_config)
