"""Closed forms for a Gaussian source X_0 ~ N(mu, Sigma) observed through X_t = alpha X_0 + sigma N.

Everything works in the eigenbasis of Sigma (Sigma = U diag(lam) U^T). SNR xi = alpha^2 / sigma^2.
Information quantities are returned in bits unless the name says nats.

  posterior_mean(x_t, alpha, sigma, mu, cov)   E[X_0 | X_t = x_t], the Bayes-optimal denoiser
  posterior_cov(alpha, sigma, cov)             Cov[X_0 | X_t]
  posterior_sample(rng, x_t, alpha, sigma, mu, cov)
  marginal(alpha, sigma, mu, cov)              (mean, cov) of X_t
  mmse(xi, cov)                                E||X_0 - E[X_0|X_t]||^2 = sum lam / (1 + xi lam)
  mutual_information(xi, cov)                  I(X_0; X_t) = 1/2 sum log2(1 + xi lam)  (bits)
  pf_ode_map(x_t, alpha, sigma, mu, cov)       the probability-flow ODE map X_t -> X_0 (exact OT map)
  pf_ode_mse(alpha, sigma, cov)                E||X_0 - pf_ode_map(X_t)||^2
  rate_distortion(D, cov), distortion_rate(R, cov)   reverse water-filling (bits, total squared error)
  distortion_perception(gamma, d_inf, gamma_star)    Eq. (16); gamma_star=None -> sqrt(d_inf), Eq. (19)
  dp_estimator(x_perfect, x_mmse, gamma, gamma_star) Eq. (17)
  w2_gaussian(mu1, cov1, mu2, cov2)            Wasserstein-2 distance between Gaussians
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _eig(cov):
    cov = jnp.asarray(cov, jnp.float32)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square matrix [d, d], got shape {cov.shape}.")
    lam, u = jnp.linalg.eigh(cov)
    return jnp.maximum(lam, 0.0), u


def marginal(alpha, sigma, mu, cov):
    """Mean [d] and covariance [d, d] of X_t = alpha X_0 + sigma N (scalars alpha, sigma)."""
    d = cov.shape[0]
    return alpha * jnp.asarray(mu), alpha ** 2 * jnp.asarray(cov) + sigma ** 2 * jnp.eye(d)


def posterior_mean(x_t, alpha, sigma, mu, cov):
    """E[X_0 | X_t = x_t] for x_t [..., d]; alpha, sigma scalars or broadcastable [..., 1]."""
    lam, u = _eig(cov)
    mu = jnp.asarray(mu, jnp.float32)
    r = jnp.asarray(x_t) - alpha * mu
    gain = alpha * lam / (alpha ** 2 * lam + sigma ** 2)        # [..., d] in the eigenbasis
    return mu + ((r @ u) * gain) @ u.T


def posterior_cov(alpha, sigma, cov):
    """Cov[X_0 | X_t] [d, d] (scalars alpha, sigma)."""
    lam, u = _eig(cov)
    post = lam * sigma ** 2 / (alpha ** 2 * lam + sigma ** 2)
    return (u * post) @ u.T


def posterior_sample(rng, x_t, alpha, sigma, mu, cov):
    """A sample of X_0 | X_t = x_t, x_t [n, d] (scalars alpha, sigma)."""
    lam, u = _eig(cov)
    post_sd = jnp.sqrt(lam * sigma ** 2 / (alpha ** 2 * lam + sigma ** 2))
    z = jax.random.normal(rng, jnp.shape(x_t))
    return posterior_mean(x_t, alpha, sigma, mu, cov) + (z * post_sd) @ u.T


def mmse(xi, cov):
    """mmse(xi) = sum_i lam_i / (1 + xi lam_i): total MSE of E[X_0 | X_t] at SNR xi (Eq. 25)."""
    lam, _ = _eig(cov)
    xi = jnp.asarray(xi, jnp.float32)
    return jnp.sum(lam / (1.0 + xi[..., None] * lam), axis=-1)


def mutual_information(xi, cov):
    """I(X_0; X_t) in bits at SNR xi: 1/2 sum_i log2(1 + xi lam_i)."""
    lam, _ = _eig(cov)
    xi = jnp.asarray(xi, jnp.float32)
    return 0.5 * jnp.sum(jnp.log1p(xi[..., None] * lam), axis=-1) / jnp.log(2.0)


def pf_ode_map(x_t, alpha, sigma, mu, cov):
    """Where the exact probability-flow ODE takes x_t at t = 0: mu + U diag(sqrt(lam/(alpha^2 lam + sigma^2))) U^T (x_t - alpha mu).

    (The PF-ODE of a Gaussian path preserves the eigenbasis and standardised coordinates.)
    """
    lam, u = _eig(cov)
    mu = jnp.asarray(mu, jnp.float32)
    gain = jnp.sqrt(lam / (alpha ** 2 * lam + sigma ** 2))
    return mu + (((jnp.asarray(x_t) - alpha * mu) @ u) * gain) @ u.T


def pf_ode_mse(alpha, sigma, cov):
    """E||X_0 - pf_ode_map(X_t)||^2 = sum_i 2 lam_i - 2 alpha lam_i sqrt(lam_i / (alpha^2 lam_i + sigma^2))."""
    lam, _ = _eig(cov)
    return jnp.sum(2 * lam - 2 * alpha * lam * jnp.sqrt(lam / (alpha ** 2 * lam + sigma ** 2)))


def _water_level(d, lam):
    """theta with sum_i min(theta, lam_i) = d (numpy, bisection-free: piecewise linear)."""
    lam = np.sort(np.asarray(lam, np.float64))
    n = len(lam)
    if d >= lam.sum():
        return float(lam[-1])
    cum = 0.0
    for i, l in enumerate(lam):
        # theta in [lam[i-1], lam[i]]: d = cum + theta * (n - i)
        theta = (d - cum) / (n - i)
        if theta <= l:
            return float(theta)
        cum += l
    return float(lam[-1])


def rate_distortion(D, cov):
    """R(D) in bits for total squared error D by reverse water-filling: sum_{lam_i > theta} 1/2 log2(lam_i/theta),
    theta such that sum_i min(theta, lam_i) = D. Returns 0 for D >= tr(Sigma)."""
    if D <= 0:
        raise ValueError(f"Distortion must be positive (R(0) is infinite for a Gaussian), got {D}.")
    lam = np.linalg.eigvalsh(np.asarray(cov, np.float64))
    theta = _water_level(float(D), lam)
    return float(np.sum(np.where(lam > theta, 0.5 * np.log2(lam / theta), 0.0)))


def distortion_rate(R, cov):
    """D(R): the inverse of `rate_distortion` (total squared error at R bits)."""
    if R < 0:
        raise ValueError(f"Rate must be >= 0 bits, got {R}.")
    lam = np.sort(np.linalg.eigvalsh(np.asarray(cov, np.float64)))[::-1]
    # active set grows with R: for k active components theta = (prod lam_1..k)^(1/k) 2^(-2R/k)
    for k in range(len(lam), 0, -1):
        theta = np.exp(np.mean(np.log(lam[:k])) - 2.0 * R * np.log(2.0) / k)
        if theta <= lam[k - 1] and (k == len(lam) or theta >= lam[k]):
            return float(k * theta + lam[k:].sum())
    return float(lam.sum())


def distortion_perception(gamma, d_inf, gamma_star=None):
    """D-P function under MSE and W2 (Eq. 16): D(gamma) = d_inf + max(gamma_star - gamma, 0)^2.

    gamma_star = W2(P_X, P_{X*}) of the MMSE estimator X*; None means sqrt(d_inf), the case of a
    rate-distortion-optimal quantiser (Eqs. 18, 19), where D(0) = 2 d_inf.
    """
    if gamma_star is None:
        gamma_star = jnp.sqrt(d_inf)
    return d_inf + jnp.square(jnp.maximum(gamma_star - gamma, 0.0))


def dp_estimator(x_perfect, x_mmse, gamma, gamma_star):
    """Eq. (17): (1 - gamma/gamma*) X0_hat + (gamma/gamma*) X*, for gamma <= gamma* (X* beyond)."""
    w = jnp.minimum(gamma / gamma_star, 1.0)
    return (1.0 - w) * x_perfect + w * x_mmse


def w2_gaussian(mu1, cov1, mu2, cov2):
    """W2(N(mu1, cov1), N(mu2, cov2)) = sqrt(|mu1-mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)) (numpy)."""
    def sqrtm(c):
        w, v = np.linalg.eigh(c)
        return (v * np.sqrt(np.maximum(w, 0))) @ v.T
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    s1 = sqrtm(c1)
    cross = sqrtm(s1 @ c2 @ s1)
    d2 = np.sum((np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)) ** 2) + np.trace(c1 + c2 - 2 * cross)
    return float(np.sqrt(max(d2, 0.0)))
