"""Stage 1 as a reusable codec part: entropy coding of a latent y with a hyperprior latent module.

    codec = LatentCodec(latent, variables)    latent: a models.hyperprior latent module
                                              (HyperpriorLatent / MeanScaleLatent, any N, M);
                                              variables: its variables, {"params": {h_a, h_s, prior}}
    codec.encode(y) -> [z_bytes, y_bytes]     y: float [h, w, M], h and w multiples of codec.stride
    codec.encode_batch(ys, checks=True) -> [(segments, (z_check, y_check))]   with the segment checks
    codec.decode(segments, (h, w, M), header=None) -> y_hat float32 [h, w, M]
    codec.bits(y) -> float                    the model's rate estimate (bits) of those segments

Segments: z symbols round(z - median) coded with the factorized prior's tables (one row per
channel); y symbols round(y - mean) coded with the Gaussian scale tables (gc.gaussian_tables), each
element with the table of its scale index; y_hat = symbols + mean. Each segment is one ANS stream of
`entropy.coder.encode_indexed`. For the scale hyperprior (mean 0) these are the bytes the NTC codec
has always written.

Bit-exact decoding: the decoder must derive the same scale indexes and means as the encoder. Both
sides therefore run the entropy-parameter path (z symbols -> z_hat -> h_s -> mean, scale) with one
jit-compiled function per architecture at batch size 1 (compiled once per latent shape, shared by
every codec instance), and compute the indexes in float64 numpy from its float32 output. The hyper
analysis (y -> z) may run batched: its output is quantized and transmitted.

Checks (container format version 2, codecs/bitstream.py): the z segment's check is
content_check(z symbols), the y segment's content_check(y symbols, scale indexes). A decoder given
the file's header verifies both, so a platform whose float path gives one different scale index
(another CPU type, GPU, XLA version) stops with bitstream.DecodeMismatchError naming the segment
instead of decoding a wrong image; a stream that fails to decode in a checked file is the same error.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.codecs import bitstream
from gencomp_jax.entropy import coder as coder_lib
from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy.factorized import factorized_tables
from gencomp_jax.models.hyperprior import factorized_prior

NUM_SEGMENTS = 2  # [z, y]


@functools.lru_cache(maxsize=None)
def _compiled(latent) -> dict:
    """jit-compiled pieces per latent architecture (the module is hashable by its fields)."""
    cls = type(latent)
    return {
        "hyper_analysis": jax.jit(lambda v, y: latent.apply(v, y, method=cls.hyper_analysis)),
        "entropy_parameters": jax.jit(lambda v, z_sym, med: latent.apply(
            v, z_sym + med, method=cls.entropy_parameters)),
        "forward": jax.jit(lambda v, y: latent.apply(v, y, train=False)),
    }


class LatentCodec:
    """Codes latents y [h, w, M] of one latent module with fixed variables (see module docstring)."""

    def __init__(self, latent, variables: Any):
        self.latent = latent.clone(parent=None)
        self.variables = jax.device_get(variables)
        prior = {"params": self.variables["params"]["prior"]}
        self._z = factorized_tables(factorized_prior(self.latent.N, getattr(self.latent, "compat", "native")),
                                    prior)
        # compat="compressai" (converted CompressAI weights): its 64-scale table, tail mass and index rule,
        # so that files have the size of CompressAI's own bitstreams
        compressai = getattr(self.latent, "compat", "native") == "compressai"
        self._y = gc.gaussian_tables(num_scales=64, tail_mass=1e-9) if compressai else gc.gaussian_tables()
        self._scale_rule = "ceil" if compressai else "nearest"
        self._med = jnp.asarray(self._z["medians"])
        fns = _compiled(self.latent)
        self._hyper_analysis = fns["hyper_analysis"]
        self._params_fn = fns["entropy_parameters"]  # always at batch 1
        self._forward = fns["forward"]

    @property
    def stride(self) -> int:
        """Down-sampling from y to z: latent heights and widths must be multiples of it."""
        return self.latent.stride

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        shape = tuple(int(s) for s in shape)
        s, m = self.stride, self.latent.M
        if len(shape) != 3 or shape[2] != m or shape[0] < 1 or shape[1] < 1 or shape[0] % s or shape[1] % s:
            raise ValueError(f"latent shape {shape}: expected (h, w, {m}) with h and w positive multiples of "
                             f"{s}; pad the image to a multiple of g_a's stride x {s}.")
        return shape

    # -- entropy parameters (canonical batch-1 path) --------------------------------------------
    def _y_parameters(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z symbols int [hz, wz, N] -> (mean float32 [h, w, M], scale indexes int64 [h, w, M])."""
        mean, scale = self._params_fn(self.variables, jnp.asarray(z_sym[None], jnp.float32), self._med)
        idx = gc.scale_indexes(np.asarray(scale[0]), self._y["scales"], rule=self._scale_rule)
        return np.asarray(mean[0], np.float32), idx

    def _z_channels(self, num_symbols: int) -> np.ndarray:
        """Table row (channel) of each z symbol in [h, w, N] raster order."""
        n = self.latent.N
        return np.tile(np.arange(n), num_symbols // n)

    # -- public API ---------------------------------------------------------------------------
    def encode(self, y) -> list[bytes]:
        """y float [h, w, M] -> segments [z_bytes, y_bytes]."""
        return self.encode_batch(np.asarray(y)[None])[0]

    def encode_batch(self, ys, *, checks: bool = False) -> list:
        """y float [B, h, w, M] -> one [z_bytes, y_bytes] per example (batched hyper analysis).

        Each example's bytes are those of `encode(y[i])`. checks=True: one ([z_bytes, y_bytes],
        (z_check, y_check)) per example, the checks for bitstream.Header(checks=...).
        """
        ys = np.asarray(ys, np.float32)
        self._check_shape(ys.shape[1:])
        zs = np.asarray(self._hyper_analysis(self.variables, jnp.asarray(ys)))
        out = []
        for y, z in zip(ys, zs):
            z_sym = np.round(z - self._z["medians"]).astype(np.int64)
            mean, idx = self._y_parameters(z_sym)
            y_sym = np.round(y - mean).astype(np.int64)
            yt, zt = self._y, self._z
            y_bytes = coder_lib.encode_indexed(y_sym.reshape(-1), yt["tables"], yt["offsets"],
                                               idx.reshape(-1), lengths=yt["lengths"])
            z_bytes = coder_lib.encode_indexed(z_sym.reshape(-1), zt["tables"], zt["offsets"],
                                               self._z_channels(z_sym.size), lengths=zt["lengths"])
            if checks:
                out.append(([z_bytes, y_bytes], (bitstream.content_check(z_sym),
                                                 bitstream.content_check(y_sym, idx))))
            else:
                out.append([z_bytes, y_bytes])
        return out

    def decode_symbols(self, segments: Sequence[bytes], latent_shape, *, header=None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """segments -> (z symbols int64 [h/s, w/s, N], y symbols int64 [h, w, M], mean float32 [h, w, M]).

        header: the file's bitstream.Header; if it carries checks (segments 0 and 1 = [z, y]), the
        decoded symbols and scale indexes are verified against them (DecodeMismatchError)."""
        h, w, m = self._check_shape(latent_shape)
        if len(segments) != NUM_SEGMENTS:
            raise ValueError(f"a latent code has {NUM_SEGMENTS} segments [z, y], got {len(segments)}.")
        z_bytes, y_bytes = segments
        s, zt, yt = self.stride, self._z, self._y
        z_shape = (h // s, w // s, self.latent.N)
        checked = header is not None and bool(header.checks)
        try:
            z_sym = coder_lib.decode_indexed(z_bytes, zt["tables"], zt["offsets"],
                                             self._z_channels(int(np.prod(z_shape))),
                                             lengths=zt["lengths"]).reshape(z_shape)
        except coder_lib.CodingError as e:
            if checked:
                raise bitstream.mismatch(header, 0, f"the z symbols do not decode with this model's tables ({e})"
                                         ) from None
            raise
        if checked:
            bitstream.verify(header, 0, bitstream.content_check(z_sym), what="the decoded z symbols")
        mean, idx = self._y_parameters(z_sym)
        try:
            y_sym = coder_lib.decode_indexed(y_bytes, yt["tables"], yt["offsets"], idx.reshape(-1),
                                             lengths=yt["lengths"]).reshape(h, w, m)
        except coder_lib.CodingError as e:
            if checked:
                raise bitstream.mismatch(header, 1, "the y symbols do not decode with the scale indexes computed "
                                         f"here ({e})") from None
            raise
        if checked:
            bitstream.verify(header, 1, bitstream.content_check(y_sym, idx),
                             what="the decoded y symbols or the scale indexes computed from z")
        return z_sym, y_sym, mean

    def decode(self, segments: Sequence[bytes], latent_shape, *, header=None) -> np.ndarray:
        """segments [z_bytes, y_bytes] -> y_hat = symbols + mean, float32 [h, w, M] (header: see
        decode_symbols)."""
        _, y_sym, mean = self.decode_symbols(segments, latent_shape, header=header)
        return y_sym.astype(np.float32) + mean

    def bits(self, y) -> float:
        """The model's estimate (bits) of the segments `encode(y)` writes (framing not included)."""
        return float(self.bits_batch(np.asarray(y)[None])[0])

    def bits_batch(self, ys) -> np.ndarray:
        """y float [B, h, w, M] -> float64 [B] estimated bits (y + z), one jit-compiled batched forward."""
        ys = np.asarray(ys, np.float32)
        self._check_shape(ys.shape[1:])
        out = self._forward(self.variables, jnp.asarray(ys))
        return np.asarray(out["y_bits"], np.float64) + np.asarray(out["z_bits"], np.float64)
