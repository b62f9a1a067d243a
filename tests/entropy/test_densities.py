"""Tests for gencomp_jax.entropy.densities against scipy.stats closed forms."""

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from gencomp_jax.entropy import densities as D

_DISTS = {"gaussian": stats.norm, "logistic": stats.logistic}


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_std_cdf_matches_scipy(family):
    u = np.linspace(-12, 12, 97)
    np.testing.assert_allclose(D.std_cdf(family, u), _DISTS[family].cdf(u), rtol=2e-5, atol=1e-30)


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_bin_probability_relative_accuracy_in_both_tails(family):
    loc, scale = 0.3, 1.7
    centres = np.arange(-15, 16, dtype=np.float64)
    lo, hi = centres - 0.5, centres + 0.5
    dist = _DISTS[family](loc, scale)
    ref = np.where(centres > loc, dist.sf(lo) - dist.sf(hi), dist.cdf(hi) - dist.cdf(lo))
    got = np.asarray(jax.jit(D.bin_probability, static_argnums=0)(family, loc, scale, lo, hi))
    ok = ref > 1e-9
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-4)  # relative, also far in the tails
    assert np.all(got >= D.MIN_PROB)
    # infinite bounds: whole line has mass 1, half-lines match the CDF
    np.testing.assert_allclose(D.bin_probability(family, loc, scale, -np.inf, np.inf), 1.0, rtol=1e-6)
    np.testing.assert_allclose(D.bin_probability(family, loc, scale, 2.0, np.inf), dist.sf(2.0), rtol=1e-5)


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_convolved_uniform_matches_numerical_integral(family):
    loc, scale, width = -0.4, 0.8, 1.0
    dist = _DISTS[family](loc, scale)

    def ref_mass(a, b):  # P(a < X + U <= b) = (1/w) int_{-w/2}^{w/2} [F(b - t) - F(a - t)] dt
        if a + b > 2 * loc:
            f = lambda t: dist.sf(a - t) - dist.sf(b - t)  # noqa: E731
        else:
            f = lambda t: dist.cdf(b - t) - dist.cdf(a - t)  # noqa: E731
        return integrate.quad(f, -width / 2, width / 2, epsabs=0, epsrel=1e-10)[0] / width

    centres = np.arange(-6, 7, dtype=np.float64)
    ref = np.array([ref_mass(c - 0.5, c + 0.5) for c in centres])
    got = np.asarray(D.convolved_uniform_bin_probability(family, loc, scale, width, centres - 0.5,
                                                         centres + 0.5))
    ok = ref > 1e-8
    np.testing.assert_allclose(got[ok], ref[ok], rtol=2e-3)
    # total mass over a wide grid is 1 and infinite bounds are handled
    grid = np.arange(-60, 61, dtype=np.float64)
    total = D.convolved_uniform_bin_probability(family, loc, scale, width, grid - 0.5, grid + 0.5)
    np.testing.assert_allclose(float(np.sum(np.asarray(total) * (np.asarray(total) > 2e-9))), 1.0,
                               rtol=1e-4)
    np.testing.assert_allclose(
        D.convolved_uniform_bin_probability(family, loc, scale, width, -np.inf, np.inf), 1.0)
    np.testing.assert_allclose(
        D.convolved_uniform_bin_probability(family, loc, scale, width, 1.0, np.inf),
        ref_mass(1.0, 60.0), rtol=1e-4)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="gaussian"):
        D.std_cdf("laplace", 0.0)
