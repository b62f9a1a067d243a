"""Conditional diffusion decoders of two-stage codecs (CDC, HFD): linen networks only.

`ContextNetwork` (CDC, Yang & Mandt 2023): learned up-sampling of the decoded latent y_hat
[B, H/16, W/16, M] into feature maps at 1/8, 1/4, 1/2 and full resolution (one sub-pixel x2 up-sampling
and one residual block per scale). Returned finest first: [full, 1/2, 1/4, 1/8].

`ConditionalDenoiser`: ContextNetwork + multi-resolution UNet (models/unet.py). The context maps are
concatenated into the first UNet levels (map i at level i, as many as the UNet has levels), so the
decoder sees the latent at every scale it works at. Methods (each through `apply(..., method=)`):
    context(y_hat) -> [maps]               once per image (outside the sampler's loop)
    denoise(z, t, maps, train=False)       the UNet's output (the x0-prediction for CDC)
    __call__(z, t, y_hat, train=False)     = denoise(z, t, context(y_hat))
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn

from gencomp_jax.models.hyperprior import MeanScaleLatent
from gencomp_jax.models.transforms import AnalysisTransform
from gencomp_jax.models.unet import ResBlock, make_unet
from gencomp_jax.nn.layers import SubpixelConv

Array = Any


class ContextNetwork(nn.Module):
    """y_hat [B, h, w, M] -> [f_0 [B, 16h, 16w, C0], f_1 [B, 8h, 8w, C1], f_2 [.., 4h, ..], f_3 [.., 2h, ..]].

    features: channels (C0, C1, C2, C3) at full, 1/2, 1/4, 1/8 resolution (default CDC-like, widest at the
    coarsest scale).
    """

    features: Sequence[int] = (32, 32, 64, 64)
    norm_groups: int = 8

    @nn.compact
    def __call__(self, y_hat: Array) -> list[Array]:
        if y_hat.ndim != 4:
            raise ValueError(f"ContextNetwork expects a latent [B, h, w, M], got {y_hat.shape}.")
        h = y_hat
        out = []
        for i, f in enumerate(reversed(tuple(self.features))):     # 1/8, 1/4, 1/2, full
            h = SubpixelConv(int(f), kernel_size=3, stride=2, name=f"up{i}")(h)
            h = ResBlock(int(f), self.norm_groups, name=f"res{i}")(h, None)
            out.append(h)
        return out[::-1]


class ConditionalDenoiser(nn.Module):
    """Context network + multi-resolution UNet (see module docstring).

    context_features: ContextNetwork.features; net: config dict for models.unet.make_unet (arch "unet").
    """

    context_features: Sequence[int] = (32, 32, 64, 64)
    net: Any = None
    norm_groups: int = 8

    def setup(self):
        cfg = dict(self.net or {"arch": "unet"})
        if cfg.get("arch", "unet") != "unet":
            raise ValueError("ConditionalDenoiser needs the multi-resolution UNet (net.arch='unet'): its context "
                             "maps are concatenated per level.")
        self.unet = make_unet(cfg)
        self.ctx = ContextNetwork(tuple(self.context_features), self.norm_groups)

    def context(self, y_hat: Array) -> list[Array]:
        return self.ctx(y_hat)[:len(self.unet.ch_mult)]

    def denoise(self, z: Array, t: Array, maps: Sequence[Array], *, train: bool = False) -> Array:
        return self.unet(z, t, list(maps), train=train)

    def __call__(self, z: Array, t: Array, y_hat: Array, *, train: bool = False) -> Array:
        return self.denoise(z, t, self.context(y_hat), train=train)


class CDCModel(nn.Module):
    """CDC as one linen model: analysis transform g_a (x -> y at 1/16), a mean-scale hyperprior latent module
    (models/hyperprior.py MeanScaleLatent: rounding around the mean at test time, uniform noise in training,
    scales floored at 0.11) and the ConditionalDenoiser on the decoded latent.

    Methods (through `apply(..., method=)`):
      analysis(x) -> y                               x float32 [B, H, W, 3], H, W multiples of 64
      latent_forward(y, train, rng) -> {"y_hat", "y_bits" [B], "z_bits" [B]}
      context(y_hat) -> [maps];  denoise(z, t, maps, train=False) -> x0-prediction [B, H, W, 3]
    Parameters: {"g_a", "latent" (h_a, h_s, prior: what codecs/latent.py codes with), "decoder"}.
    """

    N: int = 128
    M: int = 192
    context_features: Sequence[int] = (32, 32, 64, 64)
    net: Any = None
    norm_groups: int = 8

    def setup(self):
        self.g_a = AnalysisTransform(self.N, M=self.M)
        self.latent = MeanScaleLatent(self.N, self.M)
        self.decoder = ConditionalDenoiser(tuple(self.context_features), self.net, self.norm_groups)

    def analysis(self, x: Array) -> Array:
        return self.g_a(x)

    def latent_forward(self, y: Array, *, train: bool, rng: Array | None = None) -> dict:
        return self.latent(y, train=train, rng=rng)

    def context(self, y_hat: Array) -> list[Array]:
        return self.decoder.context(y_hat)

    def denoise(self, z: Array, t: Array, maps: Sequence[Array], *, train: bool = False) -> Array:
        return self.decoder.denoise(z, t, maps, train=train)

    def __call__(self, x: Array, t: Array, *, train: bool = False, rng: Array | None = None) -> Array:
        """Initialises every part: the x0-prediction of x itself at time t (x stands in for z_t)."""
        out = self.latent_forward(self.analysis(x), train=train, rng=rng)
        return self.denoise(x, t, self.context(out["y_hat"]), train=train)
