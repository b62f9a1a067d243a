"""Analysis / synthesis transforms of Ballé et al. 2018 (scale hyperprior), channels-last.

g_a: 4 x (5x5 stride-2 conv), GDN between         [B, H, W, 3]        -> [B, H/16, W/16, M]
g_s: 4 x (stride-2 up-sampling), IGDN between      [B, h, w, M]        -> [B, 16 h, 16 w, 3]
h_a: 3x3 conv, 2 x (5x5 stride-2 conv), ReLU       [B, h, w, M] (|y|)  -> [B, h/4, w/4, N]
h_s: 2 x (stride-2 up-sampling), 3x3 conv, ReLU    [B, h', w', N]      -> [B, 4 h', 4 w', M]

Mean-scale hyperprior (Minnen et al. 2018; CompressAI `mbt2018-mean`), LeakyReLU, no |y|
(HyperAnalysis(mean_scale=True), MeanScaleHyperSynthesis):
h_a: 3x3 conv, 2 x (5x5 stride-2 conv)             [B, h, w, M]        -> [B, h/4, w/4, N]
h_s: up-sample to M, up-sample to 3M/2, 3x3 conv   [B, h', w', N]      -> [B, 4 h', 4 w', 2M]
     (channels [..., :M] are the scales, [..., M:] the means, CompressAI's order)

`stride` (a class attribute of each transform) is its total down-sampling factor.

Up-sampling is `SubpixelConv`: the same parameters and function as CompressAI's 5x5 stride-2
transposed convolutions, computed as 4 polyphase stride-1 convolutions + depth-to-space, which
trains ~30x faster on XLA:CPU than lax.conv_transpose (DESIGN.md "Performance facts").

`geometry` (every transform): "same" (TensorFlow's padding, what this library trains with) or
"torch": CompressAI's padding (Conv2d(5, 2, padding=2), ConvTranspose2d(5, 2, padding=2,
output_padding=1)), so that weights converted from CompressAI (eval/pretrained.py) compute CompressAI's
function (nn/layers.py StridedConv / SubpixelConv).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from gencomp_jax.nn.layers import GDN, IGDN, Conv, StridedConv, SubpixelConv

Array = Any


def _down(features, name, geometry):  # 5x5 stride-2 conv (StridedConv: same params as nn.Conv)
    return StridedConv(features, 5, 2, geometry=geometry, name=name)


def _up(features, name, geometry):  # 5x5 stride-2 up-sampling (SubpixelConv: CompressAI's ConvTranspose2d)
    return SubpixelConv(features, geometry=geometry, name=name)


def _four_layers(x, layer, norm, names, hidden, out, geometry):
    """g_a / g_s: 3 x (layer to `hidden` channels, GDN or IGDN), then a layer to `out` channels.
    names: (layer prefix, norm prefix), e.g. ("conv", "gdn") -> conv0, gdn0, ..., conv3."""
    for i in range(3):
        x = layer(hidden, f"{names[0]}{i}", geometry)(x)
        x = norm(name=f"{names[1]}{i}")(x)
    return layer(out, f"{names[0]}3", geometry)(x)


class _Transform(nn.Module):
    """The fields every transform has: N hidden channels and the padding `geometry` (module docstring).
    A subclass's own fields come after these, so pass them by keyword."""

    N: int = 128
    geometry: str = "same"


class AnalysisTransform(_Transform):
    """g_a. N hidden channels, M latent channels."""

    M: int = 192
    stride: ClassVar[int] = 16

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return _four_layers(x, _down, GDN, ("conv", "gdn"), self.N, self.M, self.geometry)


class SynthesisTransform(_Transform):
    """g_s. N hidden channels, `out_channels` output channels (3 for RGB)."""

    out_channels: int = 3

    @nn.compact
    def __call__(self, y: Array) -> Array:
        return _four_layers(y, _up, IGDN, ("up", "igdn"), self.N, self.out_channels, self.geometry)


class HyperAnalysis(_Transform):
    """h_a, applied to |y| with ReLUs; `mean_scale=True`: applied to y with LeakyReLUs (Minnen et al.)."""

    mean_scale: bool = False
    stride: ClassVar[int] = 4

    @nn.compact
    def __call__(self, y: Array) -> Array:
        act = nn.leaky_relu if self.mean_scale else nn.relu
        x = act(Conv(self.N, 3, name="conv0")(y if self.mean_scale else jnp.abs(y)))
        x = act(_down(self.N, "conv1", self.geometry)(x))
        return _down(self.N, "conv2", self.geometry)(x)


class HyperSynthesis(_Transform):
    """h_s: z_hat -> (nonnegative) scales of y."""

    M: int = 192

    @nn.compact
    def __call__(self, z: Array) -> Array:
        x = nn.relu(_up(self.N, "up0", self.geometry)(z))
        x = nn.relu(_up(self.N, "up1", self.geometry)(x))
        return nn.relu(Conv(self.M, 3, name="conv2")(x))


class MeanScaleHyperSynthesis(_Transform):
    """h_s of the mean-scale hyperprior: z_hat -> (means, raw scales), each [..., M]."""

    M: int = 192

    @nn.compact
    def __call__(self, z: Array) -> tuple[Array, Array]:
        x = nn.leaky_relu(_up(self.M, "up0", self.geometry)(z))
        x = nn.leaky_relu(_up(self.M * 3 // 2, "up1", self.geometry)(x))
        scales, means = jnp.split(Conv(2 * self.M, 3, name="conv2")(x), 2, axis=-1)
        return means, scales
