"""Samplers with the exact Gaussian denoiser reproduce the source distribution; PF-ODE vs posterior sample."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.diffusion import process, samplers, schedules
from gencomp_jax.theory import gaussian
from tests.diffusion.gaussian_helpers import COV, MU, source, stats, x0_model

N = 4000
LINEAR = schedules.get_alpha_sigma("linear")
COSINE = schedules.get_alpha_sigma("cosine")
FLOW = schedules.flow_alpha_sigma


def _velocity_model(alpha_sigma):
    """Flow velocity u = alpha' x0_hat + sigma' eps_hat from the exact denoiser."""
    den = x0_model(alpha_sigma)

    def fn(x, t):
        a, s, da, ds = schedules.alpha_sigma_and_derivatives(alpha_sigma, t)
        a, s, da, ds = (v[:, None] for v in (a, s, da, ds))
        x0 = den(x, t)
        return da * x0 + ds * (x - a * x0) / jnp.maximum(s, 1e-12)
    return fn


CASES = {
    # name: (sampler, schedule, prediction-model builder, steps, extra kwargs)
    "ancestral": (samplers.ancestral_sampler, LINEAR, 200, {}),
    "ddim": (samplers.ddim_sampler, COSINE, 100, {}),
    "ode_euler": (functools.partial(samplers.ode_sampler, solver="euler"), LINEAR, 200, {}),
    "ode_heun": (functools.partial(samplers.ode_sampler, solver="heun"), COSINE, 40, {}),
    "sde": (samplers.sde_sampler, COSINE, 400, {}),
}


@pytest.mark.parametrize("name", sorted(CASES) + ["flow_ode"])
def test_sampler_matches_source_mean_and_cov(name):
    """Start from the exact marginal at t=1; mean within 0.08 (~5 standard errors), cov within 10% (Frobenius)."""
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(0), 3)
    x0 = source(k0, N)
    if name == "flow_ode":
        x1 = jax.random.normal(k1, x0.shape)  # flow path: X_1 = N exactly
        out = jax.jit(lambda x: samplers.flow_ode_sampler(_velocity_model(FLOW), x, steps=100))(x1)
    else:
        fn, sched, steps, kw = CASES[name]
        a1, s1 = sched(jnp.float32(1.0))
        x1 = a1 * x0 + s1 * jax.random.normal(k1, x0.shape)
        # fresh x1 independent of the reference samples x0 used only through their law
        x1 = a1 * source(k2, N) + s1 * jax.random.normal(k1, x0.shape)
        out = jax.jit(lambda x, k: fn(x0_model(sched), x, k, alpha_sigma=sched, prediction="x0", steps=steps,
                                      **kw))(x1, k2)
    m, c = stats(out)
    assert np.all(np.isfinite(m))
    np.testing.assert_allclose(m, np.asarray(MU), atol=0.08)
    rel = np.linalg.norm(c - np.asarray(COV)) / np.linalg.norm(np.asarray(COV))
    assert rel < 0.10, (name, c)


def test_predictions_give_identical_samplers():
    """The same exact denoiser expressed as eps / x0 / v gives the same DDIM trajectory (to float32 rounding)."""
    den = x0_model(COSINE)
    x1 = jax.random.normal(jax.random.PRNGKey(3), (64, 2))

    def as_pred(kind):
        def fn(x, t):
            a, s = COSINE(t)
            x0 = den(x, t)
            eps = (x - a[:, None] * x0) / s[:, None]
            return process.from_x0_eps(x0, eps, a[:, None], s[:, None], prediction=kind)
        return fn

    outs = jax.jit(lambda x1: [samplers.ddim_sampler(as_pred(k), x1, jax.random.PRNGKey(0), alpha_sigma=COSINE,
                                                     prediction=k, steps=20) for k in ("x0", "eps", "v", "score")])(x1)
    for o in outs[1:]:
        np.testing.assert_allclose(np.asarray(o), np.asarray(outs[0]), atol=2e-3)


def test_pf_ode_reconstruction_halves_posterior_sample_mse():
    """Theis et al. 3 dB result (exact for Gaussians at high SNR): from X_tau, PF-ODE MSE = posterior-sample MSE / 2.

    tau with SNR xi = 1000 (linear schedule); PF-ODE = Heun from tau to 0 with the exact denoiser;
    posterior sample = exact Gaussian posterior draw. Ratio within 5% of 1/2 (n = 20000, MC error ~1%).
    The exact ratio at this SNR (pf_ode_mse / 2 mmse) is 0.4995.
    """
    xi = 1000.0
    gamma_tau = -np.log(xi)
    tau = (gamma_tau - schedules.GAMMA_MIN) / (schedules.GAMMA_MAX - schedules.GAMMA_MIN)
    a, s = LINEAR(jnp.float32(tau))
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(1), 3)
    n = 20000
    x0 = source(k0, n)
    x_tau = a * x0 + s * jax.random.normal(k1, x0.shape)
    ode = jax.jit(lambda x: samplers.ode_sampler(x0_model(LINEAR), x, alpha_sigma=LINEAR, prediction="x0",
                                                 steps=30, t_start=float(tau), solver="heun"))(x_tau)
    post = gaussian.posterior_sample(k2, x_tau, a, s, MU, COV)
    mse_ode = float(jnp.mean(jnp.sum((ode - x0) ** 2, -1)))
    mse_post = float(jnp.mean(jnp.sum((post - x0) ** 2, -1)))
    assert mse_post == pytest.approx(2 * float(gaussian.mmse(a ** 2 / s ** 2, COV)), rel=0.03)
    assert mse_ode / mse_post == pytest.approx(0.5, rel=0.05)
    # and the sampler's end point is the exact PF-ODE map
    exact = gaussian.pf_ode_map(x_tau, a, s, MU, COV)
    assert float(jnp.max(jnp.abs(ode - exact))) < 2e-3


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="t_end < t_start"):
        samplers.ddim_sampler(lambda x, t: x, jnp.zeros((2, 2)), jax.random.PRNGKey(0), alpha_sigma=LINEAR,
                              steps=4, t_start=0.2, t_end=0.5)
    with pytest.raises(ValueError, match="Unknown prediction"):
        samplers.ode_sampler(lambda x, t: x, jnp.zeros((2, 2)), alpha_sigma=LINEAR, prediction="eta", steps=4)
    with pytest.raises(ValueError, match="Unknown sampler"):
        samplers.get_sampler("dpm++")
