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


# ---------------------------------------------------------------------------------------------------
# Two-stage coding (review Sec. III-B): an embedding Y of X, the posterior P(X | Y) as the ideal
# conditional denoiser, and the realism knob X_hat(p) = (1 - p) X* + p X_hat_0 (Eq. 17).
#
#   linear_gaussian_posterior(y, H, noise_cov, mu, cov)     (E[X|Y=y], Cov[X|Y]) for Y = H X + N(0, R)
#   conditional_posterior_mean(x_t, alpha, sigma, y, H, noise_cov, mu, cov)
#                                                           E[X_0 | X_t, Y]: exact conditional x0-denoiser
#   realism_interpolation(x_mmse, x_sample, realism)        Eq. (17) with realism p = 1 - gamma / gamma*
#   realism_mse(realism, d_mmse)                            D*(1 + p^2): MSE of the interpolation when
#                                                           x_sample ~ P(X|Y) (independent given Y)
#   lloyd_max_gaussian(levels)                              the MMSE scalar quantizer of N(0, 1): a
#                                                           deterministic encoder for which Eq. (18) holds
#   quantized_gaussian_posterior_mean(x_t, alpha, sigma, lo, hi)
#                                                           E[X_0 | X_t, lo < X_0 < hi], X_0 ~ N(0, 1)
#   w2_to_gaussian_1d(samples, mu, sd)                      W2(empirical law of samples, N(mu, sd^2))


def linear_gaussian_posterior(y, H, noise_cov, mu, cov):
    """X ~ N(mu, cov) [d], Y = H X + N, N ~ N(0, noise_cov) [k]: returns (E[X | Y = y] [..., d], Cov[X | Y] [d, d]).

    Gain K = cov H^T (H cov H^T + noise_cov)^-1; mean = mu + K (y - H mu); Cov = cov - K H cov (float32 jnp).
    """
    H = jnp.atleast_2d(jnp.asarray(H, jnp.float32))
    cov = jnp.asarray(cov, jnp.float32)
    mu = jnp.asarray(mu, jnp.float32)
    noise_cov = jnp.atleast_2d(jnp.asarray(noise_cov, jnp.float32))
    if H.shape[1] != cov.shape[0] or noise_cov.shape != (H.shape[0], H.shape[0]):
        raise ValueError(f"Shapes do not fit Y = H X + N: H {H.shape}, cov {cov.shape}, noise_cov {noise_cov.shape}.")
    s = H @ cov @ H.T + noise_cov
    gain = jnp.linalg.solve(s, H @ cov).T                        # [d, k] = cov H^T s^-1 (s symmetric)
    mean = mu + (jnp.asarray(y, jnp.float32) - mu @ H.T) @ gain.T
    post = cov - gain @ H @ cov
    return mean, 0.5 * (post + post.T)


def conditional_posterior_mean(x_t, alpha, sigma, y, H, noise_cov, mu, cov):
    """E[X_0 | X_t = x_t, Y = y] for the linear-Gaussian embedding of `linear_gaussian_posterior`.

    Given Y the source is N(m(y), C), and X_t given (X_0, Y) depends on X_0 only, so this is
    `posterior_mean` with the prior replaced by P(X | Y): the Bayes-optimal conditional x0-prediction,
    which a conditional diffusion decoder (CDC, HFD) learns. x_t, y: [..., d], [..., k]; alpha, sigma
    scalars or [..., 1].
    """
    m, c = linear_gaussian_posterior(y, H, noise_cov, mu, cov)
    return posterior_mean(x_t, alpha, sigma, m, c)


def realism_interpolation(x_mmse, x_sample, realism):
    """X_hat(p) = (1 - p) X* + p X_hat_0, Eq. (17) written with the realism knob p = 1 - gamma / gamma* in [0, 1].

    x_mmse: X* (the MMSE reconstruction); x_sample: X_hat_0 (a perfect-realism reconstruction, e.g. a
    posterior sample); realism: scalar or broadcastable. p = 0 is the MMSE estimate, p = 1 the sample.
    """
    p = jnp.asarray(realism, jnp.float32)
    return dp_estimator(x_sample, x_mmse, 1.0 - p, 1.0)


def realism_mse(realism, d_mmse):
    """E||X - X_hat(p)||^2 = D* (1 + p^2) when X_hat_0 ~ P(X | Y) is drawn independently of X given Y.

    (X - X* and X_hat_0 - X* are then uncorrelated given Y, each with error D*.) p = 1: 2 D*, Eq. (19).
    """
    p = jnp.asarray(realism, jnp.float32)
    return d_mmse * (1.0 + p ** 2)


def lloyd_max_gaussian(levels: int, *, iters: int = 500):
    """The MMSE (Lloyd-Max) scalar quantizer of N(0, 1) with `levels` cells (numpy float64).

    Returns (edges [levels + 1] with edges[0] = -inf, edges[-1] = +inf; centroids [levels] = E[X | cell];
    d_mmse = E(X - centroid)^2). For this deterministic encoder the cell -> centroid map is the optimal
    transport from P_X to P_X*, so W2^2(P_X, P_X*) = d_mmse (Eq. 18) and Eq. (19) is the D-P function.
    """
    from scipy.special import ndtr

    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}.")
    pdf = lambda v: np.exp(-0.5 * np.square(np.clip(v, -40.0, 40.0))) / np.sqrt(2 * np.pi)  # noqa: E731
    c = np.linspace(-1.5, 1.5, levels) * (1.0 + 0.25 * np.log2(levels))
    for _ in range(iters):
        edges = np.concatenate([[-np.inf], 0.5 * (c[1:] + c[:-1]), [np.inf]])
        lo, hi = edges[:-1], edges[1:]
        mass = ndtr(hi) - ndtr(lo)
        c = (pdf(lo) - pdf(hi)) / mass
    edges = np.concatenate([[-np.inf], 0.5 * (c[1:] + c[:-1]), [np.inf]])
    lo, hi = edges[:-1], edges[1:]
    mass = ndtr(hi) - ndtr(lo)
    lo_f, hi_f = np.nan_to_num(lo, neginf=0.0), np.nan_to_num(hi, posinf=0.0)
    second = mass + lo_f * pdf(lo) - hi_f * pdf(hi)               # E[X^2 1{lo < X < hi}]
    d = float(np.sum(second - mass * c ** 2))
    return edges, c, d


def _truncnorm_ratio(a, b):
    """(phi(a) - phi(b)) / (Phi(b) - Phi(a)) for a < b, stable in float32 (the mean of N(0, 1) on [a, b])."""
    from jax.scipy.special import log_ndtr

    def mills(b):  # phi(b) / Phi(b); asymptotic series where log_ndtr(b) is too large for float32
        bs = jnp.minimum(b, -8.0)
        r2 = 1.0 / bs ** 2
        series = -bs / (1.0 - r2 * (1.0 - r2 * (3.0 - r2 * (15.0 - 105.0 * r2))))
        bd = jnp.maximum(b, -8.0)
        direct = jnp.exp(-0.5 * bd ** 2 - 0.5 * jnp.log(2 * jnp.pi) - log_ndtr(bd))
        return jnp.where(b < -8.0, series, direct)

    def left(a, b):  # accurate when the cell lies mostly left of 0 (a + b <= 0)
        return mills(b) * jnp.expm1(0.5 * (b ** 2 - a ** 2)) / (-jnp.expm1(log_ndtr(a) - log_ndtr(b)))

    flip = (a + b) > 0
    return jnp.where(flip, -left(-b, -a), left(a, b))


def quantized_gaussian_posterior_mean(x_t, alpha, sigma, lo, hi):
    """E[X_0 | X_t = x_t, lo < X_0 < hi] for X_0 ~ N(0, 1) (elementwise; jnp, jit-able).

    Given X_t, X_0 is N(m, v) with m = alpha x_t / (alpha^2 + sigma^2), v = sigma^2 / (alpha^2 + sigma^2);
    given also its quantizer cell it is that Gaussian truncated to [lo, hi]: the exact conditional
    denoiser for the embedding Y = cell index. Infinite edges are allowed.
    """
    a2s2 = alpha ** 2 + sigma ** 2
    m = alpha * x_t / a2s2
    s = jnp.sqrt(sigma ** 2 / a2s2)
    za = (jnp.asarray(lo, jnp.float32) - m) / s
    zb = (jnp.asarray(hi, jnp.float32) - m) / s
    return m + s * _truncnorm_ratio(za, zb)


def w2_to_gaussian_1d(samples, mu=0.0, sd=1.0):
    """W2 between the empirical law of 1-D `samples` [n] and N(mu, sd^2) (numpy float64).

    Monotone coupling: sqrt(mean_i (x_(i) - F^-1((i + 1/2) / n))^2) with the sorted samples x_(i);
    converges to the exact W2 as n grows.
    """
    from scipy.special import ndtri

    x = np.sort(np.asarray(samples, np.float64).reshape(-1))
    q = mu + sd * ndtri((np.arange(x.size) + 0.5) / x.size)
    return float(np.sqrt(np.mean((x - q) ** 2)))
