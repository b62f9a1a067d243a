"""Tests for the .gcz container: exact round trips, overhead, and one clear error per failure mode."""

import numpy as np
import pytest

from gencomp_jax import registry
from gencomp_jax.codecs import base, bitstream
from gencomp_jax.codecs.bitstream import BitstreamError, Header, pack, unpack

HASH = bytes(range(8))
registry.discover()  # the built-in codecs' ids (a file names its codec by the id it registered)


def _header(**kw):
    base = dict(codec="hyperprior", params_hash=HASH, image_shape=(512, 768, 3))
    base.update(kw)
    return Header(**base)


def _segments():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, 1200, dtype=np.uint8).tobytes(), rng.integers(0, 256, 90, dtype=np.uint8).tobytes()]


@pytest.mark.parametrize("seed,meta", [(0, b""), (2**64 - 1, b""), (12345, b"\x01\x02meta"), (0, b"x" * 300)])
def test_round_trip_exact(seed, meta):
    segs = _segments() + [b""]
    data = pack(_header(seed=seed, meta=meta), segs)
    header, out = unpack(data, codec="hyperprior", params_hash=HASH)
    assert out == segs
    assert header == _header(seed=seed, meta=meta, num_segments=3)
    assert bitstream.peek(data) == header


def test_codec_ids_come_from_the_registration():
    assert base.codec_id("hyperprior") == 1 and base.codec_id("uqdm") == 2
    for name in ("hyperprior", "uqdm"):
        data = pack(_header(codec=name), [])
        assert data[5] == base.codec_id(name) and bitstream.peek(data).codec == name


def test_overhead_is_small():
    segs = _segments()
    data = pack(_header(), segs)
    overhead = len(data) - sum(map(len, segs))
    assert overhead == 23 + (2 + 4) + (1 + 4)  # header + framing of a 1200- and a 90-byte segment
    assert [bitstream.framed_size(s) for s in segs] == [2 + 4 + 1200, 1 + 4 + 90]
    assert len(pack(_header(image_shape=(1, 1, 3)), [])) == 4 + 3 + 8 + 3 + 1 + 2


def test_wrong_magic():
    with pytest.raises(BitstreamError, match="not a gencomp file"):
        unpack(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(BitstreamError, match="not a gencomp file"):
        unpack(b"")


def test_unknown_version():
    data = bytearray(pack(_header(), _segments()))
    data[4] = 7
    with pytest.raises(BitstreamError, match="unknown gencomp format version 7"):
        unpack(bytes(data))


def test_other_codec_and_other_model():
    data = pack(_header(codec="uqdm"), _segments())
    with pytest.raises(BitstreamError, match="made by the 'uqdm' codec.*'hyperprior'"):
        unpack(data, codec="hyperprior")
    other = bytes(8 * [255])
    with pytest.raises(BitstreamError, match=f"made by model {HASH.hex()}, you loaded {other.hex()}"):
        unpack(data, params_hash=other)


def test_truncated_everywhere():
    segs = _segments()
    data = pack(_header(seed=5, meta=b"abc"), segs)
    header_len = len(data) - (len(segs[0]) + 6) - (len(segs[1]) + 5)  # varint length + CRC-32 framing
    for cut in range(1, len(data)):
        with pytest.raises(BitstreamError, match="truncated"):
            unpack(data[:cut])
        if cut < header_len:
            with pytest.raises(BitstreamError, match="truncated"):
                unpack(data[:cut], allow_partial=True)
    # progressive decoding: exactly the complete segments come back
    first_end = header_len + 6 + len(segs[0])
    for cut, n in [(header_len, 0), (first_end - 1, 0), (first_end, 1), (first_end + 3, 1), (len(data), 2)]:
        header, out = unpack(data[:cut], allow_partial=True)
        assert out == segs[:n] and header.num_segments == 2


def test_corruption_detected_at_every_byte():
    data = pack(_header(seed=9), _segments())
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(BitstreamError):
            unpack(bytes(bad), codec="hyperprior", params_hash=HASH)
    bad = bytearray(data)
    bad[-5] ^= 1
    with pytest.raises(BitstreamError, match="corrupted.*segment 2 of 2"):
        unpack(bytes(bad))
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        unpack(data + b"\0")


def test_pack_rejects_bad_headers():
    with pytest.raises(base.RegistryError, match="unknown codec 'jpeg'"):
        pack(_header(codec="jpeg"), [])
    with pytest.raises(ValueError, match="8 bytes"):
        pack(_header(params_hash=b"abc"), [])
    with pytest.raises(ValueError, match="num_segments"):
        pack(_header(num_segments=3), [b"a"])


def test_params_fingerprint():
    import jax.numpy as jnp

    p = {"params": {"b": np.arange(4, dtype=np.float32), "a": {"k": np.ones((2, 3), np.float32)}}}
    fp = bitstream.params_fingerprint(p)
    assert isinstance(fp, bytes) and len(fp) == 8
    # order- and array-type-independent
    q = {"params": {"a": {"k": jnp.ones((2, 3))}, "b": jnp.arange(4, dtype=jnp.float32)}}
    assert bitstream.params_fingerprint(q) == fp
    # sensitive to values, dtypes, shapes and names
    changed = [
        {"params": {"b": np.nextafter(np.arange(4, dtype=np.float32), np.float32(9)),  # one ulp
                    "a": {"k": np.ones((2, 3), np.float32)}}},
        {"params": {"b": np.arange(4, dtype=np.float64), "a": {"k": np.ones((2, 3), np.float32)}}},
        {"params": {"b": np.arange(4, dtype=np.float32), "a": {"k": np.ones((3, 2), np.float32)}}},
        {"params": {"c": np.arange(4, dtype=np.float32), "a": {"k": np.ones((2, 3), np.float32)}}},
    ]
    for c in changed:
        assert bitstream.params_fingerprint(c) != fp


def test_prefix_for_progressive_decoding():
    segs = _segments() + [b"third"]
    data = pack(_header(seed=3), segs)
    for k in range(4):
        part = bitstream.prefix(data, k)
        assert data.startswith(part)
        header, out = unpack(part, allow_partial=True)
        assert out == segs[:k] and header.num_segments == 3
    assert bitstream.prefix(data, 3) == data
    with pytest.raises(ValueError, match="num_segments must be in"):
        bitstream.prefix(data, 4)
    cut = data[:-2]  # cut inside the third segment: two complete segments remain
    assert bitstream.prefix(cut, 2) == bitstream.prefix(data, 2)
    with pytest.raises(BitstreamError, match="fewer than 3"):
        bitstream.prefix(cut, 3)


# ---------------------------------------------------------------------------------------------------
# Hostile headers (issue 16): refused before anything is allocated


def _raw_header(shape, num_segments=2, version=1, flags=0, codec_id=1):
    """A header with any shape (pack refuses what a decoder must refuse), valid CRC-16."""
    import binascii
    import struct

    from gencomp_jax.entropy.varint import write_varint

    out = bytearray(bitstream.MAGIC) + bytes([version, codec_id, flags]) + HASH
    for s in shape:
        out += write_varint(s)
    out += write_varint(num_segments)
    return bytes(out + struct.pack("<H", binascii.crc_hqx(bytes(out), 0)))


@pytest.mark.parametrize("shape", [(65535, 65535, 3), (2**20, 2**20, 3), (64, 2**24, 3), (2**62, 2**62, 3)])
def test_hostile_image_shapes_are_refused_before_allocating(shape):
    import tracemalloc

    data = _raw_header(shape) + b"\x04" + b"\0" * 8  # plus one short segment
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match=r"pixels.*GENCOMP_MAX_PIXELS"):
            unpack(data)
        with pytest.raises(BitstreamError, match="limit"):
            bitstream.peek(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_pixel_limit_override(monkeypatch):
    data = pack(_header(image_shape=(300, 400, 3)), [b"x"])
    assert unpack(data)[1] == [b"x"]
    with pytest.raises(BitstreamError, match="120000 pixels.*limit of 119999"):
        unpack(data, max_pixels=119999)
    assert unpack(data, max_pixels=120000)[1] == [b"x"]
    monkeypatch.setenv(bitstream.MAX_PIXELS_ENV, "1000")
    with pytest.raises(BitstreamError, match="limit of 1000 pixels"):
        unpack(data)
    assert unpack(data, max_pixels=10**6)[1] == [b"x"]  # an explicit argument wins
    monkeypatch.setenv(bitstream.MAX_PIXELS_ENV, str(2**40))
    assert unpack(_raw_header((2**19, 2**19, 3), 0))[0].image_shape == (2**19, 2**19, 3)
    monkeypatch.setenv(bitstream.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="GENCOMP_MAX_PIXELS='lots'"):
        unpack(data)


def test_channels_and_segment_count_are_bounded():
    with pytest.raises(BitstreamError, match="invalid image shape"):
        unpack(_raw_header((8, 8, 4), 0))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        pack(_header(image_shape=(8, 8, 1)), [])
    with pytest.raises(BitstreamError, match="segments declared"):
        unpack(_raw_header((8, 8, 3), bitstream.MAX_SEGMENTS + 1), allow_partial=True)


# ---------------------------------------------------------------------------------------------------
# Segment checks (format version 2)


def test_checks_round_trip_and_version():
    segs = _segments()
    checks = (bitstream.content_check(np.arange(5)), 2**32 - 1)
    data = pack(_header(seed=4, checks=checks), segs)
    assert data[4] == 2 and data[6] & 4 and bitstream.peek(data).version == 2
    header, out = unpack(data, codec="hyperprior", params_hash=HASH)
    assert out == segs and header.checks == checks and header.version == 2
    assert len(data) == len(pack(_header(seed=4), segs)) + 4 * len(segs)
    assert [bitstream.framed_size(s, checked=True) for s in segs] == [2 + 8 + 1200, 1 + 8 + 90]
    # a file without checks is version 1, byte for byte what version-1 writers wrote
    plain = pack(_header(seed=4), segs)
    assert plain[4] == 1 and unpack(plain)[0].checks == () and unpack(plain)[0].version == 1
    # prefixes and partial files keep the checks of the segments they hold
    part = bitstream.prefix(data, 1)
    assert unpack(part, allow_partial=True)[0].checks == checks[:1]
    assert unpack(data[:-3], allow_partial=True)[0].checks == checks[:1]
    with pytest.raises(ValueError, match="one u32 per segment"):
        pack(_header(checks=(1,)), segs)


def test_corrupted_check_field_is_a_checksum_error_not_a_mismatch():
    segs = _segments()
    data = pack(_header(checks=(7, 8)), segs)
    header_len = len(pack(_header(), []))
    pos = header_len + 2 + 4  # segment 1: varint length (2 bytes), CRC-32, then its check
    bad = bytearray(data)
    bad[pos] ^= 1
    with pytest.raises(BitstreamError, match="checksum mismatch in segment 1") as e:
        unpack(bytes(bad))
    assert not isinstance(e.value, bitstream.DecodeMismatchError)
    bad = bytearray(data)
    bad[6] &= ~4  # drop the checks flag (header CRC fixed below): no longer parses
    import binascii
    import struct
    end = header_len - 2
    bad[end:end + 2] = struct.pack("<H", binascii.crc_hqx(bytes(bad[:end]), 0))
    with pytest.raises(BitstreamError, match="version-2 file without segment checks"):
        unpack(bytes(bad))


def test_verify_names_the_segment_and_the_cause():
    symbols = np.array([[3, -1], [0, 7]])
    check = bitstream.content_check(symbols, np.array([1, 2, 3]))
    header, _ = unpack(pack(_header(checks=(check, 0)), _segments()))
    bitstream.verify(header, 0, bitstream.content_check(symbols.astype(np.int32), np.array([1, 2, 3])))
    for other in (symbols + (np.arange(4).reshape(2, 2) == 3), symbols.reshape(4, 1)):
        with pytest.raises(bitstream.DecodeMismatchError, match="segment 1 of 2.*platform"):
            bitstream.verify(header, 0, bitstream.content_check(other, np.array([1, 2, 3])))
    plain, _ = unpack(pack(_header(), _segments()))
    bitstream.verify(plain, 0, 12345)  # a version-1 file has nothing to check
    with pytest.raises(TypeError, match="integer arrays"):
        bitstream.content_check(np.zeros(3))
