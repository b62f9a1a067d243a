"""Shared fixtures: a 2-D Gaussian source and its exact (Bayes-optimal) denoiser as the "model"."""

import jax.numpy as jnp
import numpy as np

from gencomp_jax.theory import gaussian

MU = jnp.array([0.5, -0.3], jnp.float32)
COV = jnp.array([[1.0, 0.3], [0.3, 0.5]], jnp.float32)


def source(rng, n, mu=MU, cov=COV):
    """n samples of N(mu, cov) (jax key rng)."""
    import jax
    lam, u = np.linalg.eigh(np.asarray(cov))
    z = jax.random.normal(rng, (n, len(lam)))
    return mu + (z * jnp.sqrt(jnp.asarray(lam, jnp.float32))) @ jnp.asarray(u, jnp.float32).T


def x0_model(alpha_sigma, mu=MU, cov=COV):
    """model_fn(x [B, d], t [B]) -> E[X_0 | X_t = x]: the exact denoiser on the path alpha_sigma."""
    def fn(x, t):
        a, s = alpha_sigma(t)
        return gaussian.posterior_mean(x, a[:, None], s[:, None], mu, cov)
    return fn


def stats(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x.T)
