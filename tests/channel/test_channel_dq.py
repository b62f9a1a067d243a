"""Dithered quantization: exact uniform channel, real bits = I(X;Y), tails, training proxy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from gencomp_jax.channel import dq
from gencomp_jax.channel.randomness import PURPOSE_DQ, SharedRandomness
from gencomp_jax.entropy.coder import CodingError

N = 100_000  # elements; std error of the mean code length ~ 1.5 bit / sqrt(N) = 0.005 bit
S, D = 3.0, 1.0  # Gaussian source N(0, S^2), step D


def _mi_bits(s, d):
    """I(X;Y) = h(Y) - log2 d for X ~ N(0, s^2), Y = X + U(-d/2, d/2), by numerical integration."""
    def p(t):
        return (stats.norm.cdf((t + d / 2) / s) - stats.norm.cdf((t - d / 2) / s)) / d
    h = integrate.quad(lambda t: -special.xlogy(p(t), p(t)) / np.log(2), -10 * s, 10 * s, limit=400)[0]
    return h - np.log2(d)


@pytest.fixture(scope="module")
def coded():
    x = np.random.default_rng(0).normal(0, S, N).astype(np.float32)
    w = dq.dither(SharedRandomness(5).key(PURPOSE_DQ, 0), (N,), D)
    data, y = dq.dq_encode(x, 0.0, S, D, w=w)
    return x, w, data, np.asarray(y)


def test_roundtrip_exact(coded):
    x, w, data, y = coded
    y2 = dq.dq_decode(data, jnp.zeros(N), S, D, w=w)
    np.testing.assert_array_equal(np.asarray(y2), y)


def test_noise_is_uniform_and_independent_of_x(coded):
    x, _, _, y = coded
    e = (y - x) / D
    # KS at alpha = 1e-3 (fixed seed; power: a 1% miscalibrated width gives KS ~ 0.01 >> 0.006 critical)
    assert stats.kstest(e, "uniform", args=(-0.5, 1.0)).pvalue > 1e-3
    # independence: |corr(e, x)| and |corr(e, x^2)| below 4 / sqrt(N) (4 sigma under independence)
    for f in (x, x * x, np.abs(x)):
        assert abs(np.corrcoef(e, f)[0, 1]) < 4 / np.sqrt(N)
    # conditional law: e | x > 2 and e | x < -2 are the same uniform (two-sample KS, alpha 1e-3)
    assert stats.ks_2samp(e[x > 2], e[x < -2]).pvalue > 1e-3


def test_real_bits_match_mutual_information(coded):
    x, w, data, y = coded
    mi = _mi_bits(S, D)
    real = 8 * len(data) / N
    ideal = float(jnp.mean(dq.dq_bits(dq.dq_quantize(x, w, D), w, 0.0, S, D)))
    # 2% tolerance (brief); sampling error ~0.005 bit, coder+16-bit tables overhead ~0.1%
    assert abs(real - mi) < 0.02 * mi, (real, ideal, mi)
    assert abs(ideal - mi) < 0.02 * mi
    # the training proxy Y = X + U has the same expected rate
    yp = dq.dq_noisy_proxy(jax.random.key(3), x, D)
    proxy = float(jnp.mean(dq.dq_rate_proxy_bits(yp, 0.0, S, D)))
    assert abs(proxy - mi) < 0.02 * mi


def test_tails_logistic_and_per_element_delta():
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.normal(0, 1, n).astype(np.float32)
    x[:5] = [1e4, -1e4, 300.0, -77.0, 5e5]  # far outside the table: escape path
    delta = rng.uniform(0.1, 2.0, n).astype(np.float32)
    w = dq.dither(jax.random.key(0), (n,), delta)
    for fam in ("gaussian", "logistic"):
        data, y = dq.dq_encode(x, 0.0, 0.7, delta, w=w, family=fam)
        y2 = dq.dq_decode(data, jnp.zeros(n), 0.7, delta, w=w, family=fam)
        np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
        assert np.all(np.abs(np.asarray(y) - x) <= delta / 2 * (1 + 1e-5) + 1e-2 * (np.abs(x) > 1e3))


def test_mixed_scales_round_trip_and_rate():
    """scale/delta from 1e-2 to 1e5 (every support class, tiny and huge models, escapes): exact round trip,
    and real bits within 0.5% + 64 bits of the ideal -log2 P(K | W) summed over elements."""
    rng = np.random.default_rng(4)
    n = 3000
    scale = np.exp(rng.uniform(np.log(1e-2), np.log(1e5), n)).astype(np.float32)
    loc = rng.normal(0, 3, n).astype(np.float32)
    x = (loc + scale * rng.standard_t(3, n)).astype(np.float32)  # heavy tails: some escapes
    x = np.clip(x, -1e6, 1e6)
    w = dq.dither(jax.random.key(7), (n,), 1.0)
    for fam in ("gaussian", "logistic"):
        data, y = dq.dq_encode(x, loc, scale, 1.0, w=w, family=fam)
        y2 = dq.dq_decode(data, loc, scale, 1.0, w=w, family=fam)
        np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
        ideal = float(jnp.sum(dq.dq_bits(dq.dq_quantize(x, w, 1.0), w, loc, scale, 1.0, family=fam)))
        assert 8 * len(data) <= 1.005 * ideal + 64, (fam, 8 * len(data), ideal)


def test_errors_are_clear():
    w = jnp.zeros(3)
    with pytest.raises(ValueError, match="delta"):
        dq.dq_encode(jnp.zeros(3), 0.0, 1.0, 0.0, w=w)
    with pytest.raises(ValueError, match="dither"):
        dq.dq_encode(jnp.zeros(3), 0.0, 1.0, 1.0, w=jnp.ones(3))
    data, _ = dq.dq_encode(jnp.zeros(3), 0.0, 1.0, 1.0, w=w)
    with pytest.raises(CodingError):
        dq.dq_decode(data[:-1], jnp.zeros(3), 1.0, 1.0, w=w)
