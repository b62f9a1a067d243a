"""UQDM progressive codec (review Sec. IV-B, Algorithm 1 with dithered quantization).

    make_method(config) -> UQDMMethod     (training: NELBO of models/uqdm.py, in bits per dim)
    make_codec(config, params) -> UQDMCodec

Built on codecs/progressive.py (header, tiling, fixed-shape batching, truncation, rate points, the
`steps` option); this module implements only UQDM's steps and reconstructions.

File layout (codecs/bitstream.py container, codec "uqdm"; the segments are unchanged since the first UQDM files):
  header.seed    u64 seed of the shared randomness (X_T, dithers, ancestral noise); never 0.
  header.meta    varints: T (diffusion steps), tile size, lossless flag, tiles per network call, then the
                 table coding (absent in files written before it existed = 0):
                   0  CODING_FLOAT: the DQ tables are built from the network's float (loc, scale) and the
                      step width of the jitted network call (files of 44b2816 .. 578be25);
                   1  CODING_GRID: (loc, scale) are first quantized to a grid (`table_grid`: scale on a
                      log2 grid of 2^-SCALE_GRID_BITS octave, loc on a grid of 2^-LOC_GRID_BITS of that
                      quantized scale, both in units of the step width Delta) and Delta is computed once in
                      float64 NumPy from the schedule, so float noise far below the grid spacing (thread
                      counts, XLA flags, another CPU) cannot change a table. Rate cost: ~0.03% (measured,
                      experiments/uqdm_filesize.py).
  segment i      (i = 0..T-1) the dithered-quantization indices K of step i (z_{t_i} -> z_{t_{i+1}}),
                 entropy coded per element under the discretized reverse density (below).
  segment T      (lossless mode only) X_0 coded under the discretized p(x | z_0).
  checks         (format version 2) per segment: content_check of the step's integers K (of X_0 for
                 segment T); the decoder verifies them, so a platform whose network floats change a
                 table stops with DecodeMismatchError instead of a wrong image. Version-1 files (no
                 checks) still decode.
Any prefix of complete segments decodes (`decompress(data, steps=k)` or a truncated file): X_T is drawn
from the shared randomness at zero rate, each received segment advances z by one step, and the image
is reconstructed from the last z (decode option `reconstruction`: denoise | ancestral | flow).

Each step is one call of channel/dq.py (dithered quantization with shared dither w ~ U(+-Delta/2)):
  encoder K = round((mu_Q + w) / Delta), both sides z_s = K Delta - w   (z_s - mu_Q ~ U(+-Delta/2)),
coded per element under the mass of g(mu_P, scale) on the width-Delta cell around z_s, which equals
Delta * p(z_s | z_t): the real code length of a step is its KL term in the loss (up to coder
overhead). dq builds per-element integer tables around the most likely K (+ escape), vectorised,
with no Python loop over elements. X_0 (lossless segment) is coded the same way under a window of
p(x | z_0) (diffusion/losses.py `discrete_data_log_probs`) around its mode (+ escape), tables at
precision 2^X0_TABLE_PRECISION.

Image sizes: the image is edge-padded to a multiple of the tile size (config.model.tile_size) and
split into tiles that the model processes independently, in chunks of exactly config.model.tile_batch
tiles (progressive.map_tiles; stored in the file). Padded elements are never transmitted: at every
step both sides set them to the reverse-process mean mu_P (zero rate). Tiles are independent, so very
large images may show faint seams in low-rate previews.

Bit-exactness: every quantity that enters a table or a reconstruction is computed by the same jitted
function on the same inputs on both sides, at the per-image tile-batch shape; the shared randomness
is addressed by counters (channel/randomness.py). Files decode identically in another process.
"""

from __future__ import annotations

import math
import pathlib

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel import dq, randomness
from gencomp_jax.codecs import bitstream, progressive
from gencomp_jax.codecs.base import STEPS_OPTION, register
from gencomp_jax.data import images
from gencomp_jax.diffusion import losses
from gencomp_jax.entropy import coder, densities
from gencomp_jax.entropy.varint import VarintError, join_streams, split_streams
from gencomp_jax.models import uqdm as uqdm_model

RECONSTRUCTIONS = progressive.RECONSTRUCTIONS
DEFAULT_SEED = progressive.DEFAULT_SEED
X0_TABLE_PRECISION = 20         # X_0 tables sum to 2^20 (constriction's ANS supports <= 24)
CHUNK = 1 << 16                 # X_0 elements per coder call (bounds table memory for big images)
_HALF_WIDTH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 127)
_X0_STD_MULTIPLE = 8.0

# Table coding of a file (header meta field "coding", see the module docstring).
CODING_FLOAT = 0
CODING_GRID = 1
CODINGS = (CODING_FLOAT, CODING_GRID)
LOC_GRID_BITS = 3      # loc on a grid of (quantized scale) / 8
SCALE_GRID_BITS = 4    # scale on a log2 grid of 1/16 octave
_SCALE_GRID_RANGE = 40 * (1 << SCALE_GRID_BITS)  # |log2(scale / Delta)| <= 40: keeps grid values finite

# shared-randomness counter path of the receiver-side ancestral noise: + (step, chunk)
_PATH_ANCESTRAL = (randomness.PURPOSE_PRIOR, 1)


# ---------------------------------------------------------------------------------------------------
# Training


class UQDMMethod:
    """Trainable UQDM (Method protocol): loss = one-sample NELBO in bits per dim."""

    def __init__(self, config):
        self.config = config
        self.mcfg = uqdm_model.model_config(config.model)
        self.model = uqdm_model.UQDM(self.mcfg)

    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        r_params, r_noise = jax.random.split(rng)
        return self.model.init({"params": r_params}, x, r_noise)

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        r_noise, r_drop = jax.random.split(rng)
        terms = self.model.apply(params, x, r_noise, train, rngs={"dropout": r_drop})
        num_dims = int(np.prod(x.shape[1:]))
        return uqdm_model.nelbo_metrics(terms, num_dims, prior_kl=bool(self.mcfg.prior_kl))


def make_method(config) -> UQDMMethod:
    return UQDMMethod(config)


def make_codec(config, params, **kwargs) -> "UQDMCodec":
    return UQDMCodec(config, params, **kwargs)


def initial_params(config, *, params_file=None):
    """Initial parameters of `config.model` (seed 0), or those of a flax msgpack file shaped like them.

    For scripts that work without a training workdir (benchmarks, RD sweeps of an exported model);
    a workdir is loaded with gencomp_jax.eval.loading.load_codec instead.
    """
    crop = int(config.data.crop_size)
    params = jax.jit(uqdm_model.UQDM(uqdm_model.model_config(config.model)).init)(
        {"params": jax.random.PRNGKey(0)}, jnp.zeros((1, crop, crop, 3)), jax.random.PRNGKey(1))
    if params_file:
        params = flax.serialization.from_bytes(params, pathlib.Path(params_file).read_bytes())
    return params


# ---------------------------------------------------------------------------------------------------
# Codec


def table_grid(loc, scale, width, *, loc_bits: int = LOC_GRID_BITS, scale_bits: int = SCALE_GRID_BITS):
    """Grid indexes of DQ coding parameters: (kt, ks) int64, like loc.

    In units of the step width Delta (width, a scalar): ks = round(2^scale_bits log2(scale / Delta)),
    kt = round((loc / Delta) / spacing) with spacing = 2^(ks / 2^scale_bits - loc_bits), i.e. the quantized
    scale / 2^loc_bits. Pure float64 NumPy on float32 inputs (no XLA), so both sides agree whenever their
    inputs agree to well within half a grid step.
    """
    d = np.float64(np.float32(width))
    s = np.asarray(scale, np.float32).astype(np.float64) / d
    ks = np.clip(np.rint(np.log2(np.maximum(s, 1e-300)) * (1 << scale_bits)), -_SCALE_GRID_RANGE, _SCALE_GRID_RANGE)
    spacing = np.exp2(ks / (1 << scale_bits) - loc_bits)
    kt = np.rint(np.asarray(loc, np.float32).astype(np.float64) / d / spacing)
    return kt.astype(np.int64), ks.astype(np.int64)


def grid_values(kt, ks, width, *, loc_bits: int = LOC_GRID_BITS, scale_bits: int = SCALE_GRID_BITS):
    """(loc, scale) float32 of grid indexes from `table_grid` (what both sides build the tables from)."""
    d = np.float64(np.float32(width))
    s = np.exp2(np.asarray(ks, np.float64) / (1 << scale_bits))
    t = np.asarray(kt, np.float64) * s * 2.0 ** -loc_bits
    return (t * d).astype(np.float32), (s * d).astype(np.float32)


def _bucket(h: int) -> int:
    for b in _HALF_WIDTH_BUCKETS:
        if h <= b:
            return b
    return _HALF_WIDTH_BUCKETS[-1]


class UQDMCodec(progressive.ProgressiveBase):
    """Progressive UQDM codec (ProgressiveCodec protocol, codecs/progressive.py).

    compress(image, *, seed=None, lossless=True) -> bytes: T step segments (+ the X_0 segment).
    decompress(data, *, steps=None, reconstruction="denoise") -> uint8 [H, W, 3]
        steps: segments to use (0..T, or T+1 with the lossless segment: exact); None = all in the
        file (a truncated file decodes its complete segments).
        reconstruction: "denoise" (x_hat of the last z), "ancestral" (sample the remaining reverse
        steps with shared randomness) or "flow" (probability-flow / DDIM steps); all three equal the
        mode of p(x | z_0) once every diffusion step is received.
    step_bits / compress_with_bits / estimate_bits: ideal code lengths on the exact path of compress
        (a one-sample NELBO), see progressive.ProgressiveBase.
    """

    name = "uqdm"
    decode_options = (STEPS_OPTION, progressive.reconstruction_option(RECONSTRUCTIONS))
    meta_fields = ("diffusion_steps", "tile", "lossless", "tile_batch", "coding")
    meta_defaults = {"coding": CODING_FLOAT}
    compress_options = ("lossless",)

    def __init__(self, config, params, *, seed: int = DEFAULT_SEED, coding: int = CODING_GRID):
        """coding: the table coding of the files compress writes (CODINGS; decompress reads the file's)."""
        if coding not in CODINGS:
            raise ValueError(f"coding={coding!r}; use one of {CODINGS}")
        self.coding = int(coding)
        self.config = config
        self.mcfg = uqdm_model.model_config(config.model)
        self.grid = self.mcfg.data_grid  # the model's data grid (files of "edge" models decode as before)
        super().__init__(params, tile=int(self.mcfg.tile_size), tile_batch=int(self.mcfg.get("tile_batch", 1)),
                         seed=seed)
        if not self.tile:
            raise ValueError("config.model.tile_size must be > 0 for UQDM (its network sees fixed-size tiles)")
        self.model = uqdm_model.UQDM(self.mcfg)
        self.T = int(self.mcfg.diffusion_steps)
        self.family = self.mcfg.family
        self._gammas = np.asarray(self.model.apply(params, method=uqdm_model.UQDM.gammas), np.float32)
        self._gamma0 = jnp.float32(self._gammas[-1])
        self._widths = _step_widths(self._gammas)
        self._build_jits()

    # -- jitted pieces (step indices are traced int32: one compiled program serves every step) ------
    def _build_jits(self):
        model, grid = self.model, self.grid

        def reverse(params, z, i):
            p = model.apply(params, z, i, method=uqdm_model.UQDM.reverse)
            return p["loc"], p["scale"], p["width"], p["x_hat"]

        def posterior(params, z, x, i):
            g = model.apply(params, method=uqdm_model.UQDM.gammas)
            return uqdm_model.forward_posterior(z, x, g[i], g[i + 1])[0]

        def x0_tables(z0, gamma0, half):
            logp = losses.discrete_data_log_probs(z0, gamma0, grid=grid)
            c = losses.discrete_data_argmax(z0, gamma0, grid=grid)
            idx = c[:, None] + jnp.arange(-half, half + 1)[None, :]
            inside = (idx >= 0) & (idx <= 255)
            pm = jnp.where(inside, jnp.exp(jnp.take_along_axis(logp, jnp.clip(idx, 0, 255), axis=1)), 0.0)
            esc = jnp.maximum(1.0 - jnp.sum(pm, axis=1, keepdims=True), densities.MIN_PROB)
            return jnp.concatenate([pm, esc], axis=1), c - half

        def x0_bits(z0, gamma0, x_int):
            logp = losses.discrete_data_log_probs(z0, gamma0, grid=grid)
            return -jnp.take_along_axis(logp, x_int[..., None], axis=-1)[..., 0] / math.log(2.0)

        self._reverse = jax.jit(reverse)
        self._posterior = jax.jit(posterior)
        self._x0_tables = jax.jit(x0_tables, static_argnums=2)
        self._x0_bits = jax.jit(x0_bits)
        self._flow = jax.jit(lambda params, z, i: model.apply(params, z, i, method=uqdm_model.UQDM.flow_step))
        self._ancestral = jax.jit(
            lambda params, z, i, key: model.apply(params, z, i, key, method=uqdm_model.UQDM.ancestral_step))
        self._x0_argmax = jax.jit(lambda z0, gamma0: losses.discrete_data_argmax(z0, gamma0, grid=grid))

    def _net_reverse(self, z, i: int, batch: int):
        """(loc, scale, width, x_hat) of step i for all tiles of z, `batch` tiles per network call."""
        return progressive.map_tiles(lambda zc, c: self._reverse(self.params, zc, np.int32(i)), z, batch)

    def _step_model(self, ctx, z, i: int):
        """(loc, scale, width) of step i's reverse kernel as this file codes it, for every tile element
        (padded elements take loc as their next state): CODING_FLOAT the network's floats and the width of
        the jitted call; CODING_GRID the grid values (`_coding_params`) and the width from NumPy."""
        loc, scale, width, _ = self._net_reverse(z, i, ctx.layout.batch)
        if ctx.meta["coding"] == CODING_FLOAT:
            return loc, scale, width
        width = self._widths[i]
        return (*self._coding_params(loc, scale, width), width)

    def _coding_params(self, loc, scale, width):
        """Grid values of the network's (loc, scale): what CODING_GRID builds its tables from."""
        return grid_values(*table_grid(loc, scale, width), width)

    def _dither(self, ctx, i: int, width):
        """Shared dither w ~ U(-Delta/2, Delta/2) of step i (all tile elements)."""
        return dq.dither(ctx.shared.key(randomness.PURPOSE_DQ, i), ctx.layout.tiles_shape, width)

    def _x0_half_width(self) -> int:
        std = math.exp(0.5 * float(self._gammas[-1])) * 127.5  # std of z_0/alpha_0 in grid units
        return _bucket(min(math.ceil(_X0_STD_MULTIPLE * std) + 1, 127))

    def _x0_spans(self, n: int):
        return [(s, min(s + CHUNK, n)) for s in range(0, max(n, 1), CHUNK)]

    def _x0_pmfs(self, z0_v, half, start, end):
        pmf, off = self._x0_tables(z0_v[start:end], self._gamma0, half)
        return coder.quantize_pmf(np.asarray(pmf), X0_TABLE_PRECISION), np.asarray(off, np.int64)

    # -- progressive hooks ---------------------------------------------------------------------------
    def _meta(self, *, lossless: bool = True):
        return {"diffusion_steps": self.T, "lossless": int(bool(lossless)), "coding": self.coding}

    def _check_meta(self, meta):
        if meta["diffusion_steps"] != self.T or meta["tile"] != self.tile:
            raise bitstream.BitstreamError(
                f"this UQDM file was written with T={meta['diffusion_steps']} steps and tile {meta['tile']}, "
                f"but the loaded config has T={self.T}, tile {self.tile}: load the config the file was made with")
        if meta["lossless"] not in (0, 1) or not meta["tile"] or meta["coding"] not in CODINGS:
            raise bitstream.BitstreamError("corrupted UQDM file: bad header meta")
        super()._check_meta(meta)

    def num_segments(self, meta) -> int:
        return meta["diffusion_steps"] + meta["lossless"]

    def _encode_step(self, ctx, i, z, *, code):
        if i == self.T:                                       # lossless: X_0 under p(x | z_0)
            z0_v, = ctx.at_valid(z)
            xi_v = ctx.image[ctx.valid].astype(np.int64)
            bits = float(np.sum(np.asarray(self._x0_bits(jnp.asarray(z0_v), self._gamma0,
                                                         jnp.asarray(xi_v, jnp.int32)))))
            ctx.checks[i] = bitstream.content_check(xi_v)
            seg = None
            if code:
                half = self._x0_half_width()
                chunks = []
                for s, e in self._x0_spans(xi_v.size):
                    pmfs, offs = self._x0_pmfs(z0_v, half, s, e)
                    chunks.append(coder.encode_per_symbol(xi_v[s:e], pmfs, offs))
                seg = join_streams(chunks)
            return seg, z, bits
        loc, scale, width = self._step_model(ctx, z, i)
        mu = self._posterior(self.params, z, ctx.x, np.int32(i))
        w = self._dither(ctx, i, width)
        loc_v, scale_v, mu_v, w_v = ctx.at_valid(loc, scale, mu, w)
        seg = None
        if code:
            seg, y_v = dq.dq_encode(mu_v, loc_v, scale_v, width, w=w_v, family=self.family)
        else:
            y_v = dq.dq_reconstruct(dq.dq_quantize(mu_v, w_v, width), w_v, width)
        bits = float(np.sum(np.asarray(
            dq.dq_rate_proxy_bits(y_v, loc_v, scale_v, width, family=self.family), np.float64)))
        ctx.checks[i] = _dq_check(y_v, w_v, width)
        return seg, progressive.scatter_valid(loc, ctx.valid, y_v), bits

    def _decode_step(self, ctx, i, z, segment):
        if i == self.T:                                       # lossless: the state becomes the pixels
            z0_v, = ctx.at_valid(z)
            half = self._x0_half_width()
            spans = self._x0_spans(z0_v.size)
            try:
                parts = split_streams(segment, len(spans))
            except VarintError:
                raise bitstream.BitstreamError("corrupted UQDM file: bad X_0 segment") from None
            xi = np.empty(z0_v.size, np.int64)
            for (s, e), part in zip(spans, parts):
                pmfs, offs = self._x0_pmfs(z0_v, half, s, e)
                xi[s:e] = coder.decode_per_symbol(part, pmfs, offs)
            if np.any((xi < 0) | (xi > 255)):
                raise coder.CodingError("corrupted UQDM file: decoded pixel value outside [0, 255]")
            ctx.checks[i] = bitstream.content_check(xi)
            x_int = np.zeros(ctx.layout.tiles_shape, np.uint8)
            x_int[ctx.valid] = xi
            return x_int
        loc, scale, width = self._step_model(ctx, z, i)
        w = self._dither(ctx, i, width)
        loc_v, scale_v, w_v = ctx.at_valid(loc, scale, w)
        y_v = dq.dq_decode(segment, loc_v, scale_v, width, w=w_v, family=self.family)
        ctx.checks[i] = _dq_check(y_v, w_v, width)
        return progressive.scatter_valid(loc, ctx.valid, y_v)

    def _reconstruct(self, ctx, z, steps, *, reconstruction):
        if steps > self.T:                                    # the lossless segment: exact pixels
            return z
        if steps == self.T:
            return np.asarray(self._x0_argmax(z, self._gamma0))
        if reconstruction == "denoise":
            x_hat = self._net_reverse(z, steps, ctx.layout.batch)[3]
            return images.to_uint8(x_hat, grid=self.grid)
        for i in range(steps, self.T):
            if reconstruction == "flow":
                fn = lambda zc, c: self._flow(self.params, zc, np.int32(i))  # noqa: E731
            else:
                fn = lambda zc, c: self._ancestral(  # noqa: E731
                    self.params, zc, np.int32(i), ctx.shared.key(*_PATH_ANCESTRAL, i, c))
            z = progressive.map_tiles(fn, z, ctx.layout.batch)
        return np.asarray(self._x0_argmax(z, self._gamma0))


def _step_widths(gammas) -> np.ndarray:
    """float32 [T]: Delta_i = sigma_s sqrt(12 e) of each step (models/uqdm.forward_posterior), in float64
    NumPy from the float32 schedule values (no XLA: the same bits under any thread count or XLA flag)."""
    g = np.asarray(gammas, np.float32).astype(np.float64)
    g_t, g_s = g[:-1], g[1:]
    e = -np.expm1(g_s - g_t)
    sigma_s = np.sqrt(1.0 / (1.0 + np.exp(-g_s)))
    return (sigma_s * np.sqrt(12.0 * e)).astype(np.float32)


def _dq_check(y_v, w_v, width) -> int:
    """Segment check of a DQ step: its integers k = (y + w) / width (y = k * width - w), which the decoder
    reproduces exactly iff it decoded the encoder's symbols."""
    k = np.rint((np.asarray(y_v, np.float64) + np.asarray(w_v, np.float64)) / np.asarray(width, np.float64))
    return bitstream.content_check(k.astype(np.int64))


register("uqdm", method=make_method, codec=make_codec, codec_id=2, decode_options=UQDMCodec.decode_options)
