"""Tests for the learned factorized prior and the Gaussian conditional tables."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from gencomp_jax.entropy import coder as C
from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy.factorized import FactorizedPrior, factorized_tables


def _fit_prior(samples, steps=300):
    prior = FactorizedPrior(channels=samples.shape[-1])
    params = prior.init(jax.random.PRNGKey(0), samples[:1])
    tx = optax.adam(3e-2)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, key):
        noisy = samples + jax.random.uniform(key, samples.shape, minval=-0.5, maxval=0.5)
        loss, g = jax.value_and_grad(lambda p: -jnp.mean(jnp.log2(prior.apply(p, noisy))))(params)
        upd, opt = tx.update(g, opt)
        return optax.apply_updates(params, upd), opt, loss

    for i in range(steps):
        params, opt, _ = step(params, opt, jax.random.PRNGKey(i))
    return prior, params


def test_factorized_prior_learns_a_gaussian_and_tables_code_it():
    rng = np.random.default_rng(0)
    locs, scales = np.array([0.0, 3.3]), np.array([0.6, 4.0])
    samples = jnp.asarray(rng.normal(locs, scales, size=(4000, 2)), jnp.float32)
    prior, params = _fit_prior(samples)
    # the likelihoods form a distribution over the integers: they sum to ~1 per channel
    grid = jnp.arange(-60.0, 61.0)[:, None] * jnp.ones((1, 2))
    mass = np.asarray(prior.apply(params, grid)).sum(0)
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)
    # median and learned density close to the truth (fit with 4000 samples: loose tolerances)
    meds = np.asarray(prior.apply(params, method=FactorizedPrior.medians))
    np.testing.assert_allclose(meds, locs, atol=0.35)
    # cross-entropy of the model on the integer-rounded truth within 0.1 bit of its entropy
    v = np.round(samples)
    bits = -np.log2(np.asarray(prior.apply(params, v))).mean(0)
    x = np.arange(-40, 41)[:, None]
    p_true = stats.norm(locs, scales).cdf(x + 0.5) - stats.norm(locs, scales).cdf(x - 0.5)
    ent = -(p_true * np.log2(np.maximum(p_true, 1e-300))).sum(0)
    assert np.all(bits < ent + 0.15), (bits, ent)
    # the tables are a pure function of params and code the symbols near the model's estimate
    t = factorized_tables(prior, params)
    t2 = factorized_tables(prior, jax.tree_util.tree_map(jnp.array, params))
    for k in ("tables", "offsets", "lengths", "medians"):
        np.testing.assert_array_equal(t[k], t2[k])
    sym = np.round(np.asarray(samples) - t["medians"]).astype(np.int64)
    ch = np.tile(np.arange(2), len(sym))
    data = C.encode_indexed(sym.reshape(-1), t["tables"], t["offsets"], ch, lengths=t["lengths"])
    np.testing.assert_array_equal(
        C.decode_indexed(data, t["tables"], t["offsets"], ch, lengths=t["lengths"]), sym.reshape(-1))
    est = -np.log2(np.asarray(prior.apply(params, jnp.asarray(sym + t["medians"])))).sum()
    assert len(data) * 8 <= 1.01 * est + 64


def test_host_tables_are_the_flax_density_in_float64():
    """HostFactorizedPrior (NumPy float64, what integer files' z tables come from) against the flax module:
    the same density to float32 precision, medians within 1e-6, quantized tables within one unit; the pmf
    sums to 1 and its median is where the CDF crosses 1/2."""
    from gencomp_jax.entropy.factorized import HostFactorizedPrior

    rng = np.random.default_rng(1)
    locs, scales = np.array([-1.7, 0.2, 5.0]), np.array([0.3, 1.5, 6.0])
    samples = jnp.asarray(rng.normal(locs, scales, size=(3000, 3)), jnp.float32)
    prior, params = _fit_prior(samples, steps=200)
    host = HostFactorizedPrior(params["params"])
    x = np.linspace(-30, 30, 241)[:, None] * np.ones((1, 3))
    p_flax = np.asarray(prior.apply(params, jnp.asarray(x, jnp.float32)), np.float64)
    p_host = host.pmf(x.T).T
    big = p_flax > 1e-4
    np.testing.assert_allclose(p_host[big], p_flax[big], rtol=2e-5)
    grid = np.arange(-80, 81)[None, :] + np.zeros((3, 1))
    np.testing.assert_allclose(host.pmf(grid).sum(1), 1.0, atol=1e-6)
    meds = host.medians()
    np.testing.assert_allclose(host.logits_cdf(meds[:, None])[:, 0], 0.0, atol=1e-9)   # CDF(median) = 1/2
    meds_flax = np.asarray(prior.apply(params, method=FactorizedPrior.medians))
    # the float32 bisection ends where the float32 logits cross 0: a few ulps from the float64 median
    # (here up to 4 ulps), which is why those medians can move on another platform
    np.testing.assert_allclose(meds, meds_flax, rtol=0, atol=1e-6)
    t_flax, t_host = factorized_tables(prior, params), factorized_tables(prior, params, host=True)
    for k in ("offsets", "lengths"):
        np.testing.assert_array_equal(t_host[k], t_flax[k])
    assert np.abs(t_host["tables"] - t_flax["tables"]).max() <= 1   # quantized pmf: at most one unit moves
    assert t_host["medians"].dtype == np.float32


def test_gaussian_tables_and_indexes():
    t = gc.gaussian_tables()
    assert np.all(t["tables"].sum(1) == 2 ** C.PRECISION)
    assert np.all(t["tables"][np.arange(len(t["lengths"])), t["lengths"] - 1] >= 1)
    # nearest table scale in log space; below-minimum scales map to 0, huge ones to the last entry
    s = t["scales"]
    idx = gc.scale_indexes(np.array([0.01, s[0], s[10] * 1.001, np.sqrt(s[10] * s[11]) * 1.001, 1e6]))
    np.testing.assert_array_equal(idx, [0, 0, 10, 11, len(s) - 1])
    # table probabilities match the closed form Gaussian bin masses (quantization error only)
    i = 100
    p = t["tables"][i, :t["lengths"][i] - 1] / 2 ** C.PRECISION
    v = np.arange(len(p)) + t["offsets"][i]
    ref = stats.norm(0, s[i]).cdf(v + 0.5) - stats.norm(0, s[i]).cdf(v - 0.5)
    np.testing.assert_allclose(p, ref, atol=2 / 2 ** C.PRECISION)
    np.testing.assert_allclose(gc.likelihood(jnp.asarray(v, jnp.float32), s[i]), np.maximum(ref, 1e-9),
                               rtol=1e-3, atol=1e-8)
