"""One progressive base for codecs that send one container segment per step (UQDM, DiffC).

Algorithm 1 of the review as a file: the receiver draws X_T from the shared randomness at zero rate,
each received segment advances the state by one step, and an image is reconstructed from whatever
state the receiver has. Any prefix of complete segments decodes. `ProgressiveBase` owns everything
that is the same for every such codec; a subclass implements only the per-step encode/decode and the
reconstruction.

What the base owns
  file       codecs/bitstream.py container: header.seed = the u64 seed of the shared randomness
             (never 0), header.meta = the varints named by `meta_fields` (entropy/varint.py), in that
             order; segment i = step i (0-based). `tile` and `tile_batch` are always among the fields.
             Fields added after files were written go last, with a value in `meta_defaults` that
             means "as before": a trailing run of fields at their defaults is not written, and a
             meta that ends before them reads as the defaults (old files decode as written, and a
             file written in the old way is byte-identical to one written before the field existed).
  tiling     `Layout`: the image is edge-padded and split into tiles of `tile` x `tile` pixels
             (tile = 0: the whole image in one piece, padded to a multiple of `stride`). The network
             always runs on chunks of exactly `tile_batch` tiles (`map_tiles`: the canonical shape, so
             encoder and decoder compute bit-identical floats for any image size; stored in the file).
             `ctx.valid` marks the original pixels: padded elements are never transmitted.
  decoding   `decompress(data, *, steps=None, **decode_options)`: options checked with
             base.check_options; steps = 0 decodes X_T only; a truncated file decodes its complete
             segments; steps beyond them is a ValueError.
  checks     a step that records `ctx.checks[i] = bitstream.content_check(...)` of what the decoder must
             reproduce (its decoded integers), on both sides, gets a checked segment (container format
             version 2): the base verifies it after each decoded step and turns a step that fails to
             decode into bitstream.DecodeMismatchError (the bytes are intact, the models differ).
  rates      `truncate(data, *, steps)` = bitstream.prefix; `rate_points()` = steps 0..K x every
             choice of each decode option that declares `choices` (e.g. reconstruction);
             `step_bits(image)` = ideal bits per segment from one pure forward pass (no coding, no
             cache); `compress_with_bits(image)` = (file, step bits) from the one encoding pass;
             `estimate_bits(image, *, steps=None, **options)` = sum of the first `steps` step bits
             (`bits_at(step_bits, **options)` gives it from bits already computed).

Subclass contract (all methods receive a `StepContext` ctx: layout, valid mask, shared randomness,
seed, meta dict, and on the encoder the image tiles as uint8 `ctx.image` and model floats `ctx.x`
on the codec's data grid `grid`):

    class MyCodec(ProgressiveBase):
        name = "mycodec"                                   # registered codec name
        decode_options = (STEPS_OPTION, reconstruction_option())
        meta_fields = ("steps", "tile", "tile_batch")      # header meta varints, file order
        meta_defaults = {}                                 # optional trailing fields -> "as before" value
        compress_options = ()                              # extra keywords of compress (e.g. "lossless")

        def __init__(self, config, params):
            super().__init__(params, tile=..., tile_batch=..., stride=..., seed=...)
        def _meta(self, **compress_options) -> dict[str, int]     # fields other than tile/tile_batch
        def _check_meta(self, meta) -> None                        # BitstreamError if the file does not
                                                                   # fit the loaded model (call super())
        def num_segments(self, meta) -> int                        # segments of a complete file
        def _initial_state(self, ctx) -> state                     # default: X_T ~ N(0, I) from the seed
        def _encode_step(self, ctx, i, state, *, code) -> (segment bytes | None, state, ideal bits)
        def _decode_step(self, ctx, i, state, segment) -> state
        def _reconstruct(self, ctx, state, steps, **options) -> uint8 tiles [N, th, tw, 3]

`state` is opaque to the base (e.g. z_t as float tiles; UQDM's lossless last step makes it the decoded
pixels). `_encode_step(code=False)` must follow the exact path of `code=True` without entropy coding
(it gives `step_bits`). Randomness: use `ctx.shared.key(PURPOSE, step, chunk)` paths (channel/
randomness.py); `PATH_PRIOR` is X_T's.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel import randomness
from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import STEPS_OPTION, DecodeOption, check_options
from gencomp_jax.data import images
from gencomp_jax.entropy.coder import CodingError
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

RECONSTRUCTIONS = ("denoise", "ancestral", "flow")
DEFAULT_SEED = 0x5EED_0F_0D_15C  # any non-zero u64; override with compress(..., seed=)
PATH_PRIOR = (randomness.PURPOSE_PRIOR, 0)    # X_T
_LAYOUT_FIELDS = ("tile", "tile_batch")


def reconstruction_option(choices=RECONSTRUCTIONS, default: str = "denoise") -> DecodeOption:
    """The `reconstruction` decode option of a progressive diffusion codec."""
    return DecodeOption(
        "reconstruction", str, default,
        "image from the last received step: denoise (one network call), ancestral (sample the "
        "remaining reverse steps) or flow (probability-flow / DDIM steps)", choices=tuple(choices))


# ---------------------------------------------------------------------------------------------------
# Tiling and fixed-shape batching


@dataclasses.dataclass(frozen=True)
class Layout:
    """How an image maps onto the pieces the network sees.

    shape: (H, W, 3) of the original image; tile_h x tile_w: size of one piece; nh x nw pieces;
    batch: pieces per network call (the canonical shape). Build with `Layout.make`.
    """

    shape: tuple[int, int, int]
    tile_h: int
    tile_w: int
    nh: int
    nw: int
    batch: int = 1

    @classmethod
    def make(cls, shape, *, tile: int | None, stride: int = 1, batch: int = 1) -> "Layout":
        """tile > 0: square tiles of that size (a multiple of stride); tile 0 / None: the whole image
        as one piece, padded to a multiple of `stride`."""
        h, w = int(shape[0]), int(shape[1])
        tile, stride, batch = int(tile or 0), int(stride), int(batch)
        if batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {batch}")
        if not tile:
            ph, pw = images.padded_size(h, w, stride)
            return cls((h, w, 3), ph, pw, 1, 1, 1)
        if tile % stride:
            raise ValueError(f"tile size {tile} must be a multiple of the network's stride {stride}")
        return cls((h, w, 3), tile, tile, -(-h // tile), -(-w // tile), batch)

    @property
    def whole(self) -> bool:
        return self.nh * self.nw == 1

    @property
    def tiles_shape(self) -> tuple[int, int, int, int]:
        return (self.nh * self.nw, self.tile_h, self.tile_w, 3)

    def pad(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> [nh * tile_h, nw * tile_w, 3], edge-padded at the bottom and right."""
        h, w = image.shape[:2]
        return np.pad(image, ((0, self.nh * self.tile_h - h), (0, self.nw * self.tile_w - w), (0, 0)),
                      mode="edge")

    def to_tiles(self, a) -> np.ndarray:
        """[nh * tile_h, nw * tile_w, C] -> [nh * nw, tile_h, tile_w, C] (row-major tile order)."""
        a = np.asarray(a)
        th, tw, c = self.tile_h, self.tile_w, a.shape[-1]
        return a.reshape(self.nh, th, self.nw, tw, c).transpose(0, 2, 1, 3, 4).reshape(-1, th, tw, c)

    def from_tiles(self, a) -> np.ndarray:
        """Inverse of to_tiles, cropped to the original H x W."""
        a = np.asarray(a)
        th, tw, c = self.tile_h, self.tile_w, a.shape[-1]
        full = a.reshape(self.nh, self.nw, th, tw, c).transpose(0, 2, 1, 3, 4).reshape(
            self.nh * th, self.nw * tw, c)
        return images.unpad(full, self.shape)

    def valid(self) -> np.ndarray:
        """bool tiles [N, tile_h, tile_w, 3]: True on the original (unpadded) pixels."""
        h, w, _ = self.shape
        m = np.zeros((self.nh * self.tile_h, self.nw * self.tile_w, 3), bool)
        m[:h, :w] = True
        return self.to_tiles(m)


def map_tiles(fn: Callable, z, batch: int):
    """Applies fn(z_chunk [batch, ...], chunk_index) to chunks of exactly `batch` tiles of z [N, ...].

    The network always runs at the canonical shape [batch, ...] (the last chunk is zero-padded).
    XLA's float results for a tile can change in the last bit with the batch size (seen on XLA:CPU:
    batch 4 vs 1), but at a fixed shape they depend neither on the tile's position nor on the other
    tiles of the chunk; so a tile's numbers depend only on its own inputs, encoder and decoder agree
    for any image size, memory stays bounded and one compiled program serves all sizes.
    Returns the outputs concatenated along axis 0 (a tuple if fn returns one; 0-d outputs, e.g. a
    step width, are taken from the first chunk).
    """
    n = z.shape[0]
    outs = []
    for c, start in enumerate(range(0, n, batch)):
        zc = z[start:start + batch]
        if zc.shape[0] < batch:
            zc = jnp.concatenate([zc, jnp.zeros((batch - zc.shape[0],) + zc.shape[1:], zc.dtype)])
        outs.append(fn(zc, c))
    if isinstance(outs[0], tuple):
        return tuple(o[0] if jnp.ndim(o[0]) == 0 else jnp.concatenate(o)[:n] for o in zip(*outs))
    return jnp.concatenate(outs)[:n]


def scatter_valid(base, valid: np.ndarray, values) -> jax.Array:
    """`base` with its valid elements replaced by `values` (padded elements keep `base`)."""
    out = np.array(base)
    out[valid] = np.asarray(values)
    return jnp.asarray(out)


def segment_sizes(data: bytes) -> list[int]:
    """Bytes each complete segment of a (possibly truncated) file occupies (bitstream.framed_size);
    the bytes of a prefix of k segments are the header plus the first k of these."""
    header, segments = bitstream.unpack(data, allow_partial=True)
    return [bitstream.framed_size(s, checked=bool(header.checks)) for s in segments]


# ---------------------------------------------------------------------------------------------------
# The base


@dataclasses.dataclass
class StepContext:
    """What every step of one image sees (built by the base on both sides)."""

    layout: Layout
    valid: np.ndarray                    # bool tiles: original pixels
    shared: randomness.SharedRandomness  # from header.seed
    seed: int
    meta: dict[str, int]
    image: np.ndarray | None = None      # encoder only: uint8 tiles (edge-padded image)
    x: jax.Array | None = None           # encoder only: the same in model space (codec's grid)
    checks: dict[int, int] = dataclasses.field(default_factory=dict)  # step -> content_check (optional)

    def at_valid(self, *arrays) -> tuple[np.ndarray, ...]:
        """numpy values of each array at the valid elements (flattened)."""
        return tuple(np.asarray(a)[self.valid] for a in arrays)


class ProgressiveBase:
    """Base of progressive codecs (ProgressiveCodec protocol); see the module docstring."""

    name: ClassVar[str] = ""
    decode_options: ClassVar[tuple[DecodeOption, ...]] = (STEPS_OPTION,)
    meta_fields: ClassVar[tuple[str, ...]] = ("steps", "tile", "tile_batch")
    meta_defaults: ClassVar[dict[str, int]] = {}
    compress_options: ClassVar[tuple[str, ...]] = ()
    grid: ClassVar[str] = images.DEFAULT_GRID

    def __init__(self, params, *, tile: int | None, tile_batch: int = 1, stride: int = 1,
                 seed: int = DEFAULT_SEED):
        missing = [f for f in _LAYOUT_FIELDS if f not in self.meta_fields]
        if missing or not self.name:
            raise TypeError(f"{type(self).__name__}: set `name` and list {missing} in meta_fields")
        self.params = params
        self.fingerprint = bitstream.params_fingerprint(params)
        self.tile = int(tile or 0)
        self.stride = int(stride)
        self.tile_batch = int(tile_batch) if self.tile else 1
        self.seed = self._check_seed(seed)
        Layout.make((1, 1), tile=self.tile, stride=self.stride, batch=self.tile_batch)  # checks

    # -- hooks (see the module docstring) ----------------------------------------------------------
    def _meta(self, **compress_options) -> dict[str, int]:
        raise NotImplementedError

    def _check_meta(self, meta: dict[str, int]) -> None:
        if meta["tile"] != self.tile:
            raise bitstream.BitstreamError(
                f"this {self.name} file was written with tile size {meta['tile']}, but the loaded config "
                f"has {self.tile}: load the config the file was made with")
        if meta["tile_batch"] < 1 or (not meta["tile"] and meta["tile_batch"] != 1):
            raise bitstream.BitstreamError(f"corrupted {self.name} file: bad tile batch in the header")
        chunk = meta["tile_batch"] * meta["tile"] ** 2  # pixels of one network call (padded with zero tiles)
        if chunk > bitstream.pixel_limit():
            raise bitstream.BitstreamError(
                f"{self.name} file: {meta['tile_batch']} tiles of {meta['tile']}x{meta['tile']} per network call "
                f"({chunk} pixels) exceed the limit of {bitstream.pixel_limit()} pixels: refused before decoding "
                f"(a corrupted header, or raise {bitstream.MAX_PIXELS_ENV} if you trust the file)")

    def num_segments(self, meta: dict[str, int]) -> int:
        raise NotImplementedError

    def _initial_state(self, ctx: StepContext):
        return ctx.shared.normal(PATH_PRIOR, ctx.layout.tiles_shape)

    def _encode_step(self, ctx: StepContext, i: int, state, *, code: bool):
        raise NotImplementedError

    def _decode_step(self, ctx: StepContext, i: int, state, segment: bytes):
        raise NotImplementedError

    def _reconstruct(self, ctx: StepContext, state, steps: int, **options) -> np.ndarray:
        raise NotImplementedError

    # -- header meta --------------------------------------------------------------------------------
    def full_meta(self, **compress_options) -> dict[str, int]:
        """All meta fields of a file written by `compress(**compress_options)`."""
        meta = {"tile": self.tile, "tile_batch": self.tile_batch, **self._meta(**compress_options)}
        if set(meta) != set(self.meta_fields):
            raise TypeError(f"{type(self).__name__}._meta must give {self.meta_fields}, gave {sorted(meta)}")
        return meta

    def _written_fields(self, meta: dict[str, int]) -> tuple[str, ...]:
        """meta_fields without the trailing run of optional fields at their defaults."""
        fields = list(self.meta_fields)
        while fields and fields[-1] in self.meta_defaults and meta[fields[-1]] == self.meta_defaults[fields[-1]]:
            fields.pop()
        return tuple(fields)

    def _pack_meta(self, meta: dict[str, int]) -> bytes:
        return b"".join(write_varint(meta[f]) for f in self._written_fields(meta))

    def _parse_meta(self, data: bytes) -> dict[str, int]:
        meta, pos = {}, 0
        try:
            for f in self.meta_fields:
                if pos == len(data) and f in self.meta_defaults:  # an optional field the file predates
                    meta[f] = self.meta_defaults[f]
                    continue
                meta[f], pos = read_varint(data, pos)
        except VarintError:
            pos = -1
        if pos != len(data):
            raise bitstream.BitstreamError(f"corrupted {self.name} file: bad header meta")
        return meta

    # -- shared pieces ------------------------------------------------------------------------------
    @staticmethod
    def _check_seed(seed) -> int:
        seed = int(seed)
        if not 0 < seed < 2**64:
            raise ValueError(f"seed must be in [1, 2**64), got {seed}")
        return seed

    def layout(self, shape, meta: dict[str, int] | None = None) -> Layout:
        meta = meta or {"tile": self.tile, "tile_batch": self.tile_batch}
        return Layout.make(shape, tile=meta["tile"], stride=self.stride, batch=meta["tile_batch"])

    def _context(self, shape, seed: int, meta: dict[str, int], image=None) -> StepContext:
        layout = self.layout(shape, meta)
        ctx = StepContext(layout=layout, valid=layout.valid(), shared=randomness.SharedRandomness(seed),
                          seed=seed, meta=meta)
        if image is not None:
            ctx.image = layout.to_tiles(layout.pad(image))
            ctx.x = images.to_model(ctx.image, grid=self.grid)
        return ctx

    def _split_options(self, kwargs) -> tuple[dict, dict]:
        comp = {k: v for k, v in kwargs.items() if k in self.compress_options}
        return comp, {k: v for k, v in kwargs.items() if k not in self.compress_options}

    # -- encoding -----------------------------------------------------------------------------------
    def _encode(self, image, seed, compress_options, *, code: bool):
        image = images.check_image(image, name=f"{self.name} codec input")
        seed = self.seed if seed is None else self._check_seed(seed)
        meta = self.full_meta(**compress_options)
        ctx = self._context(image.shape, seed, meta, image)
        state = self._initial_state(ctx)
        segments, bits = [], []
        for i in range(self.num_segments(meta)):
            seg, state, b = self._encode_step(ctx, i, state, code=code)
            segments.append(seg)
            bits.append(float(b))
        if not code:
            return None, bits
        checks = tuple(ctx.checks[i] for i in range(len(segments))) if len(ctx.checks) == len(segments) else ()
        header = bitstream.Header(codec=self.name, params_hash=self.fingerprint,
                                  image_shape=tuple(int(s) for s in image.shape), seed=seed,
                                  meta=self._pack_meta(meta), checks=checks)
        return bitstream.pack(header, segments), bits

    def compress_with_bits(self, image, *, seed: int | None = None, **compress_options
                           ) -> tuple[bytes, list[float]]:
        """(file, ideal bits of each segment) from one encoding pass (evaluation uses both)."""
        return self._encode(image, seed, compress_options, code=True)

    def compress(self, image, *, seed: int | None = None, **compress_options) -> bytes:
        """uint8 [H, W, 3] -> gencomp file, one segment per step."""
        return self.compress_with_bits(image, seed=seed, **compress_options)[0]

    def step_bits(self, image, *, seed: int | None = None, **compress_options) -> list[float]:
        """Ideal bits (-sum log2 P of the coded symbols) of each segment on the exact path of
        `compress(image, seed=seed, **compress_options)`; runs the steps without entropy coding."""
        return self._encode(image, seed, compress_options, code=False)[1]

    def estimate_bits(self, image, *, steps: int | None = None, seed: int | None = None, **options) -> float:
        """Model estimate of the bits of `compress(image)` decoded with `steps` (default: all) segments:
        the sum of their ideal bits (a one-sample NELBO, no header, framing or coder overhead).
        Other decode options (e.g. reconstruction) are checked and do not change the rate; keywords
        in `compress_options` select the file (e.g. lossless=False)."""
        comp, decode = self._split_options(options)
        return self.bits_at(self.step_bits(image, seed=seed, **comp), steps=steps, **decode)

    def bits_at(self, step_bits, *, steps: int | None = None, **options) -> float:
        """The estimate of a rate point from step bits already computed (e.g. by compress_with_bits):
        evaluation calls compress_with_bits once per image and this per rate point, instead of
        estimate_bits (one forward pass per call)."""
        steps = check_options(self, {"steps": steps, **options})["steps"]
        return float(sum(step_bits if steps is None else step_bits[:steps]))

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, data: bytes, *, steps: int | None = None) -> tuple[StepContext, Any, int]:
        """Parses a (possibly truncated) file and runs its first `steps` steps (default: all complete
        segments). Returns (ctx, state, steps used)."""
        header, segments = bitstream.unpack(data, codec=self.name, params_hash=self.fingerprint,
                                            allow_partial=True)
        meta = self._parse_meta(header.meta)
        self._check_meta(meta)
        total = self.num_segments(meta)
        if header.num_segments != total:
            raise bitstream.BitstreamError(f"corrupted {self.name} file: {header.num_segments} segments "
                                           f"declared, its header meta says {total}")
        steps = len(segments) if steps is None else int(steps)
        if not 0 <= steps <= total:
            raise ValueError(f"steps must be in [0, {total}] for this file, got {steps}")
        if steps > len(segments):
            raise ValueError(f"steps={steps} asked for, but only {len(segments)} complete segments are in "
                             "the data (a truncated file); decode with steps <= that")
        ctx = self._context(header.image_shape, header.seed, meta)
        state = self._initial_state(ctx)
        for i in range(steps):
            try:
                state = self._decode_step(ctx, i, state, segments[i])
            except CodingError as e:
                if header.checks:
                    raise bitstream.mismatch(header, i, f"step {i + 1} does not decode with this model ({e})"
                                             ) from None
                raise
            if header.checks and i in ctx.checks:
                bitstream.verify(header, i, ctx.checks[i], what=f"the decoded symbols of step {i + 1}")
        return ctx, state, steps

    def decompress(self, data: bytes, *, steps: int | None = None, **options) -> np.ndarray:
        """File (or a prefix of complete segments) -> uint8 [H, W, 3] from its first `steps` segments
        (default: all present; 0 = X_T only), reconstructed with the decode options."""
        opts = check_options(self, {"steps": steps, **options})
        ctx, state, used = self.decode(data, steps=opts.pop("steps"))
        tiles = self._reconstruct(ctx, state, used, **opts)
        return np.ascontiguousarray(ctx.layout.from_tiles(np.asarray(tiles, np.uint8)))

    # -- progressive helpers ------------------------------------------------------------------------
    def truncate(self, data: bytes, *, steps: int | None = None, **options) -> bytes:
        """The prefix of `data` a receiver has after `steps` segments (bitstream.prefix):
        decompress(truncate(d, steps=k)) == decompress(d, steps=k). Other decode options are checked
        and ignored (they do not change the bytes)."""
        steps = check_options(self, {"steps": steps, **options})["steps"]
        if steps is None:
            steps = len(bitstream.unpack(data, codec=self.name, allow_partial=True)[1])
        return bitstream.prefix(data, steps)

    def rate_points(self, **choices) -> list[dict[str, Any]]:
        """Decode options of an RD sweep of one file: steps = 0..K (K = segments of a default file)
        for every combination of the choices of each decode option that declares choices (outer
        loops, in declaration order). choices: option name -> the values to sweep (default: all)."""
        swept = [o for o in self.decode_options if o.choices]
        names = [o.name for o in swept]
        unknown = set(choices) - set(names)
        if unknown:
            raise ValueError(f"rate_points: no decode option with choices named {sorted(unknown)}; "
                             f"options with choices: {names}")
        values = []
        for o in swept:
            vals = tuple(choices.get(o.name, o.choices))
            for v in vals:
                o.check(v)
            values.append(vals)
        total = self.num_segments(self.full_meta())
        return [{"steps": k, **dict(zip(names, combo))}
                for combo in itertools.product(*values) for k in range(total + 1)]
