"""The gencomp file container (`.gcz`): a small self-describing header plus length-prefixed segments.

Every codec writes its bytes through `pack` and reads them back through `unpack`, so that every file
says which codec and which trained model made it, the image shape, and (for channel simulation) the
seed of the shared randomness; and so that truncated or corrupted files fail with a clear message
instead of decoding garbage.

Layout (all integers unsigned; "varint" = LEB128, 7 bits per byte, low group first):

    offset  size  field
    0       4     magic b"\\x89GCZ"
    4       1     format version: 2 if the segments carry checks (flags bit 2), else 1
    5       1     codec id (the id the codec registered with, codecs/base.py `register`)
    6       1     flags: bit 0 = a u64 seed follows, bit 1 = meta bytes follow, bit 2 = every segment
                  carries a 4-byte check (version 2 only; other bits must be 0)
    7       8     params fingerprint (params_fingerprint)
    15      var   image shape: 3 varints H, W, C
            8     seed, u64 little-endian                    (only if flags bit 0)
            var   meta: varint length + bytes                (only if flags bit 1)
            var   number of segments (varint)
            2     CRC-16/CCITT (binascii.crc_hqx) of every header byte before it
    then, per segment:
            var   segment length in bytes (varint)
            4     CRC-32 of the segment bytes (little-endian); with checks: of the check + segment bytes
            4     check, u32 little-endian                   (only if flags bit 2)
            len   segment bytes

Checks (version 2): the CRC-32 above protects the bytes; a check protects what the decoder computes
from them. The encoder stores per segment `content_check(...)` of what a decoder must reproduce (e.g.
the decoded symbols and the table indexes it used); the decoder recomputes it and calls `verify`, which
raises `DecodeMismatchError` naming the segment. A decoder on another platform (CPU type, GPU, XLA
version, thread count) whose float entropy parameters differ by one bit therefore stops with a clear
error instead of returning a wrong image. A file without checks is byte-identical to version 1 and is
written as version 1; both versions are read.

Limits (refused before anything is allocated): an image larger than `pixel_limit()` pixels
(MAX_PIXELS = 2^25, an 8K UHD frame, by default; raise it with the environment variable
GENCOMP_MAX_PIXELS or `unpack(..., max_pixels=)` to decode larger files), a channel count other
than 3, and more than MAX_SEGMENTS segments.

The overhead for a Kodak image (512x768) without seed or meta is a 23-byte header (4+1+1+1+8+5+1+2)
plus 5-8 bytes of framing per segment (varint length + CRC-32): 35 bytes for two segments of
128 B-16 KiB each. Segments are self-delimiting, so a progressive codec (one segment per
step) can be decoded from a truncated file with `unpack(..., allow_partial=True)`, which returns the
complete segments present.

API: pack(header, segments) -> bytes; unpack(data, *, codec=None, params_hash=None,
allow_partial=False, max_pixels=None) -> (Header, segments); peek(data) -> Header (no checks against a
model); prefix(data, k) -> the bytes a receiver needs for the first k segments (progressive rate
points); params_fingerprint(params) -> 8 bytes; content_check(*arrays) -> u32; verify(header, i,
value). Every failure raises BitstreamError (a ValueError).
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import os
import struct
import zlib
from typing import Any

import numpy as np

from gencomp_jax.codecs import base
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

MAGIC = b"\x89GCZ"
FORMAT_VERSION = 2      # the newest version this module writes and reads
READ_VERSIONS = (1, 2)  # 1: no segment checks (files written before the checks existed)
_FLAG_SEED = 1
_FLAG_META = 2
_FLAG_CHECKS = 4
_FLAGS_OF_VERSION = {1: _FLAG_SEED | _FLAG_META, 2: _FLAG_SEED | _FLAG_META | _FLAG_CHECKS}
FINGERPRINT_BYTES = 8
CHECK_BYTES = 4
IMAGE_CHANNELS = 3      # every codec writes uint8 [H, W, 3] images
MAX_PIXELS = 2**25      # default limit on H * W of a file's image (env GENCOMP_MAX_PIXELS overrides)
MAX_SEGMENTS = 2**20
MAX_PIXELS_ENV = "GENCOMP_MAX_PIXELS"


class BitstreamError(ValueError):
    """A file that cannot be decoded: not a gencomp file, other version/codec/model, truncated, corrupted."""


class DecodeMismatchError(BitstreamError):
    """The decoder computed something other than the encoder did (a segment's check does not match)."""


def env_limit(name: str, default: int, unit: str) -> int:
    """A positive integer limit from environment variable `name` (default when unset or blank); a clear
    ValueError naming the variable otherwise. unit: what it counts, for the message."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected a positive integer number of {unit}")
    return value


def pixel_limit() -> int:
    """The largest H * W a file may declare: $GENCOMP_MAX_PIXELS if set, else MAX_PIXELS."""
    return env_limit(MAX_PIXELS_ENV, MAX_PIXELS, "pixels")


@dataclasses.dataclass(frozen=True)
class Header:
    """What a gencomp file says about itself.

    codec: codec name, a registered codec (codecs/base.py `register`); its one-byte id goes in the file.
    params_hash: 8-byte params_fingerprint of the model that wrote the file.
    image_shape: (H, W, C) of the original (unpadded) image.
    seed: u64 seed of the shared randomness (channel simulation); 0 = none (not stored).
    meta: small codec-specific bytes (e.g. latent shape, number of steps); b"" = none (not stored).
    num_segments: number of segments. `pack` fills it in when None; `unpack` returns the number the
        file declares (with allow_partial=True, the list of segments returned may be shorter).
    checks: one u32 `content_check` per segment, written by the encoder (version-2 file), or () for
        none (a version-1 file). `unpack` returns the checks of the segments it returns.
    """

    codec: str
    params_hash: bytes
    image_shape: tuple[int, int, int]
    seed: int = 0
    meta: bytes = b""
    num_segments: int | None = None
    checks: tuple[int, ...] = ()
    format_version: int = dataclasses.field(default=0, compare=False)  # as read (0: not read from a file)

    @property
    def version(self) -> int:
        """The container format version of this header's file (2 with segment checks, else 1)."""
        return self.format_version or (2 if self.checks else 1)


# ---------------------------------------------------------------------------------------------------
# Fingerprint


def params_fingerprint(params: Any) -> bytes:
    """8-byte fingerprint of a parameter pytree.

    sha256 over the leaves sorted by their path string, each contributing its path, dtype, shape
    and little-endian bytes; truncated to 8 bytes. Identical for the same values regardless of
    device, dict insertion order or whether leaves are jax or numpy arrays.
    """
    import jax  # lazy: keep `import bitstream` cheap for the CLI

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    items = sorted((jax.tree_util.keystr(path), leaf) for path, leaf in leaves)
    h = hashlib.sha256()
    for path, leaf in items:
        arr = np.asarray(leaf)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        arr = np.ascontiguousarray(arr)
        h.update(path.encode("utf-8"))
        h.update(b"\0" + str(arr.dtype).encode("ascii"))
        h.update(b"\0" + repr(tuple(arr.shape)).encode("ascii") + b"\0")
        h.update(arr.tobytes())
    return h.digest()[:FINGERPRINT_BYTES]


def framed_size(segment: bytes, *, checked: bool = False) -> int:
    """Bytes a segment occupies in the container: varint length + CRC-32 (+ check) + payload."""
    return len(write_varint(len(segment))) + 4 + (CHECK_BYTES if checked else 0) + len(segment)


# ---------------------------------------------------------------------------------------------------
# Checks of what a decoder must reproduce


def content_check(*arrays: Any) -> int:
    """u32 check (CRC-32) of integer arrays a decoder must reproduce, e.g. decoded symbols and the
    table indexes they were coded with. Each array counts with its shape and its values as int64
    little-endian, so the same numbers in another integer dtype give the same check. Float arrays are
    refused: check what was quantized from them (a table index), not the floats."""
    crc = 0
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind not in "iub":
            raise TypeError(f"content_check takes integer arrays (symbols, table indexes), got {a.dtype}")
        crc = zlib.crc32(repr(tuple(a.shape)).encode("ascii"), crc)
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i8").tobytes(), crc)
    return crc


def verify(header: Header, index: int, value: int, *, what: str = "the decoded symbols") -> None:
    """Checks that the decoder reproduced segment `index` (0-based) as the encoder did.

    value: content_check(...) of the decoder's own numbers, computed as the encoder computed it.
    A file without checks (version 1) passes unchecked. Raises DecodeMismatchError otherwise.
    """
    if not header.checks:
        return
    if not 0 <= index < len(header.checks):
        raise BitstreamError(f"segment {index + 1} is not in this file ({len(header.checks)} segments read)")
    if int(value) != header.checks[index]:
        raise mismatch(header, index, f"{what} differ from what the encoder produced")


def mismatch(header: Header, index: int, what: str) -> DecodeMismatchError:
    """The error for segment `index` (0-based) of a checked file that did not decode as it was encoded
    (its bytes are intact: the CRC-32 matched). Raise it where a decoder fails on such a segment."""
    return DecodeMismatchError(
        f"{header.codec} file, segment {index + 1} of {header.num_segments}: {what} (the segment's bytes are "
        "intact). The decoder's entropy model computed different numbers than the encoder's: most likely "
        "this machine differs from the one that compressed the file (CPU type, GPU/TPU, JAX/XLA version, "
        "thread count or XLA flags), or the model parameters differ. Decode on the platform and library "
        "versions that wrote the file; no image is returned because it would be wrong.")


# ---------------------------------------------------------------------------------------------------
# Reading


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Truncated
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        if self.pos >= len(self.data):
            raise _Truncated
        try:
            value, self.pos = read_varint(self.data, self.pos)
        except VarintError as e:
            if "cut off" in str(e):
                raise _Truncated from None
            raise BitstreamError("corrupted gencomp file: malformed varint in the header") from None
        return value


# ---------------------------------------------------------------------------------------------------
# Pack / unpack


def pack(header: Header, segments: list[bytes]) -> bytes:
    """Serializes `header` and `segments` into one gencomp file (bytes). See the module docstring."""
    codec_id = base.codec_id(header.codec)  # RegistryError for a codec that did not register
    if not isinstance(header.params_hash, (bytes, bytearray)) or len(header.params_hash) != FINGERPRINT_BYTES:
        raise ValueError(f"params_hash must be {FINGERPRINT_BYTES} bytes (use params_fingerprint(params)), "
                         f"got {header.params_hash!r}")
    shape = tuple(int(s) for s in header.image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) with positive sides, got {header.image_shape}")
    if shape[2] != IMAGE_CHANNELS:
        raise ValueError(f"image_shape must be (H, W, {IMAGE_CHANNELS}) (RGB), got {header.image_shape}")
    if not 0 <= int(header.seed) < 2**64:
        raise ValueError(f"seed must fit in an unsigned 64-bit integer, got {header.seed}")
    segments = [bytes(s) for s in segments]
    if header.num_segments is not None and header.num_segments != len(segments):
        raise ValueError(f"header.num_segments={header.num_segments} but {len(segments)} segments given")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"{len(segments)} segments: a gencomp file holds at most {MAX_SEGMENTS}")
    checks = tuple(int(c) for c in header.checks)
    if checks and (len(checks) != len(segments) or not all(0 <= c < 2**32 for c in checks)):
        raise ValueError(f"header.checks must hold one u32 per segment ({len(segments)}), got {header.checks}")

    out = bytearray(MAGIC)
    flags = (_FLAG_SEED if header.seed else 0) | (_FLAG_META if header.meta else 0) | (
        _FLAG_CHECKS if checks else 0)
    out += bytes([2 if checks else 1, codec_id, flags])
    out += bytes(header.params_hash)
    for s in shape:
        out += write_varint(s)
    if header.seed:
        out += struct.pack("<Q", int(header.seed))
    if header.meta:
        out += write_varint(len(header.meta))
        out += bytes(header.meta)
    out += write_varint(len(segments))
    out += struct.pack("<H", binascii.crc_hqx(bytes(out), 0))
    for i, seg in enumerate(segments):
        check = struct.pack("<I", checks[i]) if checks else b""
        out += write_varint(len(seg))
        out += struct.pack("<I", zlib.crc32(check + seg))
        out += check
        out += seg
    return bytes(out)


def _parse_header(data: bytes, max_pixels: int | None = None) -> tuple[Header, int, bool]:
    """Parses and checks the header; returns (header without checks, offset of the first segment,
    whether segments carry checks).

    Every size the header declares is checked before anything is allocated from it."""
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data) and data:
            raise BitstreamError(f"truncated gencomp file: only {len(data)} bytes, the header is cut off")
        raise BitstreamError("not a gencomp file (wrong magic bytes): expected a .gcz file written by "
                             "`gencomp compress`")
    if data[:len(MAGIC)] != MAGIC:
        raise BitstreamError("not a gencomp file (wrong magic bytes): expected a .gcz file written by "
                             f"`gencomp compress`, got a file starting with {bytes(data[:8])!r}")
    r = _Reader(data)
    r.pos = len(MAGIC)
    try:
        version = r.take(1)[0]
        if version not in READ_VERSIONS:
            raise BitstreamError(
                f"unknown gencomp format version {version}: this gencomp_jax reads versions "
                f"{list(READ_VERSIONS)}. Use the gencomp_jax release that wrote the file (or a newer one).")
        codec_id, flags = r.take(2)
        params_hash = r.take(FINGERPRINT_BYTES)
        shape = (r.varint(), r.varint(), r.varint())
        seed = struct.unpack("<Q", r.take(8))[0] if flags & _FLAG_SEED else 0
        meta = r.take(r.varint()) if flags & _FLAG_META else b""
        num_segments = r.varint()
        header_end = r.pos
        (crc,) = struct.unpack("<H", r.take(2))
    except _Truncated:
        raise BitstreamError(f"truncated gencomp file: the header is cut off ({len(data)} bytes in the file)"
                             ) from None
    if binascii.crc_hqx(bytes(data[:header_end]), 0) != crc:
        raise BitstreamError("corrupted gencomp file: header checksum mismatch (the file was modified or "
                             "damaged)")
    if flags & ~_FLAGS_OF_VERSION[version]:
        raise BitstreamError(f"corrupted gencomp file: unknown header flags {flags:#x} for format version "
                             f"{version}")
    if version == 2 and not flags & _FLAG_CHECKS:
        raise BitstreamError("corrupted gencomp file: a version-2 file without segment checks")
    codec_name = base.codec_name(codec_id)
    if codec_name is None:
        raise BitstreamError(f"gencomp file made by an unknown codec (id {codec_id}); registered: "
                             f"{sorted(base.registered())}. Use a newer gencomp_jax, or import the module "
                             "that registers that codec (gencomp_jax.registry.discover() imports the "
                             "built-in ones).")
    if min(shape) < 1 or shape[2] != IMAGE_CHANNELS:
        raise BitstreamError(f"corrupted gencomp file: invalid image shape {shape} (expected H x W x "
                             f"{IMAGE_CHANNELS} with positive sides)")
    limit = pixel_limit() if max_pixels is None else int(max_pixels)
    if shape[0] * shape[1] > limit:
        raise BitstreamError(
            f"the file declares a {shape[0]} x {shape[1]} image ({shape[0] * shape[1]} pixels), more than "
            f"the limit of {limit} pixels: refused before decoding, so a corrupted or hostile header "
            f"cannot exhaust memory. If you trust the file and have the memory, raise the limit "
            f"(environment variable {MAX_PIXELS_ENV}=<pixels>, or unpack(..., max_pixels=)).")
    if num_segments > MAX_SEGMENTS:
        raise BitstreamError(f"corrupted gencomp file: {num_segments} segments declared (at most "
                             f"{MAX_SEGMENTS})")
    header = Header(codec=codec_name, params_hash=bytes(params_hash), image_shape=shape,
                    seed=seed, meta=bytes(meta), num_segments=num_segments, format_version=version)
    return header, r.pos, bool(flags & _FLAG_CHECKS)


def peek(data: bytes, *, max_pixels: int | None = None) -> Header:
    """Reads only the header (no codec/model check, segments not read, no checks); for tools that
    dispatch on it."""
    return _parse_header(bytes(data), max_pixels)[0]


def prefix(data: bytes, num_segments: int, *, max_pixels: int | None = None) -> bytes:
    """The first bytes of a file that hold its header and its first `num_segments` segments.

    What a receiver of a progressive file needs for that many segments; `unpack(prefix(data, k),
    allow_partial=True)` returns exactly the first k segments. Checks the file as unpack does.
    """
    data = bytes(data)
    header, pos, checked = _parse_header(data, max_pixels)
    if not 0 <= num_segments <= header.num_segments:
        raise ValueError(f"num_segments must be in [0, {header.num_segments}], got {num_segments}")
    r = _Reader(data)
    r.pos = pos
    try:
        for _ in range(num_segments):
            length = r.varint()
            r.take(4 + (CHECK_BYTES if checked else 0) + length)
    except _Truncated:
        raise BitstreamError(f"truncated gencomp file: it holds fewer than {num_segments} complete segments"
                             ) from None
    out = data[:r.pos]
    unpack(out, allow_partial=True, max_pixels=max_pixels)  # CRC checks of the kept segments
    return out


def unpack(data: bytes, *, codec: str | None = None, params_hash: bytes | None = None,
           allow_partial: bool = False, max_pixels: int | None = None) -> tuple[Header, list[bytes]]:
    """Parses a gencomp file into (header, segments), checking everything it can.

    codec / params_hash: when given, the file must have been written by this codec / model.
    allow_partial: for progressive codecs: a file cut inside the segments returns the complete
        segments present (header.num_segments still says how many were written). A cut inside the
        header is always an error. Corrupted segments (CRC mismatch) are always an error.
    Raises BitstreamError (a ValueError) with a message saying what is wrong.
    """
    data = bytes(data)
    header, pos, checked = _parse_header(data, max_pixels)
    if codec is not None and header.codec != codec:
        raise BitstreamError(f"this file was made by the {header.codec!r} codec, but you are decoding with "
                             f"{codec!r}: load a {header.codec} checkpoint to decode it")
    if params_hash is not None and bytes(params_hash) != header.params_hash:
        raise BitstreamError(f"this file was made by model {header.params_hash.hex()}, you loaded "
                             f"{bytes(params_hash).hex()}: decode it with the checkpoint that compressed it "
                             "(the parameters differ)")
    r = _Reader(data)
    r.pos = pos
    segments: list[bytes] = []
    checks: list[int] = []
    for i in range(header.num_segments):
        try:
            length = r.varint()
            (crc,) = struct.unpack("<I", r.take(4))
            check = r.take(CHECK_BYTES) if checked else b""
            seg = r.take(length)
        except _Truncated:
            if allow_partial:
                return dataclasses.replace(header, checks=tuple(checks)), segments
            raise BitstreamError(
                f"truncated gencomp file: segment {i + 1} of {header.num_segments} is incomplete "
                f"({len(data)} bytes in the file). Re-copy the file; progressive codecs can decode the "
                "complete part with allow_partial=True") from None
        if zlib.crc32(seg, zlib.crc32(check)) != crc:
            raise BitstreamError(f"corrupted gencomp file: checksum mismatch in segment {i + 1} of "
                                 f"{header.num_segments} (the file was modified or damaged)")
        segments.append(seg)
        if checked:
            checks.append(struct.unpack("<I", check)[0])
    if r.pos != len(data):
        raise BitstreamError(f"corrupted gencomp file: {len(data) - r.pos} unexpected bytes after the last "
                             "segment")
    return dataclasses.replace(header, checks=tuple(checks)), segments
