"""UQDM progressive codec (review Sec. IV-B, Algorithm 1 with dithered quantization).

    make_method(config) -> UQDMMethod     (training: NELBO of models/uqdm.py, in bits per dim)
    make_codec(config, params) -> UQDMCodec

File layout (codecs/bitstream.py container, codec "uqdm"):
  header.seed    u64 seed of the shared randomness (X_T, dithers, ancestral noise); never 0.
  header.meta    varints: T, tile size, lossless flag, tiles per network call.
  segment i      (i = 0..T-1) the dithered-quantization indices K of step i (z_{t_i} -> z_{t_{i+1}}),
                 entropy coded per element under the discretized reverse density (below).
  segment T      (lossless mode only) X_0 coded under the discretized p(x | z_0).
Any prefix of complete segments decodes (`decompress(data, steps=k)` or a truncated file): X_T is drawn
from the shared randomness at zero rate, each received segment advances z by one step, and the image
is reconstructed from the last z (see `RECONSTRUCTIONS`).

Each step is one call of channel/dq.py (dithered quantization with shared dither w ~ U(+-Delta/2)):
  encoder K = round((mu_Q + w) / Delta), both sides z_s = K Delta - w   (z_s - mu_Q ~ U(+-Delta/2)),
coded per element under the mass of g(mu_P, scale) on the width-Delta cell around z_s, which equals
Delta * p(z_s | z_t): the real code length of a step is its KL term in the loss (up to coder
overhead). dq builds per-element integer tables around the most likely K (+ escape), vectorised,
with no Python loop over elements. X_0 (lossless segment) is coded the same way under a window of
p(x | z_0) around its mode (+ escape), tables at precision 2^X0_TABLE_PRECISION.

Image sizes: the image is edge-padded to a multiple of the tile size (config.model.tile_size, a
multiple of the UNet's stride) and split into tiles that the model processes independently, always
in chunks of exactly config.model.tile_batch tiles (the canonical shape, see `_map_tiles`; 1 on CPU,
larger on GPU for throughput; the value is stored in the file and the decoder uses it).
Padded elements are never transmitted: at every step both sides set them to the reverse-process mean
mu_P (zero rate). Tiles are independent, so very large images may show faint seams in low-rate
previews.

Bit-exactness: every quantity that enters a table or a reconstruction is computed by the same jitted
function on the same inputs on both sides, at the per-image tile-batch shape; the shared randomness
is addressed by counters (channel/randomness.py). Files decode identically in another process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel import dq, randomness
from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import register
from gencomp_jax.entropy import coder, densities
from gencomp_jax.models import uqdm as uqdm_model

RECONSTRUCTIONS = uqdm_model.RECONSTRUCTIONS
X0_TABLE_PRECISION = 20         # X_0 tables sum to 2^20 (constriction's ANS supports <= 24)
CHUNK = 1 << 16                 # X_0 elements per coder call (bounds table memory for big images)
DEFAULT_SEED = 0x5EED_0F_0D_15C  # any non-zero u64; override with compress(..., seed=)
_HALF_WIDTH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 127)
_X0_STD_MULTIPLE = 8.0

# shared-randomness counter paths
_PATH_PRIOR = (randomness.PURPOSE_PRIOR, 0)          # X_T
_PATH_ANCESTRAL = (randomness.PURPOSE_PRIOR, 1)     # + (step, chunk): receiver-side ancestral noise


# ---------------------------------------------------------------------------------------------------
# Training


class UQDMMethod:
    """Trainable UQDM (Method protocol): loss = one-sample NELBO in bits per dim."""

    def __init__(self, config):
        self.config = config
        self.model = uqdm_model.UQDM(config.model)

    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        r_params, r_noise = jax.random.split(rng)
        return self.model.init({"params": r_params}, x, r_noise)

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        r_noise, r_drop = jax.random.split(rng)
        terms = self.model.apply(params, x, r_noise, train, rngs={"dropout": r_drop})
        num_dims = int(np.prod(x.shape[1:]))
        return uqdm_model.nelbo_metrics(terms, num_dims, prior_kl=bool(self.config.model.prior_kl))


def make_method(config) -> UQDMMethod:
    return UQDMMethod(config)


def make_codec(config, params, **kwargs) -> "UQDMCodec":
    return UQDMCodec(config, params, **kwargs)


def initial_params(config, *, params_file=None):
    """Initial parameters of `config.model` (seed 0), or those of a flax msgpack file shaped like them.

    For scripts that work without a training workdir (benchmarks, RD sweeps of an exported model);
    a workdir is loaded with gencomp_jax.eval.loading.load_codec instead.
    """
    import pathlib

    import flax.serialization

    crop = int(config.data.crop_size)
    params = jax.jit(uqdm_model.UQDM(config.model).init)(
        {"params": jax.random.PRNGKey(0)}, jnp.zeros((1, crop, crop, 3)), jax.random.PRNGKey(1))
    if params_file:
        params = flax.serialization.from_bytes(params, pathlib.Path(params_file).read_bytes())
    return params


# ---------------------------------------------------------------------------------------------------
# Helpers


def _write_varint(out: bytearray, v: int) -> None:
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        if pos >= len(data):
            raise bitstream.BitstreamError("corrupted UQDM file: a length field is cut off")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 63:
            raise bitstream.BitstreamError("corrupted UQDM file: malformed length field")


def _join_chunks(chunks: list[bytes]) -> bytes:
    """One segment from several coder streams: all but the last prefixed by a varint length."""
    out = bytearray()
    for c in chunks[:-1]:
        _write_varint(out, len(c))
        out += c
    out += chunks[-1]
    return bytes(out)


def _split_chunks(data: bytes, num: int) -> list[bytes]:
    pos, out = 0, []
    for _ in range(num - 1):
        length, pos = _read_varint(data, pos)
        if pos + length > len(data):
            raise bitstream.BitstreamError("corrupted UQDM file: a step segment is shorter than declared")
        out.append(data[pos:pos + length])
        pos += length
    out.append(data[pos:])
    return out


def _bucket(h: int) -> int:
    for b in _HALF_WIDTH_BUCKETS:
        if h <= b:
            return b
    return _HALF_WIDTH_BUCKETS[-1]


@dataclasses.dataclass
class _Layout:
    """How an image maps onto model tiles."""
    shape: tuple[int, int, int]
    tile: int
    nh: int
    nw: int
    batch: int = 1     # tiles per network call (fixed: the canonical shape)

    @property
    def tiles_shape(self):
        return (self.nh * self.nw, self.tile, self.tile, 3)

    def to_tiles(self, a: np.ndarray) -> np.ndarray:
        """[nh*tile, nw*tile, C] -> [nh*nw, tile, tile, C]."""
        t = self.tile
        c = a.shape[-1]
        return a.reshape(self.nh, t, self.nw, t, c).transpose(0, 2, 1, 3, 4).reshape(-1, t, t, c)

    def from_tiles(self, a: np.ndarray) -> np.ndarray:
        t = self.tile
        c = a.shape[-1]
        full = a.reshape(self.nh, self.nw, t, t, c).transpose(0, 2, 1, 3, 4).reshape(
            self.nh * t, self.nw * t, c)
        return full[:self.shape[0], :self.shape[1]]

    def valid(self) -> np.ndarray:
        h, w, c = self.shape
        m = np.zeros((self.nh * self.tile, self.nw * self.tile, 3), bool)
        m[:h, :w] = True
        return self.to_tiles(m)


# ---------------------------------------------------------------------------------------------------
# Codec


class UQDMCodec:
    """Progressive UQDM codec (Codec protocol + progressive options).

    compress(image, *, seed=None, lossless=True) -> bytes
    decompress(data, *, steps=None, reconstruction="denoise") -> uint8 [H, W, 3]
        steps: number of segments to use (0..T, or T+1 with the lossless segment); None = all in the
        file (a truncated file decodes its complete segments).
    estimate_bits(image) -> float: the ideal code length (sum of -log2 of the model's probabilities
        of the transmitted symbols, the same path as `compress`), i.e. the one-sample NELBO.
    rate_points() -> list of decode-option dicts, one per (steps, reconstruction).
    """

    name = "uqdm"

    def __init__(self, config, params, *, seed: int = DEFAULT_SEED):
        self.config = config
        self.mcfg = config.model
        self.model = uqdm_model.UQDM(config.model)
        self.params = params
        self.T = int(config.model.num_steps)
        self.tile = int(config.model.tile_size)
        self.family = config.model.family
        self.seed = int(seed)
        self.fingerprint = bitstream.params_fingerprint(params)
        self._gammas = np.asarray(self.model.apply(params, method=uqdm_model.UQDM.gammas), np.float32)
        self._bits_cache = None
        self.tile_batch = int(config.model.get("tile_batch", 1))
        self._build_jits()

    # -- jitted pieces (static step index) ---------------------------------------------------------
    def _build_jits(self):
        model = self.model

        def reverse(params, z, i):
            p = model.apply(params, z, i, method=uqdm_model.UQDM.reverse)
            return p["loc"], p["scale"], p["width"], p["x_hat"]

        def posterior(params, z, x, i):
            g = model.apply(params, method=uqdm_model.UQDM.gammas)
            return uqdm_model.forward_posterior(z, x, g[i], g[i + 1])[0]

        def x0_tables(z0, gamma0, half):
            logp = jax.nn.log_softmax(uqdm_model.x0_logits(z0, gamma0), axis=-1)
            c = uqdm_model.x0_argmax(z0, gamma0)
            idx = c[:, None] + jnp.arange(-half, half + 1)[None, :]
            inside = (idx >= 0) & (idx <= 255)
            pm = jnp.where(inside, jnp.exp(jnp.take_along_axis(logp, jnp.clip(idx, 0, 255), axis=1)), 0.0)
            esc = jnp.maximum(1.0 - jnp.sum(pm, axis=1, keepdims=True), densities.MIN_PROB)
            return jnp.concatenate([pm, esc], axis=1), c - half

        def x0_bits(z0, gamma0, x_int):
            return -uqdm_model.x0_log_prob(z0, x_int, gamma0) / math.log(2.0)

        def flow(params, z, i):
            return model.apply(params, z, i, method=uqdm_model.UQDM.flow_step)

        def ancestral(params, z, i, key):
            return model.apply(params, z, i, key, method=uqdm_model.UQDM.ancestral_step)

        # step indices are traced int32: one compiled program serves every step
        self._reverse = jax.jit(reverse)
        self._posterior = jax.jit(posterior)
        self._x0_tables = jax.jit(x0_tables, static_argnums=2)
        self._x0_bits = jax.jit(x0_bits)
        self._flow = jax.jit(flow)
        self._ancestral = jax.jit(ancestral)
        self._x0_argmax = jax.jit(uqdm_model.x0_argmax)

    # -- the network at its canonical shape ---------------------------------------------------------
    def _map_tiles(self, fn, z, b: int):
        """Applies fn(z_chunk [b, tile, tile, 3], chunk_index) to chunks of exactly b tiles.

        The network always runs at the canonical shape [b, tile, tile, 3] (the last chunk is
        zero-padded). XLA's float results for a tile can change in the last bit with the batch size
        (seen on XLA:CPU: batch 4 vs 1), but at a fixed shape they depend neither on the tile's position
        nor on the other tiles of the chunk; so a tile's numbers depend only on its own inputs, encoder
        and decoder agree for any image size, memory stays bounded (attention inside a tile) and
        one compiled program serves all sizes. b is written in the file (meta).
        Returns the outputs concatenated along axis 0 (a tuple if fn returns one; scalars pass through).
        """
        n = z.shape[0]
        outs = []
        for c, start in enumerate(range(0, n, b)):
            zc = z[start:start + b]
            if zc.shape[0] < b:
                zc = jnp.concatenate([zc, jnp.zeros((b - zc.shape[0],) + zc.shape[1:], zc.dtype)])
            outs.append(fn(zc, c))
        if isinstance(outs[0], tuple):
            return tuple(o[0] if jnp.ndim(o[0]) == 0 else jnp.concatenate(o)[:n] for o in zip(*outs))
        return jnp.concatenate(outs)[:n]

    def _net_reverse(self, z, i: int, b: int):
        """(loc, scale, width, x_hat) of step i for all tiles of z, b tiles per network call."""
        return self._map_tiles(lambda zc, c: self._reverse(self.params, zc, np.int32(i)), z, b)

    # -- small helpers ------------------------------------------------------------------------------
    def _layout(self, shape, batch: int | None = None) -> _Layout:
        h, w = int(shape[0]), int(shape[1])
        return _Layout(shape=(h, w, 3), tile=self.tile, nh=-(-h // self.tile), nw=-(-w // self.tile),
                       batch=int(batch or self.tile_batch))

    def _check_image(self, image) -> np.ndarray:
        a = np.asarray(image)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3 or min(a.shape[:2]) < 1:
            raise ValueError(f"UQDM codec expects one uint8 RGB image [H, W, 3], got dtype {a.dtype} "
                             f"shape {a.shape}; convert with gencomp_jax.data.read_image.")
        return a

    def _shared(self, seed: int) -> randomness.SharedRandomness:
        return randomness.SharedRandomness(seed)

    def _z_T(self, sr, layout):
        return sr.normal(_PATH_PRIOR, layout.tiles_shape)

    def _dither(self, sr, layout, i: int, width):
        """Shared dither w ~ U(-Delta/2, Delta/2) of step i (all tile elements)."""
        return dq.dither(sr.key(randomness.PURPOSE_DQ, i), layout.tiles_shape, width)

    def _x0_half_width(self) -> int:
        std = math.exp(0.5 * float(self._gammas[-1])) * 127.5  # std of z_0/alpha_0 in grid units
        return _bucket(min(math.ceil(_X0_STD_MULTIPLE * std) + 1, 127))

    @staticmethod
    def _scatter(base, valid: np.ndarray, values) -> jax.Array:
        """base with the valid elements replaced by `values` (padded elements keep base = mu_P)."""
        out = np.array(base)
        out[valid] = np.asarray(values)
        return jnp.asarray(out)

    def _chunks(self, n: int):
        return [(s, min(s + CHUNK, n)) for s in range(0, max(n, 1), CHUNK)]

    def _x0_pmfs(self, z0_v, half, start, end):
        pmf, off = self._x0_tables(z0_v[start:end], jnp.float32(self._gammas[-1]), half)
        return coder.quantize_pmf(np.asarray(pmf), X0_TABLE_PRECISION), np.asarray(off, np.int64)

    # -- compress -----------------------------------------------------------------------------------
    def _forward(self, image, seed, *, code: bool, lossless: bool = True):
        """Runs Algorithm 1. Returns (segments or None, per-segment ideal bits)."""
        layout = self._layout(image.shape)
        valid = layout.valid()
        x = layout.to_tiles(np.pad(image, ((0, layout.nh * self.tile - image.shape[0]),
                                           (0, layout.nw * self.tile - image.shape[1]), (0, 0)),
                                   mode="edge"))
        x_int = x.astype(np.int32)
        xf = jnp.asarray(x, jnp.float32) / 127.5 - 1.0
        sr = self._shared(seed)
        z = self._z_T(sr, layout)
        segments, bits = [], []
        for i in range(self.T):
            loc, scale, width, _ = self._net_reverse(z, i, layout.batch)
            mu = self._posterior(self.params, z, xf, np.int32(i))
            w = self._dither(sr, layout, i, width)
            loc_v, scale_v, mu_v, w_v = (np.asarray(a)[valid] for a in (loc, scale, mu, w))
            if code:
                seg, y_v = dq.dq_encode(mu_v, loc_v, scale_v, width, w=w_v, family=self.family)
                segments.append(seg)
            else:
                y_v = dq.dq_reconstruct(dq.dq_quantize(mu_v, w_v, width), w_v, width)
            bits.append(float(np.sum(np.asarray(
                dq.dq_rate_proxy_bits(y_v, loc_v, scale_v, width, family=self.family), np.float64))))
            z = self._scatter(loc, valid, y_v)
        if lossless:
            z0_v = np.asarray(z)[valid]
            xi_v = x_int[valid].astype(np.int64)
            bits.append(float(np.sum(np.asarray(self._x0_bits(
                jnp.asarray(z0_v), jnp.float32(self._gammas[-1]), jnp.asarray(xi_v, jnp.int32))))))
            if code:
                half = self._x0_half_width()
                chunks = []
                for s, e in self._chunks(xi_v.size):
                    pmfs, offs = self._x0_pmfs(z0_v, half, s, e)
                    chunks.append(coder.encode_per_symbol(xi_v[s:e], pmfs, offs))
                segments.append(_join_chunks(chunks))
        return (segments if code else None), bits

    def _meta(self, lossless: bool) -> bytes:
        out = bytearray()
        for v in (self.T, self.tile, int(lossless), self.tile_batch):
            _write_varint(out, v)
        return bytes(out)

    def compress(self, image, *, seed: int | None = None, lossless: bool = True) -> bytes:
        """uint8 [H, W, 3] -> gencomp file with T step segments (+ one lossless X_0 segment)."""
        image = self._check_image(image)
        seed = self.seed if seed is None else int(seed)
        if not 0 < seed < 2**64:
            raise ValueError(f"seed must be in [1, 2**64), got {seed}")
        segments, bits = self._forward(image, seed, code=True, lossless=lossless)
        self._bits_cache = (self._cache_key(image, seed, lossless), bits)
        header = bitstream.Header(codec="uqdm", params_hash=self.fingerprint,
                                  image_shape=tuple(int(s) for s in image.shape), seed=seed,
                                  meta=self._meta(lossless))
        return bitstream.pack(header, segments)

    def estimate_bits(self, image, *, steps: int | None = None, reconstruction: str | None = None,
                      seed: int | None = None, lossless: bool = True) -> float:
        """Model estimate of the bits of `compress(image)` (or of its first `steps` segments).

        The ideal code length -sum log2 P(symbol) on the exact path of `compress` (same seed and
        dithers): a one-sample NELBO, without header, framing and entropy-coder overhead.
        `reconstruction` is accepted for eval's rate points and does not change the rate.
        """
        del reconstruction
        bits = self.step_bits(image, seed=seed, lossless=lossless)
        return float(sum(bits if steps is None else bits[:int(steps)]))

    @staticmethod
    def _cache_key(image, seed, lossless):
        return (image.shape, hashlib.sha256(image.tobytes()).digest(), int(seed), bool(lossless))

    def step_bits(self, image, *, seed: int | None = None, lossless: bool = True) -> list[float]:
        """Ideal bits of each segment (T steps, then X_0 if lossless) on the exact path of compress."""
        image = self._check_image(image)
        seed = self.seed if seed is None else int(seed)
        key = self._cache_key(image, seed, lossless)
        if self._bits_cache is None or self._bits_cache[0] != key:
            self._bits_cache = (key, self._forward(image, seed, code=False, lossless=lossless)[1])
        return list(self._bits_cache[1])

    # -- decompress ---------------------------------------------------------------------------------
    def decode_latents(self, data: bytes, *, steps: int | None = None):
        """Parses a (possibly truncated) file; returns (header, layout, z, steps_used, x_int or None)."""
        header, segments = bitstream.unpack(data, codec="uqdm", params_hash=self.fingerprint,
                                            allow_partial=True)
        meta = header.meta
        try:
            T, pos = _read_varint(meta, 0)
            tile, pos = _read_varint(meta, pos)
            lossless, pos = _read_varint(meta, pos)
            batch, pos = _read_varint(meta, pos)
        except bitstream.BitstreamError:
            raise bitstream.BitstreamError("corrupted UQDM file: bad header meta") from None
        if T != self.T or tile != self.tile:
            raise bitstream.BitstreamError(
                f"this UQDM file was written with T={T} steps and tile {tile}, but the loaded config has "
                f"T={self.T}, tile {self.tile}: load the config the file was made with")
        n_avail = len(segments)
        if steps is None:
            steps = n_avail
        steps = int(steps)
        max_steps = self.T + (1 if lossless else 0)
        if not 0 <= steps <= max_steps:
            raise ValueError(f"steps must be in [0, {max_steps}] for this file, got {steps}")
        if steps > n_avail:
            raise ValueError(f"steps={steps} asked for, but only {n_avail} complete segments are in the "
                             "data (a truncated file); decode with steps <= that")
        if not batch or pos != len(meta):
            raise bitstream.BitstreamError("corrupted UQDM file: bad header meta")
        layout = self._layout(header.image_shape, batch)
        valid = layout.valid()
        n = int(valid.sum())
        sr = self._shared(header.seed)
        z = self._z_T(sr, layout)
        for i in range(min(steps, self.T)):
            loc, scale, width, _ = self._net_reverse(z, i, layout.batch)
            w = self._dither(sr, layout, i, width)
            loc_v, scale_v, w_v = (np.asarray(a)[valid] for a in (loc, scale, w))
            y_v = dq.dq_decode(segments[i], loc_v, scale_v, width, w=w_v, family=self.family)
            z = self._scatter(loc, valid, y_v)
        x_int = None
        if steps == self.T + 1:
            z0_v = np.asarray(z)[valid]
            half = self._x0_half_width()
            spans = self._chunks(n)
            parts = _split_chunks(segments[self.T], len(spans))
            xi = np.empty(n, np.int64)
            for (s, e), part in zip(spans, parts):
                pmfs, offs = self._x0_pmfs(z0_v, half, s, e)
                xi[s:e] = coder.decode_per_symbol(part, pmfs, offs)
            if np.any((xi < 0) | (xi > 255)):
                raise coder.CodingError("corrupted UQDM file: decoded pixel value outside [0, 255]")
            x_int = np.zeros(layout.tiles_shape, np.int64)
            x_int[valid] = xi
        return header, layout, z, steps, x_int

    def reconstruct(self, z, steps: int, layout: _Layout, seed: int, reconstruction: str) -> np.ndarray:
        """Image (uint8 tiles [N, tile, tile, 3]) from z = z_{t_steps} with the given method."""
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={reconstruction!r}; use one of {RECONSTRUCTIONS}")
        gamma0 = jnp.float32(self._gammas[-1])
        if steps >= self.T:
            return np.asarray(self._x0_argmax(z, gamma0)).astype(np.uint8)
        if reconstruction == "denoise":
            x_hat = self._net_reverse(z, steps, layout.batch)[3]
            return np.asarray(uqdm_model.x_grid_index(x_hat)).astype(np.uint8)
        sr = self._shared(seed)
        for i in range(steps, self.T):
            if reconstruction == "flow":
                z = self._map_tiles(lambda zc, c: self._flow(self.params, zc, np.int32(i)), z, layout.batch)
            else:
                z = self._map_tiles(lambda zc, c: self._ancestral(
                    self.params, zc, np.int32(i), sr.key(*_PATH_ANCESTRAL, i, c)), z, layout.batch)
        return np.asarray(self._x0_argmax(z, gamma0)).astype(np.uint8)

    def decompress(self, data: bytes, *, steps: int | None = None, reconstruction: str = "denoise"
                   ) -> np.ndarray:
        """File (or a prefix of complete segments) -> uint8 [H, W, 3].

        steps: segments to decode (None = all present); steps = T + 1 (lossless file) is exact.
        reconstruction: "denoise" (x_hat of the last z), "ancestral" (sample the remaining reverse
        steps with shared randomness) or "flow" (probability-flow / DDIM steps); all three equal the
        mode of p(x | z_0) once every step is received.
        """
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={reconstruction!r}; use one of {RECONSTRUCTIONS}")
        header, layout, z, steps, x_int = self.decode_latents(data, steps=steps)
        if x_int is not None:
            tiles = x_int.astype(np.uint8)
        else:
            tiles = self.reconstruct(z, steps, layout, header.seed, reconstruction)
        return np.ascontiguousarray(layout.from_tiles(tiles))

    # -- progressive helpers -------------------------------------------------------------------------
    def truncate(self, data: bytes, *, steps: int | None = None, reconstruction: str | None = None) -> bytes:
        """The prefix of `data` holding the header and the first `steps` segments (what a receiver
        has after `steps` steps): `decompress(truncate(d, steps=k)) == decompress(d, steps=k)`."""
        del reconstruction
        _, segments = bitstream.unpack(data, codec="uqdm", params_hash=self.fingerprint, allow_partial=True)
        steps = len(segments) if steps is None else int(steps)
        if not 0 <= steps <= len(segments):
            raise ValueError(f"steps must be in [0, {len(segments)}] for this file, got {steps}")
        size = len(data) - sum(_segment_framed_size(s) for s in segments[steps:])
        return bytes(data[:size])

    def rate_points(self, *, reconstructions=RECONSTRUCTIONS) -> list[dict[str, Any]]:
        """Decode options for an RD sweep over tau: for each reconstruction type, steps = 0 (X_T only,
        header bytes), 1, ..., T (all diffusion steps) and T + 1 (lossless X_0, exact)."""
        for r in reconstructions:
            if r not in RECONSTRUCTIONS:
                raise ValueError(f"reconstruction {r!r}; use any of {RECONSTRUCTIONS}")
        return [{"steps": k, "reconstruction": r} for r in reconstructions for k in range(self.T + 2)]


def _segment_framed_size(seg: bytes) -> int:
    """Bytes a segment occupies in the container: varint length + CRC32 + payload."""
    out = bytearray()
    _write_varint(out, len(seg))
    return len(out) + 4 + len(seg)


def segment_sizes(data: bytes) -> list[int]:
    """Framed size in bytes of each complete segment of a UQDM file (prefix bits = header + these)."""
    _, segments = bitstream.unpack(data, codec="uqdm", allow_partial=True)
    return [_segment_framed_size(s) for s in segments]


register("uqdm", method=make_method, codec=make_codec, codec_id=2)
