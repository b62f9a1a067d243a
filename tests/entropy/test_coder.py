"""Tests for gencomp_jax.entropy.coder: exact round trips, escapes, table invariants, code length."""

import pathlib

import numpy as np
import pytest

from gencomp_jax.entropy import coder as C


def _gauss_tables(m, k, rng):
    x = np.arange(k - 1) - (k - 1) // 2
    tabs = []
    for j in range(m):
        s = 0.2 + 1.5 * j
        p = np.exp(-0.5 * (x / s) ** 2)
        tabs.append(np.append(p / p.sum() * (1 - 1e-5), 1e-5))
    return np.array(tabs), -((k - 1) // 2)


@pytest.mark.parametrize("precision", [12, 16])
def test_quantize_pmf_invariants(precision):
    rng = np.random.default_rng(0)
    # peaked rows with many tiny entries (forces the "excess" path), flat rows, random rows
    peaked = np.full((3, 300), 1e-12)
    peaked[:, 0] = 1.0
    rows = np.concatenate([peaked, np.ones((2, 300)), rng.random((5, 300)) ** 8])
    q = C.quantize_pmf(rows, precision=precision)
    assert q.dtype == np.int64 and q.shape == rows.shape
    assert np.all(q >= 1)
    assert np.all(q.sum(-1) == 2 ** precision)
    np.testing.assert_array_equal(q, C.quantize_pmf(rows.copy(), precision=precision))
    # close to the float pmf: KL(p || q) below ~K / (T ln 2) bits (the cost of raising entries to 1)
    p = rows / rows.sum(-1, keepdims=True)
    kl = np.sum(p * np.log2(np.maximum(p, 1e-300) / (q / 2 ** precision)), -1)
    assert np.all(kl < 300 / 2 ** precision * 2)
    # batch shape handling and row independence
    q3 = C.quantize_pmf(rows.reshape(2, 5, 300), precision=precision)
    np.testing.assert_array_equal(q3.reshape(10, 300), q)


def test_quantize_pmf_rejects_bad_input():
    with pytest.raises(ValueError, match="nonnegative"):
        C.quantize_pmf(np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="positive total"):
        C.quantize_pmf(np.zeros((2, 4)))


def test_indexed_round_trip_with_huge_escapes_and_code_length():
    rng = np.random.default_rng(1)
    m, k, n = 6, 41, 200_000
    pmf, offset = _gauss_tables(m, k, rng)
    tables = C.quantize_pmf(pmf)
    pq = tables / tables.sum(-1, keepdims=True)
    ti = rng.integers(0, m, n)
    cum = np.cumsum(pq[:, :-1], -1)
    sym = (rng.random(n)[:, None] * cum[ti, -1:] > cum[ti]).sum(-1)
    vals = sym + offset
    extremes = np.array([2**63 - 1, -2**63, 10**15, -(10**12), offset - 1, offset + k - 1, 0])
    vals[:len(extremes)] = extremes
    offsets = np.full(m, offset)
    data = C.encode_indexed(vals, tables, offsets, ti)
    np.testing.assert_array_equal(C.decode_indexed(data, tables, offsets, ti), vals)
    # code length within 0.1% + small constant of the ideal (escapes: escape symbol + <= 200 bits)
    rest = slice(len(extremes), None)
    ideal = -np.log2(pq[ti[rest], sym[rest]]).sum()
    ideal_esc = -np.log2(pq[ti[:len(extremes)], -1]).sum() + 200 * len(extremes)
    assert len(data) * 8 <= 1.001 * ideal + ideal_esc + 64


def test_indexed_varying_lengths():
    rng = np.random.default_rng(2)
    lengths = np.array([3, 10, 20])
    tables = np.zeros((3, 20), np.int64)
    for j, L in enumerate(lengths):
        tables[j, :L] = C.quantize_pmf(np.ones(L))
    ti = rng.integers(0, 3, 5000)
    vals = rng.integers(-30, 30, 5000)
    offsets = np.array([0, -5, -10])
    data = C.encode_indexed(vals, tables, offsets, ti, lengths=lengths)
    np.testing.assert_array_equal(C.decode_indexed(data, tables, offsets, ti, lengths=lengths), vals)


def test_per_symbol_round_trip():
    rng = np.random.default_rng(3)
    n, k = 3000, 9
    pmfs = C.quantize_pmf(rng.random((n, k)) ** 3 + 1e-3)
    offsets = rng.integers(-4, 4, n)
    vals = offsets + rng.integers(0, k - 1, n)
    vals[::97] = rng.integers(-10**9, 10**9, len(vals[::97]))
    data = C.encode_per_symbol(vals, pmfs, offsets)
    np.testing.assert_array_equal(C.decode_per_symbol(data, pmfs, offsets), vals)
    assert C.encode_per_symbol(np.zeros(0, int), np.ones((0, k), int), np.zeros(0, int)) == b""


def test_corrupt_data_raises_coding_error():
    rng = np.random.default_rng(4)
    tables = C.quantize_pmf(rng.random((2, 16)) + 0.1)
    ti = rng.integers(0, 2, 4000)
    vals = rng.integers(0, 15, 4000)
    data = C.encode_indexed(vals, tables, [0, 0], ti)
    with pytest.raises(C.CodingError):
        C.decode_indexed(data[:-4], tables, [0, 0], ti)  # truncated
    with pytest.raises(C.CodingError):
        C.decode_indexed(data[:-1], tables, [0, 0], ti)  # not whole words
    detected = 0
    for i in range(20):
        bad = bytearray(data)
        bad[rng.integers(0, len(bad))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = C.decode_indexed(bytes(bad), tables, [0, 0], ti)
            detected += int(not np.array_equal(out, vals))  # never silently identical
        except C.CodingError:
            detected += 1
    assert detected == 20
    with pytest.raises(C.CodingError):
        C.decode_indexed(data + b"\x01\x00\x00\x00", tables, [0, 0], ti)


# ---------------------------------------------------------------------------------------------
# The one escape code: same bytes as the two coders it replaced, any int64, streams of segments

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "coder_golden.npz"


def _golden_segments(g):
    i, segs = 0, []
    while f"st{i}_symbols" in g:
        kind = "qg" if f"st{i}_qg" in g else "cat"
        segs.append((kind, int(g[f"st{i}_{kind}"][0]), g[f"st{i}_symbols"], g[f"st{i}_model"]))
        i += 1
    return segs


def _stream_encode(segs):
    enc = C.StreamEncoder()
    for kind, arg, s, m in segs:
        if kind == "qg":
            enc.quantized_gaussian(s, m[:, 0], m[:, 1], half_width=arg)
        else:
            enc.categorical(s, m, offset=arg)
    return enc.finish()


def _stream_decode(data, segs):
    dec = C.StreamDecoder(data)
    out = [dec.quantized_gaussian(m[:, 0], m[:, 1], half_width=arg) if kind == "qg" else
           dec.categorical(m, offset=arg) for kind, arg, _, m in segs]
    dec.finish()
    return out


def test_bytes_identical_to_the_coders_of_44b2816():
    """tests/golden/make_coder_golden.py coded these inputs (escapes of every bit length 0..64, int64
    offsets at both ends) with entropy/coder.py and entropy/fast.py as they were before the merge."""
    g = dict(np.load(GOLDEN))
    ix = (g["ix_tables"], g["ix_offsets"], g["ix_index"])
    assert C.encode_indexed(g["ix_values"], *ix, lengths=g["ix_lengths"]) == g["ix_bytes"].tobytes()
    np.testing.assert_array_equal(C.decode_indexed(g["ix_bytes"].tobytes(), *ix, lengths=g["ix_lengths"]),
                                  g["ix_values"])
    assert C.encode_per_symbol(g["ps_values"], g["ps_pmfs"], g["ps_offsets"]) == g["ps_bytes"].tobytes()
    np.testing.assert_array_equal(C.decode_per_symbol(g["ps_bytes"].tobytes(), g["ps_pmfs"], g["ps_offsets"]),
                                  g["ps_values"])
    segs = _golden_segments(g)
    assert sum(np.any(np.abs(s) >= 2**16) for _, _, s, _ in segs) >= 3  # multi-chunk escapes present
    assert _stream_encode(segs) == g["st_bytes"].tobytes()
    for (_, _, s, _), out in zip(segs, _stream_decode(g["st_bytes"].tobytes(), segs)):
        np.testing.assert_array_equal(out, s)


def test_stream_escapes_cover_int64_and_refuse_what_they_cannot_code():
    rng = np.random.default_rng(5)
    ends = np.array([-2**63, 2**63 - 1, -2**63 + 7, 2**62, -5, 5, 0, 4, -4], np.int64)
    s = np.concatenate([ends, rng.integers(-2**63, 2**63 - 1, 200, dtype=np.int64), rng.integers(-6, 6, 300)])
    mean, std = rng.uniform(-0.5, 0.5, s.size), rng.uniform(0.3, 2, s.size)
    p = rng.random((s.size, 5)) + 0.01
    small = np.clip(s, -2**61, 2**61)
    segs = [("qg", 4, s, np.stack([mean, std], 1)), ("cat", -2, small, p)]
    data = _stream_encode(segs)
    for (_, _, want, _), got in zip(segs, _stream_decode(data, segs)):
        np.testing.assert_array_equal(got, want)
    # a categorical stream escape holds at most 63 bits of zig-zag overflow: beyond, a clear error
    with pytest.raises(ValueError, match="beyond the model's support"):
        C.StreamEncoder().categorical(np.array([2**63 - 1]), p[:1], offset=-2**62)
    # ... which the table coder's layout (66-bit lengths) codes
    q = C.quantize_pmf(p[:2])
    v = np.array([2**63 - 1, -2**63])
    np.testing.assert_array_equal(C.decode_per_symbol(C.encode_per_symbol(v, q, [2**62, -2**62]), q,
                                                      [2**62, -2**62]), v)


def test_decoding_with_other_models_or_corrupt_escapes_raises():
    rng = np.random.default_rng(6)
    q = C.quantize_pmf(rng.random((50, 4)) + 0.1)
    v = np.full(50, 2**40)  # every symbol escapes with a 41-bit overflow
    data = C.encode_per_symbol(v, q, np.zeros(50, np.int64))
    with pytest.raises(C.CodingError):
        C.decode_per_symbol(data[:-4], q, np.zeros(50, np.int64))
    # the same payload read with an offset near the int64 top decodes beyond int64: refused
    with pytest.raises(C.CodingError, match="outside int64|not consumed"):
        C.decode_per_symbol(data, q, np.full(50, 2**63 - 2**30))
    dec = C.StreamDecoder(_stream_encode([("cat", 0, np.full(20, 10**6), rng.random((20, 3)))]))
    with pytest.raises(C.CodingError):
        dec.quantized_gaussian(np.zeros(20), np.ones(20), half_width=2)
        dec.finish()
