"""Stage 1 as a reusable codec part: entropy coding of a latent y with a hyperprior latent module.

    codec = LatentCodec(latent, variables, integer=False, host_z=None)
                                              latent: a models.hyperprior latent module
                                              (HyperpriorLatent / MeanScaleLatent, any N, M);
                                              variables: its variables, {"params": {h_a, h_s, prior}};
                                              integer: the entropy-parameter path of new codes (below);
                                              host_z: z tables of new codes from the host (default:
                                              = integer; below)
    codec.encode(y) -> [z_bytes, y_bytes]     y: float [h, w, M], h and w multiples of codec.stride
    codec.encode_batch(ys, checks=True) -> [(segments, (z_check, y_check))]   with the segment checks
    codec.decode(segments, (h, w, M), header=None, integer=None, host_z=None) -> y_hat float32 [h, w, M]
                                              integer, host_z: how the code was written (None: the
                                              codec's own); files must record it (ntc.py: meta)
    codec.bits(y) -> float                    the model's rate estimate (bits) of those segments

Segments: z symbols round(z - median) coded with the factorized prior's tables (one row per
channel); y symbols round(y - mean) coded with the Gaussian scale tables (gc.gaussian_tables), each
element with the table of its scale index; y_hat = symbols + mean. Each segment is one ANS stream of
`entropy.coder.encode_indexed`. For the scale hyperprior (mean 0) these are the bytes the NTC codec
has always written.

Entropy parameters, two paths (the decoder must derive exactly the encoder's scale indexes and means):
  float    (integer=False; every file written before the integer path, and the mean-scale latent): both
           sides run z symbols -> z_hat -> h_s -> (mean, scale) as one jit-compiled float32 function per
           architecture at batch size 1 and compute the indexes in float64 numpy. Reproducible on one
           platform; another CPU type, GPU, XLA version or setting can change one index (the checks
           below then stop the decode).
  integer  (integer=True; scale hyperprior only): h_s converted to an integer network
           (entropy/integer.py, Ballé et al. 2019, WEIGHT_BITS=16 kernels, ACTIVATION_BITS=24 activations)
           whose output is the scale index itself, evaluated in exact integer arithmetic on the host: the
           same indexes on every platform. The y segment then starts with the network's activation
           exponents (one byte each, f + 64), chosen by the encoder on this latent (no clipping), then
           the ANS stream. The model's float rate estimate (`bits`) is what training optimises; the
           integer path changes the index of ~0.1% of the elements by one step (a negligible rate change).
The hyper analysis (y -> z) may run batched: its output is quantized and transmitted.

z tables and medians, two kinds (entropy/factorized.py): the factorized prior evaluated by the jitted
float32 module (host_z=False: float files and the first integer files, ntc.py meta 0x01), or in float64
NumPy on the host (host_z=True: integer files from meta 0x02 on). The jitted kind can differ by an ulp on
another platform (measured: the float32 medians of the golden model differ by 1 ulp between the two
kinds in 3 of 4 channels), which changes z_hat and with it the integer network's input; the host kind
does not depend on the accelerator or XLA, so the integer path is platform-independent from the bytes
to the scale indexes.

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
from gencomp_jax.entropy import integer as integer_lib
from gencomp_jax.entropy.factorized import factorized_tables
from gencomp_jax.models.hyperprior import HyperpriorLatent, factorized_prior, hyper_synthesis_layers

NUM_SEGMENTS = 2  # [z, y]
# the integer path's bit widths (files record only that they use it: changing these needs a new version)
WEIGHT_BITS = 16
ACTIVATION_BITS = 24


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

    def __init__(self, latent, variables: Any, *, integer: bool = False, host_z: bool | None = None):
        self.latent = latent.clone(parent=None)
        self.integer = bool(integer)
        self.host_z = self.integer if host_z is None else bool(host_z)
        if self.integer:
            self._check_integer()
        if self.host_z and not self.integer:
            raise ValueError("host z tables are written with the integer path only (the float path's h_s "
                             "depends on the platform anyway); use integer=True or host_z=False.")
        self.variables = jax.device_get(variables)
        self._z_kinds: dict = {}
        # compat="compressai" (converted CompressAI weights): its 64-scale table, tail mass and index rule,
        # so that files have the size of CompressAI's own bitstreams
        compressai = getattr(self.latent, "compat", "native") == "compressai"
        self._y = gc.gaussian_tables(num_scales=64, tail_mass=1e-9) if compressai else gc.gaussian_tables()
        self._scale_rule = "ceil" if compressai else "nearest"
        fns = _compiled(self.latent)
        self._hyper_analysis = fns["hyper_analysis"]
        self._params_fn = fns["entropy_parameters"]  # always at batch 1
        self._forward = fns["forward"]
        self._integer_net = None

    @property
    def _med(self):
        """The float path's z medians (jitted kind), on the device."""
        return jnp.asarray(self.z_tables(False)["medians"])

    def z_tables(self, host: bool) -> dict:
        """The z coding tables and medians (entropy.factorized.factorized_tables) of one kind (module
        docstring): host=False jitted float32, host=True float64 NumPy on the host."""
        if host not in self._z_kinds:
            self._z_kinds[host] = factorized_tables(
                factorized_prior(self.latent.N, getattr(self.latent, "compat", "native")),
                {"params": self.variables["params"]["prior"]}, host=host)
        return self._z_kinds[host]

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
    def _check_integer(self):
        if not isinstance(self.latent, HyperpriorLatent):
            raise ValueError(f"integer entropy parameters are implemented for the scale hyperprior only, not "
                             f"{type(self.latent).__name__}; use integer=False.")

    @property
    def integer_network(self) -> integer_lib.IntegerNetwork:
        """The integer h_s of the integer path (converted once from the float parameters: exact)."""
        if self._integer_net is None:
            self._check_integer()
            layers = hyper_synthesis_layers(self.variables, getattr(self.latent, "compat", "native"))
            self._integer_net = integer_lib.IntegerNetwork.convert(
                layers, num_scales=len(self._y["scales"]), lo=gc.SCALE_MIN, hi=gc.SCALE_MAX, rule=self._scale_rule,
                weight_bits=WEIGHT_BITS, activation_bits=ACTIVATION_BITS)
        return self._integer_net

    def _y_parameters(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float path: z symbols int [hz, wz, N] -> (mean float32 [h, w, M], scale indexes int64 [h, w, M])."""
        mean, scale = self._params_fn(self.variables, jnp.asarray(z_sym[None], jnp.float32), self._med)
        idx = gc.scale_indexes(np.asarray(scale[0]), self._y["scales"], rule=self._scale_rule)
        return np.asarray(mean[0], np.float32), idx

    def _integer_indexes(self, z_sym: np.ndarray, medians: np.ndarray, exponents=None) -> tuple[np.ndarray, tuple]:
        """Integer path: z symbols (relative to `medians`) -> (scale indexes int64 [h, w, M], exponents)."""
        return self.integer_network.indexes(z_sym, medians, exponents)

    def _split_exponents(self, y_bytes: bytes) -> tuple[tuple, bytes]:
        """Integer path: the y segment's exponent prefix and its ANS stream."""
        num = len(self.integer_network.layers)
        if len(y_bytes) < num:
            raise bitstream.BitstreamError(f"the y segment ({len(y_bytes)} bytes) is shorter than the {num} "
                                           "exponent bytes of the integer entropy parameters (truncated or damaged)")
        return tuple(b - 64 for b in y_bytes[:num]), y_bytes[num:]

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
        zt = self.z_tables(self.host_z)
        out = []
        for y, z in zip(ys, zs):
            z_sym = np.round(z - zt["medians"]).astype(np.int64)
            prefix = b""
            if self.integer:  # mean 0 (scale hyperprior)
                mean = np.zeros(y.shape, np.float32)
                idx, exponents = self._integer_indexes(z_sym, zt["medians"])
                prefix = bytes(f + 64 for f in exponents)
            else:
                mean, idx = self._y_parameters(z_sym)
            y_sym = np.round(y - mean).astype(np.int64)
            yt = self._y
            y_bytes = prefix + coder_lib.encode_indexed(y_sym.reshape(-1), yt["tables"], yt["offsets"],
                                                        idx.reshape(-1), lengths=yt["lengths"])
            z_bytes = coder_lib.encode_indexed(z_sym.reshape(-1), zt["tables"], zt["offsets"],
                                               self._z_channels(z_sym.size), lengths=zt["lengths"])
            if checks:
                out.append(([z_bytes, y_bytes], (bitstream.content_check(z_sym),
                                                 bitstream.content_check(y_sym, idx))))
            else:
                out.append([z_bytes, y_bytes])
        return out

    def decode_symbols(self, segments: Sequence[bytes], latent_shape, *, header=None, integer: bool | None = None,
                       host_z: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """segments -> (z symbols int64 [h/s, w/s, N], y symbols int64 [h, w, M], mean float32 [h, w, M]).

        header: the file's bitstream.Header; if it carries checks (segments 0 and 1 = [z, y]), the
        decoded symbols and scale indexes are verified against them (DecodeMismatchError).
        integer: the entropy-parameter path the segments were written with (None: this codec's);
        host_z: the kind of z tables they were written with (None: this codec's)."""
        integer = self.integer if integer is None else bool(integer)
        host_z = self.host_z if host_z is None else bool(host_z)
        h, w, m = self._check_shape(latent_shape)
        if len(segments) != NUM_SEGMENTS:
            raise ValueError(f"a latent code has {NUM_SEGMENTS} segments [z, y], got {len(segments)}.")
        z_bytes, y_bytes = segments
        s, zt, yt = self.stride, self.z_tables(host_z), self._y
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
        if integer:
            if not isinstance(self.latent, HyperpriorLatent):
                raise bitstream.BitstreamError(f"the file declares integer entropy parameters, which "
                                               f"{type(self.latent).__name__} does not have (damaged file?)")
            exponents, y_bytes = self._split_exponents(y_bytes)
            try:
                idx, _ = self._integer_indexes(z_sym, zt["medians"], exponents)
            except ValueError as e:
                raise bitstream.BitstreamError(f"the y segment's integer entropy parameters: {e}") from None
            mean = np.zeros(idx.shape, np.float32)
        else:
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

    def decode(self, segments: Sequence[bytes], latent_shape, *, header=None, integer: bool | None = None,
               host_z: bool | None = None) -> np.ndarray:
        """segments [z_bytes, y_bytes] -> y_hat = symbols + mean, float32 [h, w, M] (header, integer, host_z:
        see decode_symbols)."""
        _, y_sym, mean = self.decode_symbols(segments, latent_shape, header=header, integer=integer, host_z=host_z)
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
