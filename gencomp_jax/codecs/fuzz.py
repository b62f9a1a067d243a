"""A structure-aware fuzzer for gencomp files and image files: decoders fail loudly or decode, never crash.

What a decoder of untrusted bytes must do (issue 16): return an image or raise one of the library's
errors (a ValueError or OSError raised by gencomp_jax code: BitstreamError, CodingError, OptionError,
ImageError, ...), within a time limit and bounded memory. Anything else (an IndexError from numpy, a
MemoryError, a hang, a killed process) is a bug this module finds.

Mutations of a gencomp file (`mutate`): the file is split into its fields (`parse_raw`) and rebuilt
with valid CRCs (`raw_pack`, which, unlike bitstream.pack, writes any field value), so the mutation
reaches the codec instead of stopping at a checksum:
    header   image shape (small and huge), seed, meta bytes, declared segment count, codec id,
             flags, version, segment checks
    payload  bit flips, random bytes, truncation, extension, zeroing, emptying one segment
    segments drop, duplicate, swap, splice in a segment of another file, cut the list
    raw      bit flips / truncation / insertion in the whole file (the CRCs must catch these)
PNG files (`mutate_png`): IHDR fields (width, height, bit depth, colour type) and chunk data with
recomputed chunk CRCs, plus raw mutations.

Running cases: `run_cases(decode, cases, timeout_s=)` runs them in this process with a watchdog
(SIGALRM: a case over the limit is recorded as a hang); `Worker` runs them in a child process
(a hang or a killed process cannot take the caller down; peak memory is the child's max RSS). Both
return `Outcome`s; `summarize` counts them. `codec_target(name)` builds a tiny random-init codec of a
registered method from its runlocal config (`TINY` shrinks the networks) and the seed files it wrote;
experiments/fuzz.py runs long campaigns with it.
"""

from __future__ import annotations

import binascii
import collections
import dataclasses
import os
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from gencomp_jax.codecs import base, bitstream
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../gencomp_jax


# ---------------------------------------------------------------------------------------------------
# The container's fields, written without validation


@dataclasses.dataclass
class RawFile:
    """Every field of a gencomp file as raw values (no validation): what `raw_pack` writes."""

    version: int
    codec_id: int
    flags: int
    params_hash: bytes
    shape: tuple[int, ...]
    seed: int
    meta: bytes
    num_segments: int
    segments: list[bytes]
    checks: list[int]


def parse_raw(data: bytes) -> RawFile:
    """A valid (possibly partial) gencomp file -> its fields (bitstream.unpack checks it first)."""
    header, segments = bitstream.unpack(data, allow_partial=True, max_pixels=2**62)
    flags = (1 if header.seed else 0) | (2 if header.meta else 0) | (4 if header.checks else 0)
    return RawFile(version=header.version, codec_id=base.codec_id(header.codec), flags=flags,
                   params_hash=header.params_hash, shape=tuple(header.image_shape), seed=header.seed,
                   meta=header.meta, num_segments=header.num_segments, segments=list(segments),
                   checks=list(header.checks))


def raw_pack(f: RawFile) -> bytes:
    """Writes the fields as the container does, with valid CRC-16 and CRC-32s, whatever their values."""
    out = bytearray(bitstream.MAGIC) + bytes([f.version & 255, f.codec_id & 255, f.flags & 255])
    out += bytes(f.params_hash)
    for s in f.shape:
        out += write_varint(s)
    if f.flags & 1:
        out += struct.pack("<Q", f.seed % 2**64)
    if f.flags & 2:
        out += write_varint(len(f.meta)) + bytes(f.meta)
    out += write_varint(f.num_segments)
    out += struct.pack("<H", binascii.crc_hqx(bytes(out), 0))
    for i, seg in enumerate(f.segments):
        check = struct.pack("<I", f.checks[i] % 2**32) if f.flags & 4 and i < len(f.checks) else b""
        out += write_varint(len(seg)) + struct.pack("<I", zlib.crc32(check + seg)) + check + seg
    return bytes(out)


# ---------------------------------------------------------------------------------------------------
# Mutations


def _flip_bits(b: bytes, rng, count: int | None = None) -> bytes:
    if not b:
        return b
    a = bytearray(b)
    for _ in range(count or int(rng.integers(1, 4))):
        a[int(rng.integers(len(a)))] ^= 1 << int(rng.integers(8))
    return bytes(a)


def _random_bytes(rng, n: int) -> bytes:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _bytes_mutation(b: bytes, rng) -> bytes:
    """One generic mutation of a byte string."""
    k = int(rng.integers(8))
    n = len(b)
    if k == 0 or n == 0 and k < 5:
        return _flip_bits(b, rng) if n else _random_bytes(rng, int(rng.integers(1, 9)))
    if k == 1:
        i = int(rng.integers(n))
        return b[:i] + _random_bytes(rng, min(n - i, int(rng.integers(1, 9)))) + b[i + 8:]
    if k == 2:
        return b[:int(rng.integers(n))]
    if k == 3:
        return b + (_random_bytes(rng, int(rng.integers(1, 33))) if rng.integers(2) else b"\0" * int(rng.integers(1, 33)))
    if k == 4:
        i = int(rng.integers(n))
        return b[:i] + bytes(min(n - i, int(rng.integers(1, 17)))) + b[i + 16:]
    if k == 5:
        return b""
    if k == 6:
        return _random_bytes(rng, max(1, n))
    i = int(rng.integers(n + 1))
    return b[:i] + _random_bytes(rng, int(rng.integers(1, 5))) + b[i:]


_HUGE = (0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 255, 4097, 65535, 2**20, 2**24, 2**31, 2**32 + 1, 2**62)


def _shape_mutation(shape, rng) -> tuple[int, ...]:
    shape = list(shape)
    k = int(rng.integers(5))
    if k == 0:  # a small change (same or a neighbouring padded size)
        i = int(rng.integers(2))
        shape[i] = max(0, shape[i] + int(rng.integers(-20, 21)))
    elif k == 1:  # a huge or degenerate side
        shape[int(rng.integers(3))] = int(rng.choice(_HUGE))
    elif k == 2:  # the hostile headers
        shape = list([(65535, 65535, 3), (2**20, 2**20, 3), (64, 2**24, 3)][int(rng.integers(3))])
    elif k == 3:  # the limit's edge
        h = int(rng.integers(1, 2**13))
        shape = [h, bitstream.pixel_limit() // h + int(rng.integers(0, 2)), 3]
    else:
        shape = [shape[1], shape[0], shape[2]]
    if rng.integers(4) == 0:
        shape.append(int(rng.integers(1, 9)))  # a fourth varint: shifts everything after it
    return tuple(shape)


def _varint_meta_mutation(meta: bytes, rng) -> bytes:
    """Rewrites one varint of a meta made of varints (progressive codecs) to an edge value."""
    values, pos = [], 0
    try:
        while pos < len(meta):
            v, pos = read_varint(meta, pos)
            values.append(v)
    except VarintError:
        return _bytes_mutation(meta, rng)
    if not values:
        return write_varint(int(rng.choice(_HUGE)))
    i = int(rng.integers(len(values)))
    values[i] = int(rng.choice(_HUGE)) if rng.integers(2) else max(0, values[i] + int(rng.integers(-3, 4)))
    return b"".join(write_varint(v) for v in values)


HEADER_KINDS = ("shape", "seed", "meta", "meta_varint", "num_segments", "codec_id", "flags", "version",
                "params_hash", "checks")
PAYLOAD_KINDS = ("payload",)
SEGMENT_KINDS = ("drop", "duplicate", "swap", "splice", "cut_list")
RAW_KINDS = ("raw_flip", "raw_truncate", "raw_insert")
KINDS = HEADER_KINDS + PAYLOAD_KINDS + SEGMENT_KINDS + RAW_KINDS


def mutate(data: bytes, rng, *, kind: str | None = None, donors: tuple[bytes, ...] = ()) -> tuple[str, bytes]:
    """One mutation of a valid gencomp file -> (kind, mutated bytes); see the module docstring.

    kind: one of KINDS (default: drawn with payload and header mutations most frequent);
    donors: other valid files whose segments `splice` mixes in."""
    if kind is None:
        weights = np.array([3, 1, 1, 2, 1, 1, 1, 1, 1, 1] + [8] + [1, 1, 1, 2, 1] + [1, 1, 1], np.float64)
        kind = KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]
    if kind in RAW_KINDS:
        if kind == "raw_flip":
            return kind, _flip_bits(data, rng)
        if kind == "raw_truncate":
            return kind, data[:int(rng.integers(len(data)))]
        i = int(rng.integers(len(data) + 1))
        return kind, data[:i] + _random_bytes(rng, int(rng.integers(1, 5))) + data[i:]
    f = parse_raw(data)
    segs = f.segments
    if kind == "shape":
        f.shape = _shape_mutation(f.shape, rng)
    elif kind == "seed":
        f.flags |= 1
        f.seed = int(rng.choice([0, 1, 2**64 - 1, int(rng.integers(2**63))]))
        if f.seed == 0:
            f.flags &= ~1
    elif kind == "meta":
        f.meta = _bytes_mutation(f.meta, rng)
        f.flags = (f.flags | 2) if f.meta else (f.flags & ~2)
    elif kind == "meta_varint":
        f.meta = _varint_meta_mutation(f.meta, rng)
        f.flags = (f.flags | 2) if f.meta else (f.flags & ~2)
    elif kind == "num_segments":
        f.num_segments = int(rng.choice([0, 1, max(0, f.num_segments - 1), f.num_segments + 1, 2**20, 2**40]))
    elif kind == "codec_id":
        f.codec_id = int(rng.choice(sorted(set(range(1, 8)) | {0, 255})))
    elif kind == "flags":
        f.flags ^= 1 << int(rng.integers(8))
    elif kind == "version":
        f.version = int(rng.choice([0, 1, 2, 3, 255]))
    elif kind == "params_hash":
        f.params_hash = _flip_bits(f.params_hash, rng, 1)
    elif kind == "checks":
        f.flags |= 4
        f.version = 2
        f.checks = [int(rng.integers(2**32)) if rng.integers(2) else c ^ 1 for c in
                    (f.checks or [0] * len(segs))]
    elif kind == "payload":
        if segs:
            i = int(rng.integers(len(segs)))
            segs[i] = _bytes_mutation(segs[i], rng)
    elif kind in ("drop", "duplicate", "swap", "cut_list") and segs:
        i, j = int(rng.integers(len(segs))), int(rng.integers(len(segs)))
        if kind == "drop":
            del segs[i]
            if f.checks:
                del f.checks[i]
        elif kind == "duplicate":
            segs.insert(i, segs[i])
            if f.checks:
                f.checks.insert(i, f.checks[i])
        elif kind == "swap":
            segs[i], segs[j] = segs[j], segs[i]
            if f.checks:
                f.checks[i], f.checks[j] = f.checks[j], f.checks[i]
        else:
            del segs[i:]
            del f.checks[i:]
        if rng.integers(2):  # keep the declared count consistent (else the container refuses it)
            f.num_segments = len(segs)
    elif kind == "splice" and donors:
        d = parse_raw(donors[int(rng.integers(len(donors)))])
        if d.segments and segs:
            i, j = int(rng.integers(len(segs))), int(rng.integers(len(d.segments)))
            segs[i] = d.segments[j]
            if f.checks and d.checks:
                f.checks[i] = d.checks[j]
    f.segments = segs
    return kind, raw_pack(f)


def _png_chunks(data: bytes) -> list[list]:
    pos, chunks = 8, []
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.append([kind, data[pos + 8:pos + 8 + n]])
        pos += 12 + n
    return chunks


def _png_pack(chunks) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return bytes(out)


def mutate_png(data: bytes, rng) -> tuple[str, bytes]:
    """One mutation of a PNG (IHDR fields / chunk data with valid CRCs, or raw bytes)."""
    k = int(rng.integers(4))
    if not data.startswith(b"\x89PNG") or k == 3:
        return "raw", _bytes_mutation(data, rng)
    chunks = _png_chunks(data)
    ihdr = [c for c in chunks if c[0] == b"IHDR"]
    if k == 0 and ihdr and len(ihdr[0][1]) == 13:
        w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", ihdr[0][1])
        field = int(rng.integers(4))
        if field == 0:
            w = int(rng.choice([0, 1, w + 1, 2**16, 2**31 - 1, 2**32 - 1]))
        elif field == 1:
            h = int(rng.choice([0, 1, h + 1, 2**16, 2**31 - 1, 2**32 - 1]))
        elif field == 2:
            depth = int(rng.choice([1, 2, 4, 8, 16, 0, 3, 255]))
        else:
            ctype = int(rng.choice([0, 2, 3, 4, 6, 1, 5, 7]))
        ihdr[0][1] = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, ctype, comp, filt, inter)
        return "png_ihdr", _png_pack(chunks)
    if k == 1 and chunks:
        c = chunks[int(rng.integers(len(chunks)))]
        c[1] = _bytes_mutation(c[1], rng)
        return "png_chunk", _png_pack(chunks)
    if chunks:
        i = int(rng.integers(len(chunks)))
        chunks.insert(i, list(chunks[i])) if rng.integers(2) else chunks.pop(i)
    return "png_chunks", _png_pack(chunks)


# ---------------------------------------------------------------------------------------------------
# Running cases


@dataclasses.dataclass
class Outcome:
    """What one case did. status: decoded | refused | crash | hang | died."""

    kind: str
    status: str
    error: str = ""          # exception type name (refused / crash) or the reason (hang / died)
    message: str = ""
    seconds: float = 0.0
    maxrss_mb: float = 0.0   # the process's peak resident memory so far


class _Hang(BaseException):
    """Raised by the watchdog (a BaseException so that `except Exception` in a decoder cannot eat it)."""


def is_library_error(exc: BaseException) -> bool:
    """True for the errors a decoder may raise on bad input: a ValueError or OSError that is defined
    in gencomp_jax or raised by gencomp_jax code (not, e.g., numpy's reshape ValueError)."""
    if not isinstance(exc, (ValueError, OSError)):
        return False
    if type(exc).__module__.startswith("gencomp_jax"):
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and os.path.abspath(last).startswith(_PACKAGE_DIR)


def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def run_case(decode: Callable[[bytes], Any], kind: str, data: bytes, *, timeout_s: float = 20.0,
             expect_shape: Callable[[bytes], Any] | None = None) -> Outcome:
    """Runs decode(data) in this process under a SIGALRM watchdog (main thread only)."""
    def _alarm(signum, frame):
        raise _Hang
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    t0 = time.perf_counter()
    try:
        out = decode(data)
        status, err, msg = "decoded", "", ""
        if expect_shape is not None:
            want = expect_shape(data)
            if want is not None and (getattr(out, "dtype", None) != np.uint8 or tuple(out.shape) != tuple(want)):
                status, err, msg = "crash", "WrongOutput", f"got {getattr(out, 'dtype', type(out))} " \
                                                          f"{getattr(out, 'shape', '')}, header says {want}"
    except _Hang:
        status, err, msg = "hang", "timeout", f"over {timeout_s} s"
    except BaseException as e:  # noqa: BLE001 - classifying every failure is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        ok = is_library_error(e)
        status, err = ("refused" if ok else "crash"), type(e).__name__
        msg = str(e)[:300] if ok else "".join(traceback.format_exception(e))[-1500:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return Outcome(kind, status, err, msg, time.perf_counter() - t0, _maxrss_mb())


def header_shape(data: bytes):
    """The image shape a valid gencomp header declares (what a decoded image must have), or None."""
    try:
        return bitstream.peek(data, max_pixels=2**62).image_shape
    except ValueError:
        return None


def run_cases(decode, cases: Iterable[tuple[str, bytes]], *, timeout_s: float = 20.0,
              expect_shape=header_shape) -> list[Outcome]:
    """Runs every (kind, data) case in this process (see run_case)."""
    return [run_case(decode, k, d, timeout_s=timeout_s, expect_shape=expect_shape) for k, d in cases]


def summarize(outcomes: list[Outcome]) -> dict:
    """Counts per status and per (kind, status), the slowest case, peak memory and the failures."""
    by_status = collections.Counter(o.status for o in outcomes)
    by_kind = collections.Counter(f"{o.kind}:{o.status}" for o in outcomes)
    seconds_by_kind = collections.defaultdict(float)
    for o in outcomes:
        seconds_by_kind[o.kind] += o.seconds
    bad = [dataclasses.asdict(o) for o in outcomes if o.status in ("crash", "hang", "died")]
    return {"cases": len(outcomes), "status": dict(by_status), "by_kind": dict(sorted(by_kind.items())),
            "seconds_by_kind": {k: round(v, 1) for k, v in sorted(seconds_by_kind.items())},
            "max_seconds": max((o.seconds for o in outcomes), default=0.0),
            "peak_rss_mb": max((o.maxrss_mb for o in outcomes), default=0.0),
            "failures": bad[:20], "num_failures": len(bad)}


# ---------------------------------------------------------------------------------------------------
# Targets: what a case decodes


# Per method: config overrides that make its runlocal network tiny (the fuzzer tests the decoder's
# handling of bytes, not the network's quality). Methods without an entry use runlocal as is.
_TINY_NET = dict(arch="unet", ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), norm_groups=4)
_TINY_STAGE1 = dict(variant="hyperprior", N=8, M=12, lmbda=0.01, workdir="")
TINY = {
    "hyperprior": {"model.N": 8, "model.M": 12},
    "mean_scale": {"model.N": 8, "model.M": 12},
    "hfd": {"model.stage1": _TINY_STAGE1, "model.net": _TINY_NET, "model.sample_steps": 2},
    "cdc": {"model.N": 8, "model.M": 12, "model.context_features": (8, 8, 8, 8), "model.context_norm_groups": 4,
            "model.net": dict(_TINY_NET, ch_mult=(1, 2, 2)), "model.sample_steps": 2},
    "diffc": {"model.net": _TINY_NET, "model.prediction": "x0", "model.diffc.num_steps": 4, "model.diffc.end": 840,
              "model.diffc.segments": 3, "model.diffc.max_chunk_bits": 12, "model.diffc.first_bpp": 0.02},
}
# The largest image a fuzzed header may declare (GENCOMP_MAX_PIXELS while fuzzing): decoding time
# grows with the declared pixels up to the container's limit, so the fuzz limit is matched to the
# per-case time limit on a CPU (128 x 128 pixels: 16 UQDM tiles).
FUZZ_MAX_PIXELS = 128 * 128
# Likewise the most sampler steps a CDC/HFD file's own settings may ask for while fuzzing
# (GENCOMP_MAX_FILE_STEPS): a mutated settings varint asking for up to 1000 steps is legitimate work of
# seconds per case that would dominate a long run; the refusal above the limit is the same code either way.
FUZZ_MAX_FILE_STEPS = 16


def _set(config, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = config
    for p in path:
        node = node[p]
    if last not in node:
        return  # an override for a field this version of the config does not have
    node[last] = value


def seed_images(size: int = 24, count: int = 2) -> list[np.ndarray]:
    """Small smooth random RGB images (closer to photos than noise), uint8 [size, size + 5, 3]."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        base = np.kron(rng.integers(0, 256, (3, 4, 3)), np.ones((8, 8, 1)))[:size, :size + 5]
        out.append(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    return out


def tiny_config(name: str):
    """The runlocal config of registered method `name` with TINY[name] applied."""
    from gencomp_jax import registry
    from gencomp_jax.config_utils import load_config

    registry.discover()
    config = load_config(f"{name}:runlocal")
    with config.unlocked() if hasattr(config, "unlocked") else _null():
        for k, v in TINY.get(name, {}).items():
            _set(config, k, v)
    return config


def tiny_params(config, *, seed: int = 0):
    """Random-init parameters of config's method, perturbed (so that no layer is exactly zero)."""
    import jax
    import jax.numpy as jnp

    from gencomp_jax import registry

    size = min(64, int(config.get("data", {}).get("crop_size", 32) or 32))
    init = jax.jit(registry.make_method(config).init)  # one compile beats op-by-op dispatch of a UNet init
    params = init(jax.random.PRNGKey(seed), {"image": jnp.zeros((1, size, size, 3))})
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 7), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + 0.02 * jax.random.normal(k, a.shape, a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
               for a, k in zip(leaves, keys)])


def tiny_codec(name: str, *, seed: int = 0, params=None):
    """A registered codec with a tiny random-init model (tiny_config, tiny_params) or the given params."""
    from gencomp_jax import registry

    config = tiny_config(name)
    return registry.make_codec(config, tiny_params(config, seed=seed) if params is None else params)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def codec_target(name: str, *, seed: int = 0):
    """(decode, seed files) for fuzzing codec `name`: decode(data) = codec.decompress(data)."""
    codec = tiny_codec(name, seed=seed)
    files = [codec.compress(im) for im in seed_images()]
    return codec.decompress, files


def image_target(workdir: str | None = None):
    """(decode, seed files) for fuzzing data.read_image: PNG (RGB, grey, 16-bit, palette) and JPEG."""
    import io

    from PIL import Image

    from gencomp_jax.data.images import read_image

    workdir = workdir or tempfile.mkdtemp(prefix="gencomp_fuzz_")
    path = os.path.join(workdir, "case.img")
    im = seed_images(16, 1)[0]
    files = []
    for pil, fmt in [(Image.fromarray(im), "PNG"), (Image.fromarray(im[..., 0]), "PNG"),
                     (Image.fromarray(im[..., 0].astype(np.uint16) * 257), "PNG"),
                     (Image.fromarray(im).convert("P"), "PNG"), (Image.fromarray(im), "JPEG")]:
        buf = io.BytesIO()
        pil.save(buf, format=fmt)
        files.append(buf.getvalue())

    def decode(data: bytes):
        with open(path, "wb") as fh:
            fh.write(data)
        return read_image(path)
    return decode, files


def cases(files: list[bytes], n: int, *, seed: int = 0, png: bool = False) -> Iterator[tuple[str, bytes]]:
    """n mutated cases of the seed files (mutate, or mutate_png for image files); the first
    len(KINDS) gencomp cases run every kind of mutation once."""
    if not png:
        from gencomp_jax import registry

        registry.discover()  # the codec ids the files' headers name
    rng = np.random.default_rng(seed)
    files = list(files)
    for i in range(n):
        f = files[int(rng.integers(len(files)))]
        if png:
            yield mutate_png(f, rng)
        else:
            yield mutate(f, rng, kind=KINDS[i] if i < len(KINDS) else None, donors=tuple(files))


# ---------------------------------------------------------------------------------------------------
# A child process per target (long runs): hangs and deaths are recorded, not fatal


def make_target(target: str, **kwargs):
    """(decode, seed files) of a target: "read_image", a registered codec name, or "module:function"
    (a function returning (decode, files))."""
    if target == "read_image":
        return image_target(**kwargs)
    if ":" in target:
        import importlib

        module, _, fn = target.partition(":")
        return getattr(importlib.import_module(module), fn)(**kwargs)
    return codec_target(target, **kwargs)


def _worker_main(conn, target: str, kwargs: dict, timeout_s: float) -> None:
    os.environ.setdefault(bitstream.MAX_PIXELS_ENV, str(FUZZ_MAX_PIXELS))
    from gencomp_jax.codecs import conditional

    os.environ.setdefault(conditional.MAX_FILE_STEPS_ENV, str(FUZZ_MAX_FILE_STEPS))
    decode, files = make_target(target, **kwargs)
    conn.send(files)
    while True:
        item = conn.recv()
        if item is None:
            return
        kind, data = item
        shape = header_shape if files and files[0].startswith(bitstream.MAGIC) else None
        conn.send(run_case(decode, kind, data, timeout_s=timeout_s, expect_shape=shape))


class Worker:
    """Runs a target's cases in a child process: `Worker("uqdm").run(cases)` -> outcomes.

    A case that does not answer within `hard_timeout_s` (the child's own watchdog did not fire, e.g.
    inside a long XLA call) or that kills the child is recorded and the child restarted."""

    def __init__(self, target: str, *, timeout_s: float = 20.0, hard_timeout_s: float = 60.0, **kwargs):
        self.target, self.kwargs = target, kwargs
        self.timeout_s, self.hard_timeout_s = timeout_s, hard_timeout_s
        self.proc = self.conn = None
        self.files: list[bytes] = []
        self.restarts = 0

    def start(self) -> list[bytes]:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.target, self.kwargs, self.timeout_s),
                                daemon=True)
        self.proc.start()
        if not self.conn.poll(900):
            raise RuntimeError(f"fuzz worker for {self.target} did not start within 900 s")
        self.files = self.conn.recv()
        return self.files

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc = None

    def run_one(self, kind: str, data: bytes) -> Outcome:
        if self.proc is None:
            self.start()
            self.restarts += 1
        t0 = time.perf_counter()
        try:
            self.conn.send((kind, data))
            if self.conn.poll(self.hard_timeout_s):
                return self.conn.recv()
            why, status = f"no answer within {self.hard_timeout_s} s", "hang"
        except (EOFError, OSError) as e:
            why, status = f"worker died ({type(e).__name__}, exit code {self.proc.exitcode})", "died"
        self.proc.kill()
        self.proc.join()
        code = self.proc.exitcode
        self.proc = None
        return Outcome(kind, status, why, f"exit code {code}", time.perf_counter() - t0)
