"""Ballé et al. 2018 scale hyperprior as one linen model.

    y = g_a(x);  z = h_a(y);  z_hat ~ FactorizedPrior;  scales = h_s(z_hat);  y_hat ~ N(0, scales^2)

Training (`train=True`): additive uniform noise U(-1/2, 1/2) on y and z (the relaxation of review
Sec. II-B). Evaluation (`train=False`): z_hat = round(z - median) + median and y_hat = round(y); the
likelihoods are then exactly the probabilities the coder uses (up to table quantization), so the
estimated bits match the file size. Rates returned in bits.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy.factorized import FactorizedPrior, quantize_around
from gencomp_jax.models.transforms import (AnalysisTransform, HyperAnalysis, HyperSynthesis,
                                           SynthesisTransform)

Array = Any
STRIDE = 64  # total down-sampling of z: images are padded to a multiple of this for coding


class ScaleHyperprior(nn.Module):
    """x float32 [B, H, W, 3] in [-1, 1], H and W multiples of 64.

    __call__(x, *, train, rng=None) -> dict:
      x_hat [B,H,W,3] (float, unclipped), y_hat, z_hat, y_bits [B], z_bits [B] (bits per image),
      y_likelihoods, z_likelihoods.
    """

    N: int = 128
    M: int = 192

    def setup(self):
        self.g_a = AnalysisTransform(self.N, self.M)
        self.g_s = SynthesisTransform(self.N)
        self.h_a = HyperAnalysis(self.N)
        self.h_s = HyperSynthesis(self.N, self.M)
        self.prior = FactorizedPrior(self.N)

    def __call__(self, x: Array, *, train: bool, rng: Array | None = None) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        if train:
            if rng is None:
                raise ValueError("ScaleHyperprior(train=True) needs an rng for the uniform noise.")
            ky, kz = jax.random.split(rng)
            z_hat = z + jax.random.uniform(kz, z.shape, z.dtype, -0.5, 0.5)
            y_hat = y + jax.random.uniform(ky, y.shape, y.dtype, -0.5, 0.5)
        else:
            _, z_hat = quantize_around(z, self.prior.medians())
            y_hat = jnp.round(y)
        z_lik = self.prior(z_hat)
        scales = gc.lower_bound_scale(self.h_s(z_hat))
        y_lik = gc.likelihood(y_hat, scales)
        x_hat = self.g_s(y_hat)
        bits = lambda p: -jnp.sum(jnp.log2(p), axis=(1, 2, 3))  # noqa: E731
        return {"x_hat": x_hat, "y_hat": y_hat, "z_hat": z_hat, "y_bits": bits(y_lik),
                "z_bits": bits(z_lik), "y_likelihoods": y_lik, "z_likelihoods": z_lik}

    # Pieces used by the codec (each a pure function of params through `model.apply(..., method=)`).
    def analysis(self, x: Array) -> tuple[Array, Array]:
        """x -> (y, z) (continuous)."""
        y = self.g_a(x)
        return y, self.h_a(y)

    def z_medians(self) -> Array:
        return self.prior.medians()

    def hyper_scales(self, z_hat: Array) -> Array:
        """z_hat -> lower-bounded scales of y."""
        return jnp.maximum(self.h_s(z_hat), gc.SCALE_MIN)

    def synthesis(self, y_hat: Array) -> Array:
        return self.g_s(y_hat)
