"""Closed forms for Gaussian sources: denoiser, mmse, I(X0;Xt), R(D), D-P function (checked by hand / Monte Carlo)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.theory import gaussian

MU = np.array([0.5, -0.3])
COV = np.array([[1.0, 0.3], [0.3, 0.5]])


def test_posterior_mean_and_mmse_match_direct_formulas():
    a, s = 0.8, 0.6
    x = np.random.default_rng(0).normal(size=(5, 2))
    direct = MU + (a * COV @ np.linalg.inv(a * a * COV + s * s * np.eye(2)) @ (x - a * MU).T).T
    np.testing.assert_allclose(gaussian.posterior_mean(x, a, s, MU, COV), direct, rtol=1e-5, atol=1e-6)
    post = COV - a * a * COV @ np.linalg.inv(a * a * COV + s * s * np.eye(2)) @ COV
    np.testing.assert_allclose(gaussian.posterior_cov(a, s, COV), post, rtol=1e-5, atol=1e-6)
    xi = a * a / (s * s)
    assert float(gaussian.mmse(xi, COV)) == pytest.approx(np.trace(post), rel=1e-5)
    mi = 0.5 * math.log2(np.linalg.det(np.eye(2) + xi * COV))
    assert float(gaussian.mutual_information(xi, COV)) == pytest.approx(mi, rel=1e-5)


def test_rate_distortion_by_hand():
    # scalar N(0, 4): R(D) = 1/2 log2(4 / D)
    assert gaussian.rate_distortion(1.0, [[4.0]]) == pytest.approx(1.0)
    assert gaussian.rate_distortion(5.0, [[4.0]]) == 0.0
    # diag(4, 1): D = 1.5 -> theta = 0.75 (both active); D = 3 -> theta = 2 (only the first)
    cov = np.diag([4.0, 1.0])
    assert gaussian.rate_distortion(1.5, cov) == pytest.approx(0.5 * math.log2(4 / 0.75) + 0.5 * math.log2(1 / 0.75))
    assert gaussian.rate_distortion(3.0, cov) == pytest.approx(0.5)
    for d in (0.2, 1.5, 3.0, 4.5):
        assert gaussian.distortion_rate(gaussian.rate_distortion(d, cov), cov) == pytest.approx(d, rel=1e-6)
    with pytest.raises(ValueError, match="positive"):
        gaussian.rate_distortion(0.0, cov)


def test_distortion_perception_closed_forms():
    # Eq. (19): D(0) = 2 D, D(gamma >= sqrt(D)) = D, in between by hand
    d = 0.25
    assert float(gaussian.distortion_perception(0.0, d)) == pytest.approx(0.5)
    assert float(gaussian.distortion_perception(0.7, d)) == pytest.approx(0.25)
    assert float(gaussian.distortion_perception(0.2, d)) == pytest.approx(0.25 + 0.3 ** 2)


def test_dp_interpolation_traverses_eq16_scalar_gaussian():
    """Scalar X ~ N(0,1), Y = X + N(0, 0.5): X* = E[X|Y] ~ N(0, c^2) with c^2 = 2/3, gamma* = W2 = 1 - c; the perfect-
    realism estimator X0_hat = X*/c. Eq. (17) mixtures have W2 = gamma and MSE = Eq. (16) (Monte Carlo, n = 2e5)."""
    rng = np.random.default_rng(1)
    n = 200_000
    x = rng.normal(size=n)
    yv = x + math.sqrt(0.5) * rng.normal(size=n)
    c2 = 1 / 1.5
    x_star = c2 * yv                                           # E[X | Y]
    c = math.sqrt(c2)
    gamma_star = gaussian.w2_gaussian([0.0], [[1.0]], [0.0], [[c2]])
    assert gamma_star == pytest.approx(1 - c)
    d_inf = 1 - c2
    for g in (0.0, 0.3 * gamma_star, 0.8 * gamma_star, 1.5 * gamma_star):
        xh = np.asarray(gaussian.dp_estimator(x_star / c, x_star, g, gamma_star))
        mse = np.mean((x - xh) ** 2)
        assert mse == pytest.approx(float(gaussian.distortion_perception(g, d_inf, gamma_star)), rel=0.01)
        w2 = gaussian.w2_gaussian([0.0], [[1.0]], [0.0], [[np.var(xh)]])
        assert w2 == pytest.approx(min(g, gamma_star), abs=3e-3)


def test_pf_ode_map_preserves_law_and_its_mse():
    a, s = 0.9, 0.3
    k = jax.random.PRNGKey(0)
    lam, u = np.linalg.eigh(COV)
    z = np.asarray(jax.random.normal(k, (100_000, 2)))
    x0 = MU + (z * np.sqrt(lam)) @ u.T
    xt = a * x0 + s * np.asarray(jax.random.normal(jax.random.PRNGKey(1), x0.shape))
    out = np.asarray(gaussian.pf_ode_map(jnp.asarray(xt, jnp.float32), a, s, MU, COV))
    np.testing.assert_allclose(np.cov(out.T), COV, atol=0.02)
    mse = np.mean(np.sum((out - x0) ** 2, -1))
    assert mse == pytest.approx(float(gaussian.pf_ode_mse(a, s, COV)), rel=0.02)
