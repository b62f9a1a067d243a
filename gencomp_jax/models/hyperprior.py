"""Stage 1 of nonlinear transform coding as linen modules: latent entropy models and the NTC model.

Latent modules: the entropy model of a latent y, reusable behind any analysis transform g_a and any
number of channels M (NTC here, CDC's own g_a and diffusion decoder elsewhere). One interface:

    HyperpriorLatent(N, M)   Ballé et al. 2018:   z = h_a(|y|);  y ~ N(0, s^2),  s = h_s(z_hat)
    MeanScaleLatent(N, M)    Minnen et al. 2018 (CompressAI `mbt2018-mean`):
                             z = h_a(y);  y ~ N(m, s^2),  (m, s) = h_s(z_hat)

    __call__(y [B, h, w, M], *, train, rng=None) -> {"y_hat": [B, h, w, M], "y_bits": [B], "z_bits": [B]}
    hyper_analysis(y) -> z [B, h/stride, w/stride, N] (continuous)
    z_medians() -> [N]           quantization offsets of z (medians of the factorized prior)
    entropy_parameters(z_hat) -> (mean, scale), each [B, h, w, M], scale >= gc.SCALE_MIN
    stride                       down-sampling from y to z (4): h and w must be multiples of it

Training (`train=True`): additive uniform noise U(-1/2, 1/2) on y and z (review Sec. II-B).
Test: z_hat = round(z - median) + median, y_hat = round(y - mean) + mean; the likelihoods are then
the probabilities the coder uses (up to table quantization). Bits are per example, float32.
Parameters: `h_a`, `h_s`, `prior` (FactorizedPrior(N)); codecs/latent.py's LatentCodec codes y with them.

`NTCModel(N, M, variant, compat)`: g_a -> latent module -> g_s. compat="compressai" is CompressAI's
function for converted weights (eval/pretrained.py): its convolution geometry, [0, 1] images inside
the transforms, its 4-layer factorized prior with the medians it learned (stored, not searched).
The latent module shares the model's scope, so the parameter tree is flat ({g_a, g_s, h_a, h_s,
prior}: the layout of the files and checkpoints written before latent modules existed);
`latent_variables(params)` cuts it out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy import integer
from gencomp_jax.entropy.factorized import FactorizedPrior, quantize_around
from gencomp_jax.models.transforms import (AnalysisTransform, HyperAnalysis, HyperSynthesis,
                                           MeanScaleHyperSynthesis, SynthesisTransform)
from gencomp_jax.nn.layers import torch_transpose_pad

Array = Any


def _bits(p: Array) -> Array:
    """Likelihoods [B, ...] -> bits per example [B]."""
    return -jnp.sum(jnp.log2(p), axis=tuple(range(1, p.ndim)))


class _GaussianHyperLatent(nn.Module):
    """Shared parts of the latent modules; subclasses choose h_a's variant, h_s and `_raw_parameters`."""

    N: int = 128
    M: int = 192
    compat: str = "native"
    stride: ClassVar[int] = HyperAnalysis.stride
    mean_scale: ClassVar[bool] = False
    hyper_synthesis: ClassVar[type] = HyperSynthesis

    def setup(self):
        geometry = _geometry(self.compat)
        self.h_a = HyperAnalysis(self.N, mean_scale=self.mean_scale, geometry=geometry)
        self.h_s = self.hyper_synthesis(self.N, M=self.M, geometry=geometry)
        self.prior = factorized_prior(self.N, self.compat)

    def _raw_parameters(self, z_hat: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def hyper_analysis(self, y: Array) -> Array:
        if y.shape[-1] != self.M:
            raise ValueError(f"{type(self).__name__}(M={self.M}) got a latent with {y.shape[-1]} channels "
                             f"(shape {y.shape}); build it with M equal to g_a's output channels.")
        if y.shape[1] % self.stride or y.shape[2] % self.stride:
            raise ValueError(f"latent y of shape {y.shape}: height and width must be multiples of "
                             f"{self.stride} (pad the image to a multiple of g_a's stride x {self.stride}).")
        return self.h_a(y)

    def z_medians(self) -> Array:
        return self.prior.medians()

    def entropy_parameters(self, z_hat: Array) -> tuple[Array, Array]:
        """z_hat -> (mean, scale) of y, scale lower-bounded (gradient pass-through, gc.lower_bound_scale)."""
        mean, scale = self._raw_parameters(z_hat)
        return mean, gc.lower_bound_scale(scale)

    def __call__(self, y: Array, *, train: bool, rng: Array | None = None) -> dict:
        z = self.hyper_analysis(y)
        if train:
            if rng is None:
                raise ValueError(f"{type(self).__name__}(train=True) needs an rng for the uniform noise.")
            ky, kz = jax.random.split(rng)
            z_hat = z + jax.random.uniform(kz, z.shape, z.dtype, -0.5, 0.5)
        else:
            _, z_hat = quantize_around(z, self.z_medians())
        mean, scale = self.entropy_parameters(z_hat)
        if train:
            y_hat = y + jax.random.uniform(ky, y.shape, y.dtype, -0.5, 0.5)
        else:
            y_hat = jnp.round(y - mean) + mean
        return {"y_hat": y_hat, "y_bits": _bits(gc.likelihood(y_hat, scale, mean)),
                "z_bits": _bits(self.prior(z_hat))}


class HyperpriorLatent(_GaussianHyperLatent):
    """Ballé et al. 2018 scale hyperprior on y (mean 0). See the module docstring for the interface."""

    def _raw_parameters(self, z_hat):
        scale = self.h_s(z_hat)
        return jnp.zeros_like(scale), scale


class MeanScaleLatent(_GaussianHyperLatent):
    """Minnen et al. 2018 mean-scale hyperprior on y. See the module docstring for the interface."""

    mean_scale: ClassVar[bool] = True
    hyper_synthesis: ClassVar[type] = MeanScaleHyperSynthesis

    def _raw_parameters(self, z_hat):
        return self.h_s(z_hat)


LATENTS = {"hyperprior": HyperpriorLatent, "mean_scale": MeanScaleLatent}
TRANSFORM_KEYS = ("g_a", "g_s")


class NTCModel(nn.Module):
    """x float32 [B, H, W, 3] in [-1, 1], H and W multiples of `stride` (64).

    __call__(x, *, train, rng=None) -> {"x_hat" [B,H,W,3] (unclipped), "y_hat", "y_bits" [B], "z_bits" [B]}.
    variant: a key of LATENTS ("hyperprior" or "mean_scale").
    """

    N: int = 128
    M: int = 192
    variant: str = "hyperprior"
    compat: str = "native"

    def setup(self):
        geometry = _geometry(self.compat)
        self.g_a = AnalysisTransform(self.N, M=self.M, geometry=geometry)
        self.g_s = SynthesisTransform(self.N, geometry=geometry)
        self.latent = _latent_class(self.variant)(self.N, self.M, compat=self.compat)
        nn.share_scope(self, self.latent)  # flat parameter tree (see module docstring)

    @property
    def stride(self) -> int:
        """Total down-sampling from x to z: images are padded to a multiple of it for coding."""
        return AnalysisTransform.stride * _latent_class(self.variant).stride

    def __call__(self, x: Array, *, train: bool, rng: Array | None = None) -> dict:
        out = self.latent(self.analysis(x), train=train, rng=rng)
        return {**out, "x_hat": self.synthesis(out["y_hat"])}

    def analysis(self, x: Array) -> Array:
        if self.compat == "compressai":  # CompressAI's transforms see [0, 1] images
            x = 0.5 * (x + 1.0)
        return self.g_a(x)

    def synthesis(self, y_hat: Array) -> Array:
        x_hat = self.g_s(y_hat)
        return 2.0 * x_hat - 1.0 if self.compat == "compressai" else x_hat


COMPATS = ("native", "compressai")


def _geometry(compat: str) -> str:
    """Convolution geometry of the transforms for `compat` (a key of COMPATS)."""
    if compat not in COMPATS:
        raise ValueError(f"compat={compat!r}; use one of {COMPATS}.")
    return "torch" if compat == "compressai" else "same"


def factorized_prior(channels: int, compat: str = "native") -> FactorizedPrior:
    """The hyper-latent prior of a latent module: CompressAI's EntropyBottleneck for compat="compressai"
    (4 hidden layers, its learned medians stored), Ballé's 3-layer density with searched medians otherwise."""
    if _geometry(compat) == "torch":
        return FactorizedPrior(channels, filters=(3, 3, 3, 3), stored_medians=True)
    return FactorizedPrior(channels)


def _latent_class(variant: str) -> type:
    if variant not in LATENTS:
        raise ValueError(f"unknown latent variant {variant!r}; use one of {sorted(LATENTS)}.")
    return LATENTS[variant]


def latent_module(variant: str, N: int, M: int, compat: str = "native") -> _GaussianHyperLatent:
    """A fresh, unbound latent module of `variant` (a key of LATENTS), e.g. for codecs.latent.LatentCodec."""
    return _latent_class(variant)(N=N, M=M, compat=compat, parent=None)


def latent_variables(params) -> dict:
    """The latent module's variables inside an NTCModel parameter tree (everything but g_a, g_s)."""
    return {col: {k: v for k, v in tree.items() if k not in TRANSFORM_KEYS} for col, tree in params.items()}


def hyper_synthesis_layers(variables, compat: str = "native") -> list:
    """The scale hyperprior's h_s (HyperSynthesis: up0, ReLU, up1, ReLU, conv2, ReLU) as the float layers of
    entropy.integer (HWIO kernels, biases, up-sampling stride and pad), from a HyperpriorLatent's variables."""
    h_s = variables["params"]["h_s"]
    pad = torch_transpose_pad(5) if _geometry(compat) == "torch" else None
    return [integer.Layer(h_s["up0"]["kernel"], h_s["up0"]["bias"], stride=2, pad=pad),
            integer.Layer(h_s["up1"]["kernel"], h_s["up1"]["bias"], stride=2, pad=pad),
            integer.Layer(h_s["conv2"]["kernel"], h_s["conv2"]["bias"])]
