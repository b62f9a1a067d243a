"""Zipf index code: exact round trips, ideal-length agreement, corrupt data."""

import numpy as np
import pytest

from gencomp_jax.channel import index_coding as ic
from gencomp_jax.channel.pfr import GaussianChannelCode, plan_chunks
from gencomp_jax.entropy.coder import CodingError


@pytest.mark.parametrize("nmax", [None, 2**16, 4, 1])
def test_roundtrip_and_length(nmax):
    rng = np.random.default_rng(0)
    hi = 2**40 if nmax is None else nmax
    idx = np.concatenate([rng.integers(0, hi, 300), rng.integers(0, min(hi, 8), 300)])
    kl = rng.uniform(0, 14, idx.shape[0])
    data = ic.encode_indices(idx, kl, nmax)
    np.testing.assert_array_equal(ic.decode_indices(data, idx.shape[0], kl, nmax), idx)
    ideal = ic.index_code_length_bits(idx, kl, nmax).sum()
    # real bytes within 3% + 3 streams x ~72 bits of the ideal Zipf length (16-bit table quantization)
    assert 8 * len(data) <= 1.03 * ideal + 216


def test_gaussian_codes_roundtrip_and_corruption():
    dims = [10, 1000, 7]
    codes = []
    rng = np.random.default_rng(1)
    for kl_q, d in zip([0, 8 * 40, 8 * 3], dims):
        p = plan_chunks(kl_q, d)
        codes.append(GaussianChannelCode(kl_q, rng.integers(0, 2**p.log2_candidates, p.num_chunks)))
    data = ic.encode_gaussian_codes(codes, dims)
    out = ic.decode_gaussian_codes(data, dims)
    for a, b in zip(codes, out):
        assert a.kl_q == b.kl_q and np.array_equal(a.indices, b.indices)
    with pytest.raises(CodingError):
        ic.decode_gaussian_codes(data[:-2], dims)


def test_cut_or_overlong_varint_heads_are_coding_errors():
    dims = [10, 7]
    codes = [GaussianChannelCode(8 * 3, np.zeros(plan_chunks(8 * 3, d).num_chunks, np.int64)) for d in dims]
    data = ic.encode_gaussian_codes(codes, dims)
    with pytest.raises(CodingError, match="truncated or corrupt"):
        ic.decode_gaussian_codes(data[:0], dims)
    with pytest.raises(CodingError, match="truncated or corrupt"):
        ic.decode_gaussian_codes(b"\xff" * 12, dims)  # an overlong varint KL
    with pytest.raises(CodingError):
        ic.decode_indices(b"\x80", 3, 1.0)
