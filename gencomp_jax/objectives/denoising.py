"""Weighted x0-denoising: the decoder objective of CDC (Yang & Mandt 2023; review Eq. 22) and HFD.

    L = E_{t ~ U(0,1), eps} [ w(t) * mean_dims || x - x0_hat(z_t, [y,] t) ||^2 ],   z_t = alpha_t x + sigma_t eps,
    w(t) = min(SNR(t), max_snr)   (CDC: max_snr = 5, SNR = exp(-gamma(t)), cosine schedule).

The regression is in x0 space whatever the network predicts ("x0" as CDC, or "eps" / "v" converted to x0):
CDC's eps- and v-mode weights min(SNR, 5) / SNR and min(SNR, 5) / (SNR + 1) are this same loss written in
their own spaces. For reference, CDC's 1000-step cosine schedule spans log-SNR gamma in about [-10.1, 12.9]
(its last step, 19.8, is an artefact of clipping beta at 0.999).

Residual variant (DIRAC, Ghouse et al. 2023; HFD): with residual=True the diffusion runs on r = x - y[..., :3]
(y's first three channels are the stage-1 reconstruction), x0_hat = y[..., :3] + r0_hat, and samples are
returned with y[..., :3] added back; the x-space loss is unchanged (x - x0_hat = r - r0_hat).

`X0Denoising` is a Method (usually conditional: cond_channels > 0, y = batch["cond"]); a codec that trains
stage 1 end to end (CDC: beta * rate + (1 - rho) * this + rho * LPIPS(x, x0_hat)) calls `terms`, which also
returns x0_hat for the perceptual term. `logsnr_shift=s` (HFD) trains on the cosine schedule shifted by s nats
towards less noise, endpoints kept (diffusion/schedules.py `cosine_gamma(..., shift=s)`). Not registered: CDC / HFD register the codecs that use it.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp

from gencomp_jax.diffusion import process
from gencomp_jax.diffusion.losses import sample_times
from gencomp_jax.diffusion.schedules import alpha_sigma_from_gamma, cosine_gamma
from gencomp_jax.objectives.base import VPObjective


@flax.struct.dataclass
class DenoisingTerms:
    """Per-example quantities of one draw of (t, eps)."""

    loss: jax.Array     # [B] w(t) * mean_dims ||x - x0_hat||^2
    mse: jax.Array      # [B] mean_dims ||x - x0_hat||^2 (unweighted)
    weight: jax.Array   # [B] w(t)
    t: jax.Array        # [B] diffusion time
    x0_hat: jax.Array   # [B, H, W, C] the network's estimate of x (for a perceptual term)


def min_snr_weight(gamma, max_snr: float):
    """w = min(SNR, max_snr) with SNR = exp(-gamma) (computed without overflow for very negative gamma)."""
    return jnp.exp(-jnp.maximum(gamma, -jnp.log(max_snr)))


def x0_denoising_terms(model_fn, x, rng, *, gamma_fn, prediction: str = "x0", y=None,
                       max_snr: float | None = 5.0, antithetic: bool = True) -> DenoisingTerms:
    """`DenoisingTerms` of model_fn(z, t[, y]) -> `prediction` on the VP path of gamma_fn, at data x [B, ...];
    w(t) = min(SNR, max_snr), or 1 with max_snr=None (the x0 error unweighted)."""
    rng_t, rng_e = jax.random.split(rng)
    t = sample_times(rng_t, x.shape[0], antithetic=antithetic)
    gamma = gamma_fn(t)
    a, s = alpha_sigma_from_gamma(process.broadcast_to(gamma, x))
    z = a * x + s * jax.random.normal(rng_e, x.shape)
    pred = model_fn(z, t) if y is None else model_fn(z, t, y)
    x0_hat, _ = process.to_x0_eps(pred, z, a, s, prediction=prediction)
    mse = jnp.mean(jnp.square(x - x0_hat).reshape(x.shape[0], -1), axis=-1)
    w = jnp.ones_like(mse) if max_snr is None else min_snr_weight(gamma, max_snr)
    return DenoisingTerms(loss=w * mse, mse=mse, weight=w, t=t, x0_hat=x0_hat)


class X0Denoising(VPObjective):
    """Min-SNR-weighted x0 regression (see module docstring); defaults are CDC's (cosine, x0, max_snr 5)."""

    def __init__(self, *, max_snr: float = 5.0, schedule: str = "cosine", prediction: str = "x0",
                 residual: bool = False, logsnr_shift: float = 0.0, **kwargs):
        super().__init__(schedule=schedule, prediction=prediction, **kwargs)
        if not max_snr > 0:
            raise ValueError(f"max_snr must be > 0, got {max_snr!r}.")
        if logsnr_shift and schedule != "cosine":
            raise ValueError(f"logsnr_shift shifts the 'cosine' log-SNR schedule (HFD); got schedule {schedule!r} "
                             f"with logsnr_shift={logsnr_shift!r}.")
        self.logsnr_shift = float(logsnr_shift)
        if residual and self.cond_channels < 3:
            raise ValueError("residual=True predicts x - y[..., :3]: it needs a conditioning input whose first "
                             f"3 channels are the stage-1 reconstruction (cond_channels >= 3, got "
                             f"{self.cond_channels}).")
        self.max_snr, self.residual = float(max_snr), bool(residual)

    def gamma_fn(self, params):
        """The schedule's gamma(t), shifted by `logsnr_shift` nats towards less noise (schedules.cosine_gamma)."""
        if not self.logsnr_shift:
            return super().gamma_fn(params)
        return functools.partial(cosine_gamma, gamma_min=self.schedule.gamma_min, gamma_max=self.schedule.gamma_max,
                                 shift=self.logsnr_shift)

    def _base(self, y):
        """What the diffusion's data is relative to: y[..., :3] (residual) or 0."""
        return y[..., :3] if self.residual else 0.0

    def terms(self, params, batch, rng, *, train=False) -> DenoisingTerms:
        """`DenoisingTerms` of batch["image"] (float32 [B, H, W, 3] in [-1, 1]) given batch["cond"]."""
        r_loss, r_drop = jax.random.split(rng)
        y = self.cond(batch)
        base = self._base(y)
        out = x0_denoising_terms(self.model_fn(params, train=train, rng=r_drop),
                                 jnp.asarray(batch["image"], jnp.float32) - base, r_loss,
                                 gamma_fn=self.gamma_fn(params), prediction=self.prediction, y=y,
                                 max_snr=self.max_snr)
        return out.replace(x0_hat=out.x0_hat + base)

    def sample_float(self, params, rng, n, *, y=None, **kwargs):
        out = super().sample_float(params, rng, n, y=y, **kwargs)
        return out + self._base(y) if self.residual else out

    def loss(self, params, batch, rng, train):
        terms = self.terms(params, batch, rng, train=train)
        loss = jnp.mean(terms.loss)
        return loss, {"denoise_loss": loss, "x0_mse": jnp.mean(terms.mse)}
