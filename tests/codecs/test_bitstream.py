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
