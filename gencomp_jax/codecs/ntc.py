"""Nonlinear transform coding: the Ballé et al. 2018 scale hyperprior as a Method and a Codec.

    make_method(config) -> HyperpriorMethod    loss = bpp + lambda * 255^2 * MSE (CompressAI's
                                               convention, MSE on [0, 1] images); metrics in bits
    make_codec(config, params) -> HyperpriorCodec

File layout (codecs/bitstream.py container, codec "hyperprior"): segments [z, y], each an ANS stream
of `entropy.coder.encode_indexed`. The image is edge-padded to a multiple of 64 for coding and
cropped back.

Bit-exact decoding: the decoder must derive the same y tables as the encoder, i.e. the same
scale indexes from h_s(z_hat). Both sides therefore run the entropy-parameter path (z symbols ->
z_hat -> h_s -> scale indexes) with one compiled function per latent shape at batch size 1, and
compute the indexes in float64 numpy from its float32 output. Encoder analysis (g_a, h_a) may run
batched: its output is quantized and transmitted, so it needs no reproducibility.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import register
from gencomp_jax.entropy import coder as coder_lib
from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy.factorized import FactorizedPrior, factorized_tables
from gencomp_jax.models.hyperprior import STRIDE, ScaleHyperprior

CODEC_NAME = "hyperprior"


def _model(config) -> ScaleHyperprior:
    return ScaleHyperprior(N=int(config.model.N), M=int(config.model.M))


def psnr_from_mse01(mse):
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


@dataclasses.dataclass(frozen=True)
class HyperpriorMethod:
    """The Method protocol (codecs/base.py) for the scale hyperprior.

    loss(params, batch, rng, train) -> (bpp + lmbda * 255^2 * mse, {loss, bpp, bpp_y, bpp_z, mse,
    psnr}); mse is measured on [0, 1] images (x_float / 2 + 1/2), psnr in dB.
    """

    model: ScaleHyperprior
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


def make_method(config) -> HyperpriorMethod:
    return HyperpriorMethod(model=_model(config), lmbda=float(config.model.lmbda))


# ---------------------------------------------------------------------------------------------------
# Codec


def _to_float(images_u8) -> jnp.ndarray:
    return jnp.asarray(images_u8, jnp.float32) / 127.5 - 1.0


def _to_uint8(x) -> np.ndarray:
    return np.asarray(jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255)).astype(np.uint8)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"Expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}; "
                         "use gencomp_jax.data.read_image to load and convert files.")
    return image


def _pad(image: np.ndarray) -> np.ndarray:
    h, w, _ = image.shape
    ph, pw = -h % STRIDE, -w % STRIDE
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image


@functools.lru_cache(maxsize=None)
def _compiled(n: int, m: int) -> dict:
    """jit-compiled pieces per architecture, shared by every codec instance (no recompiles)."""
    model = ScaleHyperprior(N=n, M=m)
    return {
        "analysis": jax.jit(lambda p, x: model.apply(p, x, method=ScaleHyperprior.analysis)),
        "scales": jax.jit(lambda p, zs, med: model.apply(p, zs + med,
                                                          method=ScaleHyperprior.hyper_scales)),
        "synthesis": jax.jit(lambda p, y: model.apply(p, y, method=ScaleHyperprior.synthesis)),
        "forward": jax.jit(lambda p, x: model.apply(p, x, train=False)),
    }


class HyperpriorCodec:
    """Codec protocol: compress(uint8 [H,W,3]) -> bytes, decompress(bytes) -> uint8, estimate_bits."""

    name = CODEC_NAME

    def __init__(self, model: ScaleHyperprior, params):
        self.model = model
        self.params = jax.device_get(params)
        self.fingerprint = bitstream.params_fingerprint(self.params)
        self._z = factorized_tables(FactorizedPrior(model.N), {"params": self.params["params"]["prior"]})
        self._y = gc.gaussian_tables()
        self._med = jnp.asarray(self._z["medians"])
        fns = _compiled(model.N, model.M)
        self._analysis = fns["analysis"]
        self._scales_fn = fns["scales"]  # entropy-parameter path, always at batch 1
        self._synthesis = fns["synthesis"]
        self._forward = fns["forward"]

    # -- helpers ------------------------------------------------------------------------------
    def _z_symbols(self, z: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(z, np.float32) - self._z["medians"]).astype(np.int64)

    def _y_indexes(self, z_sym: np.ndarray) -> np.ndarray:
        scales = self._scales_fn(self.params, jnp.asarray(z_sym[None], jnp.float32), self._med)[0]
        return gc.scale_indexes(np.asarray(scales))

    def _encode(self, image, y, z) -> bytes:
        z_sym = self._z_symbols(z)
        y_sym = np.round(np.asarray(y)).astype(np.int64)
        idx = self._y_indexes(z_sym)
        zt, yt = self._z, self._y
        n_ch = z_sym.shape[-1]
        z_bytes = coder_lib.encode_indexed(z_sym.reshape(-1), zt["tables"], zt["offsets"],
                                           np.tile(np.arange(n_ch), z_sym.size // n_ch),
                                           lengths=zt["lengths"])
        y_bytes = coder_lib.encode_indexed(y_sym.reshape(-1), yt["tables"], yt["offsets"],
                                           idx.reshape(-1), lengths=yt["lengths"])
        header = bitstream.Header(codec=CODEC_NAME, params_hash=self.fingerprint,
                                  image_shape=tuple(int(s) for s in image.shape), num_segments=2)
        return bitstream.pack(header, [z_bytes, y_bytes])

    # -- Codec protocol ---------------------------------------------------------------------------
    def compress(self, image) -> bytes:
        image = _check_image(image)
        x = _to_float(_pad(image)[None])
        y, z = self._analysis(self.params, x)
        return self._encode(image, np.asarray(y[0]), np.asarray(z[0]))

    def compress_batch(self, images) -> list[bytes]:
        """Compresses equally-sized images with one batched analysis; same decoding as `compress`."""
        images = [_check_image(im) for im in images]
        if len({im.shape for im in images}) != 1:
            raise ValueError("compress_batch needs images of one shape; call compress per image.")
        x = _to_float(np.stack([_pad(im) for im in images]))
        y, z = self._analysis(self.params, x)
        y, z = np.asarray(y), np.asarray(z)
        return [self._encode(im, y[i], z[i]) for i, im in enumerate(images)]

    def decode_symbols(self, data: bytes) -> tuple[bitstream.Header, np.ndarray, np.ndarray]:
        """bytes -> (header, z symbols int64 [h/64, w/64, N], y symbols int64 [h/16, w/16, M])."""
        try:
            header, (z_bytes, y_bytes) = bitstream.unpack(data, codec=CODEC_NAME,
                                                          params_hash=self.fingerprint)
        except ValueError as e:
            if isinstance(e, bitstream.BitstreamError):
                raise
            raise bitstream.BitstreamError(f"Hyperprior file must have 2 segments ({e}).") from e
        h, w, _ = header.image_shape
        hp, wp = h + (-h % STRIDE), w + (-w % STRIDE)
        n, m = self.model.N, self.model.M
        zt, yt = self._z, self._y
        zs = (hp // STRIDE, wp // STRIDE, n)
        z_sym = coder_lib.decode_indexed(z_bytes, zt["tables"], zt["offsets"],
                                         np.tile(np.arange(n), zs[0] * zs[1]),
                                         lengths=zt["lengths"]).reshape(zs)
        idx = self._y_indexes(z_sym)
        y_sym = coder_lib.decode_indexed(y_bytes, yt["tables"], yt["offsets"], idx.reshape(-1),
                                         lengths=yt["lengths"]).reshape(hp // 16, wp // 16, m)
        return header, z_sym, y_sym

    def decompress(self, data: bytes) -> np.ndarray:
        header, _, y_sym = self.decode_symbols(data)
        h, w, _ = header.image_shape
        x_hat = self._synthesis(self.params, jnp.asarray(y_sym[None], jnp.float32))
        return _to_uint8(x_hat[0, :h, :w])

    def estimate_bits(self, image) -> float:
        """The model's rate estimate (bits) at test time (rounded latents), padded image."""
        return float(self.estimate_bits_batch(_check_image(image)[None])[0])

    def estimate_bits_batch(self, images) -> np.ndarray:
        """uint8 [B, H, W, 3] -> float64 [B] estimated bits, one jit-compiled batched forward."""
        images = np.asarray(images)
        x = _to_float(np.stack([_pad(im) for im in images]))
        out = self._forward(self.params, x)
        return np.asarray(out["y_bits"], np.float64) + np.asarray(out["z_bits"], np.float64)


def make_codec(config, params) -> HyperpriorCodec:
    return HyperpriorCodec(_model(config), params)


register("hyperprior", method=make_method, codec=make_codec, codec_id=1)
