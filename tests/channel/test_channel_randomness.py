"""Shared randomness: counter addressing, 64-bit safety, the DiffC int32-offset regression."""

import jax
import numpy as np
import pytest

from gencomp_jax.channel import pfr
from gencomp_jax.channel.randomness import PURPOSE_PFR, SharedRandomness


def _data(k):
    return np.asarray(jax.random.key_data(k))


def test_same_key_any_order_and_64bit_counters():
    a, b = SharedRandomness(2**64 - 1), SharedRandomness(2**64 - 1)
    np.testing.assert_array_equal(_data(a.key(2, 5, 7)), _data(b.key(2, 5, 7)))
    # counters that agree modulo 2**32 / 2**16 must give different keys (no truncation)
    keys = {tuple(_data(a.key(2, c))) for c in (1, 2**16 + 1, 2**32 + 1, 2**63 + 1)}
    assert len(keys) == 4
    assert tuple(_data(a.key(2, 1, 0))) != tuple(_data(a.key(2, 0, 1)))  # path order matters
    with pytest.raises(ValueError, match="2\\*\\*64"):
        SharedRandomness(2**64)
    with pytest.raises(ValueError):
        a.key(-1)


def test_int32_offset_regression_large_dim_indices_near_2_16():
    """DiffC bug: offset idx*dim overflowed int32 for dim >= 32768, so the encoder scored a different
    candidate than the decoder regenerated.  Here dim = 70,000 > 2**16 and indices straddle 2**16:
    the candidate inside a vectorised block must equal the one regenerated alone (exact equality)."""
    dim = 70_000
    key = SharedRandomness(123).key(PURPOSE_PFR, 0, 1)
    start = 2**16 - 4
    block = np.asarray(pfr.gaussian_candidates(key, start, 8, dim))
    for j in range(8):
        np.testing.assert_array_equal(np.asarray(block[j]), np.asarray(pfr.gaussian_candidate(key, start + j, dim)))
    # aliasing check: index i and i + 2**16 (and i + 2**15) are different candidates
    c0 = np.asarray(pfr.gaussian_candidate(key, 5, dim))
    for other in (5 + 2**15, 5 + 2**16, 5 + 2**31):
        assert not np.allclose(c0, np.asarray(pfr.gaussian_candidate(key, other, dim)))


def test_permutation_reproducible():
    r = SharedRandomness(9)
    p = r.permutation((3, 1), 100_000)
    np.testing.assert_array_equal(p, r.permutation((3, 1), 100_000))
    assert np.array_equal(np.sort(p), np.arange(100_000))
    assert not np.array_equal(p, r.permutation((3, 2), 100_000))
