"""UQDM.reverse, flow_step and ancestral_step against the paper's formulas written out here (issue 11).

Independent of models/uqdm.py's own helpers: alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma) in
float64, and the variance ratio sigma_{t|s}^2 / sigma_t^2 written through alpha and sigma (the model
uses -expm1(gamma_s - gamma_t)); the network output comes from UQDM.predict. Swapping sigma_t and
sigma_s in the kernel's base scale or in the flow step fails here (checked). With the
official weights the same pieces are checked against the reference's own outputs in
tests/eval/test_pretrained_uqdm.py; this file needs no checkpoint.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.models import uqdm


@pytest.fixture(scope="module")
def setup():
    cfg = uqdm.default_model_config()
    cfg.net = {"arch": "vdm_unet", "embedding_dim": 8, "n_blocks": 1, "norm_groups": 4}
    model = uqdm.UQDM(cfg)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3), minval=-1, maxval=1)
    params = model.init(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))
    # non-trivial network output: perturb the zero-initialised output layer
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.3 * jax.random.normal(jax.random.PRNGKey(3), v.shape)
        if "conv_out" in jax.tree_util.keystr(p) else v, params)
    z = jax.random.normal(jax.random.PRNGKey(4), x.shape) * 1.5
    return cfg, model, params, z


def _alpha_sigma(g):
    g = np.float64(g)
    return math.sqrt(1 / (1 + math.exp(g))), math.sqrt(1 / (1 + math.exp(-g)))


@pytest.mark.parametrize("i", [0, 1, 3])
def test_reverse_kernel_and_flow_step_follow_the_formulas(setup, i):
    cfg, model, params, z = setup
    T = cfg.diffusion_steps
    g = np.asarray(model.apply(params, method=uqdm.UQDM.gammas), np.float64)
    a_t, s_t = _alpha_sigma(g[i])
    a_s, s_s = _alpha_sigma(g[i + 1])
    assert g[0] == pytest.approx(cfg.gamma_max) and len(g) == T + 1
    t_in = (g[i] - cfg.gamma_min) / (cfg.gamma_max - cfg.gamma_min)
    eps, f = model.apply(params, z, jnp.float32(g[i]), method=uqdm.UQDM.predict)
    eps, f, zn = (np.asarray(v, np.float64) for v in (eps, f, z))
    assert 0 <= t_in <= 1
    # sigma_{t|s}^2 / sigma_t^2 with sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2
    ratio = (s_t ** 2 - (a_t / a_s) ** 2 * s_s ** 2) / s_t ** 2
    x_hat = np.clip((zn - s_t * eps) / a_t, -1, 1)
    loc = a_s * ((1 - ratio) / a_t * zn + ratio * x_hat)       # posterior mean with x -> x_hat
    std = s_t * math.sqrt(ratio) * f                           # "forward_kernel" base std x learned factor
    width = math.sqrt(12 * s_s ** 2 * ratio)                    # uniform with the posterior's variance
    r = model.apply(params, z, i, method=uqdm.UQDM.reverse)
    np.testing.assert_allclose(r["loc"], loc, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(r["scale"]) * math.pi / math.sqrt(3), std, rtol=2e-5)
    assert float(r["width"]) == pytest.approx(width, rel=2e-5)
    # DDIM / probability flow: z_s = alpha_s x_hat_unclipped + sigma_s eps
    flow = a_s * (zn - s_t * eps) / a_t + s_s * eps
    np.testing.assert_allclose(model.apply(params, z, i, method=uqdm.UQDM.flow_step), flow, rtol=2e-5, atol=2e-5)


def test_ancestral_step_has_the_kernel_mean_and_variance(setup):
    """Samples of p(z_s | z_t): mean loc and variance std^2 + width^2 / 12 per element (1000 draws)."""
    cfg, model, params, z = setup
    i = 1
    r = model.apply(params, z, i, method=uqdm.UQDM.reverse)
    draws = jax.vmap(lambda k: model.apply(params, z, i, k, method=uqdm.UQDM.ancestral_step))(
        jax.random.split(jax.random.PRNGKey(5), 1000))
    std = np.asarray(r["scale"]) * math.pi / math.sqrt(3)
    var = std ** 2 + float(r["width"]) ** 2 / 12
    m = np.asarray(jnp.mean(draws, 0))
    v = np.asarray(jnp.var(draws, 0))
    # standard errors of the mean and of the variance (logistic kurtosis 4.2) over 1000 draws, 5 sigma
    assert np.all(np.abs(m - np.asarray(r["loc"])) < 5 * np.sqrt(var / 1000))
    assert np.all(np.abs(v / var - 1) < 5 * np.sqrt(3.2 / 1000) + 0.02)
