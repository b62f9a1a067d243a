"""Nonlinear transform coding: analysis/synthesis transforms + a latent codec, as a Method and a Codec.

Two registered variants, one Method/Codec pair (models/hyperprior.py NTCModel, codecs/latent.py):
    "hyperprior"  Ballé et al. 2018 scale hyperprior          (container codec id 1)
    "mean_scale"  Minnen et al. 2018 mean-scale hyperprior    (codec id 6; CompressAI mbt2018-mean)

    make_method(config) -> NTCMethod   loss = bpp + lambda * 255^2 * MSE (CompressAI's convention,
                                       MSE on [0, 1] images); metrics in bits. config.method picks
                                       the variant, config.model.{N, M, lmbda} the size and trade-off.
    make_codec(config, params) -> NTCCodec

File layout (codecs/bitstream.py container): the latent codec's segments [z, y], each with its check
(format version 2: the decoder verifies its z symbols and scale indexes; version-1 files without
checks still decode). The image is edge-padded to a multiple of the model's stride (64) for coding
and cropped back. Header meta: b"" = float entropy parameters (every file before the integer path),
b"\x01" = the integer path of codecs/latent.py with the jitted float32 z tables (the first integer files),
INTEGER_META = b"\x02" = the integer path with z tables and medians computed on the host in float64
(codecs/latent.py: from the bytes to the scale indexes nothing depends on the platform).
New "hyperprior" files use INTEGER_META unless config.model.integer_entropy is False
(configs/hyperprior.py; a config without the key, e.g. an older workdir's, counts as True);
"mean_scale" files use the float path (its config inherits the key and ignores it).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import register
from gencomp_jax.codecs.latent import NUM_SEGMENTS, LatentCodec
from gencomp_jax.data.images import check_image, pad_to_multiple, padded_size, to_model, to_uint8
from gencomp_jax.models.hyperprior import NTCModel, latent_module, latent_variables


def _model(config) -> NTCModel:
    return NTCModel(N=int(config.model.N), M=int(config.model.M), variant=str(config.method),
                    compat=str(config.model.get("compat", "native")))


def psnr_from_mse01(mse):
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


@dataclasses.dataclass(frozen=True)
class NTCMethod:
    """The Method protocol (codecs/base.py) for NTC.

    loss(params, batch, rng, train) -> (bpp + lmbda * 255^2 * mse, {loss, bpp, bpp_y, bpp_z, mse,
    psnr}); mse is measured on [0, 1] images (x_float / 2 + 1/2), psnr in dB.
    """

    model: NTCModel
    lmbda: float

    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        k1, k2 = jax.random.split(rng)
        return self.model.init({"params": k1}, x, train=True, rng=k2)

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        out = self.model.apply(params, x, train=train, rng=rng if train else None)
        b, h, w, _ = x.shape
        num_pixels = b * h * w
        bpp_y = jnp.sum(out["y_bits"]) / num_pixels
        bpp_z = jnp.sum(out["z_bits"]) / num_pixels
        bpp = bpp_y + bpp_z
        x_hat = out["x_hat"] if train else jnp.clip(out["x_hat"], -1.0, 1.0)
        mse = jnp.mean(jnp.square(x_hat - x)) / 4.0  # [-1, 1] -> [0, 1] scale
        loss = bpp + self.lmbda * 255.0 ** 2 * mse
        return loss, {"loss": loss, "bpp": bpp, "bpp_y": bpp_y, "bpp_z": bpp_z, "mse": mse,
                      "psnr": psnr_from_mse01(mse)}


def make_method(config) -> NTCMethod:
    return NTCMethod(model=_model(config), lmbda=float(config.model.lmbda))


@functools.lru_cache(maxsize=None)
def _transforms(model: NTCModel) -> dict:
    """jit-compiled g_a / g_s per architecture, shared by every codec instance (no recompiles)."""
    return {"analysis": jax.jit(lambda p, x: model.apply(p, x, method=NTCModel.analysis)),
            "synthesis": jax.jit(lambda p, y: model.apply(p, y, method=NTCModel.synthesis))}


INTEGER_META = b"\x02"  # header meta of new files with integer entropy parameters (module docstring)
INTEGER_META_V1 = b"\x01"  # integer entropy parameters with jitted z tables (still decoded)
_META_PATHS = {b"": (False, False), INTEGER_META_V1: (True, False), INTEGER_META: (True, True)}  # (integer, host_z)


class NTCCodec:
    """Codec protocol (codecs/base.py): compress(uint8 [H,W,3]) -> bytes, decompress, estimate_bits.

    integer: write files with integer entropy parameters (scale hyperprior only); files of either kind
    decode (the header says which)."""

    decode_options = ()

    def __init__(self, model: NTCModel, params, *, integer: bool = False):
        self.model = model
        self.name = model.variant
        self.params = jax.device_get(params)
        self.fingerprint = bitstream.params_fingerprint(self.params)
        self.latent = LatentCodec(latent_module(model.variant, model.N, model.M, model.compat),
                                  latent_variables(self.params), integer=integer)
        fns = _transforms(model)
        self._analysis, self._synthesis = fns["analysis"], fns["synthesis"]

    @property
    def stride(self) -> int:
        return self.model.stride

    def rate_points(self) -> list[dict]:
        return [{}]

    def _latents(self, images) -> np.ndarray:
        """uint8 [B, H, W, 3] (one shape) -> y float32 [B, h, w, M] of the padded images."""
        return np.asarray(self._analysis(self.params, to_model(pad_to_multiple(images, self.stride))))

    def _pack(self, image, segments, checks) -> bytes:
        header = bitstream.Header(codec=self.name, params_hash=self.fingerprint,
                                  image_shape=tuple(int(s) for s in image.shape), num_segments=NUM_SEGMENTS,
                                  checks=tuple(checks), meta=INTEGER_META if self.latent.integer else b"")
        return bitstream.pack(header, segments)

    def compress(self, image) -> bytes:
        return self.compress_batch([image])[0]

    def compress_batch(self, images) -> list[bytes]:
        """Compresses equally-sized images with one batched analysis; same bytes as `compress`."""
        images = [check_image(im) for im in images]
        if len({im.shape for im in images}) != 1:
            raise ValueError("compress_batch needs images of one shape; call compress per image.")
        coded = self.latent.encode_batch(self._latents(np.stack(images)), checks=True)
        return [self._pack(im, seg, checks) for im, (seg, checks) in zip(images, coded)]

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        """(h, w, M) of the latent y for an image of shape (H, W, ...)."""
        hp, wp = padded_size(image_shape[0], image_shape[1], self.stride)
        s = self.stride // self.latent.stride  # g_a's down-sampling
        return hp // s, wp // s, self.model.M

    def decompress(self, data: bytes) -> np.ndarray:
        header, segments = bitstream.unpack(data, codec=self.name, params_hash=self.fingerprint)
        if len(segments) != NUM_SEGMENTS:
            raise bitstream.BitstreamError(f"{self.name} file must have {NUM_SEGMENTS} segments, "
                                           f"got {len(segments)}.")
        if header.meta not in _META_PATHS:
            raise bitstream.BitstreamError(f"{self.name} file with unknown meta bytes {header.meta[:8]!r} (b'' = "
                                           f"float, {INTEGER_META_V1!r} / {INTEGER_META!r} = integer entropy "
                                           "parameters): a newer version of gencomp_jax wrote it, or it is damaged.")
        h, w, _ = header.image_shape
        integer, host_z = _META_PATHS[header.meta]
        return to_uint8(self.decode_padded(header, segments, integer=integer, host_z=host_z)[0, :h, :w])

    def decode_padded(self, header, segments, *, integer: bool, host_z: bool | None = None) -> jnp.ndarray:
        """The synthesis of a file's latent segments: x [1, Hp, Wp, 3] in model space (padded image, before
        the 8-bit grid). integer, host_z: how the segments were written (codecs/latent.py; host_z None: =
        integer, as new files). Codecs that carry NTC segments in their own files (HFD's stage 1) decode
        them with this."""
        y_hat = self.latent.decode(segments, self.latent_shape(header.image_shape), header=header, integer=integer,
                                   host_z=integer if host_z is None else host_z)
        return self._synthesis(self.params, jnp.asarray(y_hat[None]))

    def estimate_bits(self, image) -> float:
        """The model's rate estimate (bits) at test time (rounded latents), padded image."""
        return float(self.estimate_bits_batch(check_image(image)[None])[0])

    def estimate_bits_batch(self, images) -> np.ndarray:
        """uint8 [B, H, W, 3] -> float64 [B] estimated bits, one jit-compiled batched forward."""
        return self.latent.bits_batch(self._latents(np.asarray(images)))


def writes_integer(variant: str, model_config) -> bool:
    """Whether new files of an NTC model use the integer entropy-parameter path: the scale hyperprior unless
    model_config.integer_entropy is False (mean_scale configs inherit the key and ignore it). Also HFD's stage 1."""
    return variant == "hyperprior" and bool(model_config.get("integer_entropy", True))


def make_codec(config, params) -> NTCCodec:
    return NTCCodec(_model(config), params, integer=writes_integer(config.method, config.model))


register("hyperprior", method=make_method, codec=make_codec, codec_id=1, decode_options=NTCCodec.decode_options)
register("mean_scale", method=make_method, codec=make_codec, codec_id=6, decode_options=NTCCodec.decode_options)
