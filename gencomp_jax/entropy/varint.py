"""Unsigned LEB128 varints and length-prefixed byte streams: the one integer framing of the library.

    write_varint(value) -> bytes            7 bits per byte, low group first, high bit = "more"
    read_varint(data, pos) -> (value, pos)  raises VarintError (a ValueError) on a cut or overlong varint
    join_streams([b0, ..., bn]) -> bytes    all but the last stream prefixed by its varint length
    split_streams(data, n) -> [b0, ..., bn] the inverse; VarintError if the lengths do not fit

A leaf module (no gencomp_jax imports): the container (codecs/bitstream.py), the index codes of
channel simulation and the codecs' multi-stream segments all use it.
"""

from __future__ import annotations

MAX_VARINT_BITS = 70  # 10 bytes: enough for any u64 plus slack; longer is corruption


class VarintError(ValueError):
    """A varint or a length-prefixed stream that is cut off or malformed (corrupted data)."""


def write_varint(value: int) -> bytes:
    """Unsigned LEB128 encoding of a non-negative int."""
    value = int(value)
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decodes the varint at data[pos:]; returns (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise VarintError("truncated data: a varint is cut off")
        if shift >= MAX_VARINT_BITS:
            raise VarintError("corrupted data: malformed (overlong) varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def join_streams(streams: list[bytes]) -> bytes:
    """One byte string from several: every stream but the last prefixed by its varint length."""
    if not streams:
        raise ValueError("join_streams needs at least one stream")
    out = bytearray()
    for s in streams[:-1]:
        out += write_varint(len(s))
        out += s
    out += streams[-1]
    return bytes(out)


def split_streams(data: bytes, num: int) -> list[bytes]:
    """Inverse of join_streams for `num` streams."""
    if num < 1:
        raise ValueError(f"split_streams needs num >= 1, got {num}")
    pos, out = 0, []
    for _ in range(num - 1):
        length, pos = read_varint(data, pos)
        if pos + length > len(data):
            raise VarintError("corrupted data: a stream is shorter than its declared length")
        out.append(bytes(data[pos:pos + length]))
        pos += length
    out.append(bytes(data[pos:]))
    return out
