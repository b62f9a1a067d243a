"""Tests for gencomp_jax.entropy.coder: exact round trips, escapes, table invariants, code length."""

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
