"""X0Denoising (CDC / HFD decoder objective): the weighted loss against a Gaussian closed form, conditioning."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.diffusion.schedules import alpha_sigma_from_gamma, cosine_gamma
from gencomp_jax.objectives.denoising import DenoisingTerms, X0Denoising, min_snr_weight, x0_denoising_terms

GMIN, GMAX = -10.0, 10.0
GAMMA = functools.partial(cosine_gamma, gamma_min=GMIN, gamma_max=GMAX)
NET = dict(arch="unet", ch=8, ch_mult=(1,), num_res_blocks=1, attn_levels=(), mid_attention=False, norm_groups=4)


def _oracle(var, prediction):
    """The MMSE denoiser of x ~ N(0, var I): x0_hat = E[x | z_t] = a var z / (a^2 var + s^2) (as `prediction`)."""
    def fn(z, t):
        a, s = alpha_sigma_from_gamma(GAMMA(t)[:, None, None, None])
        x0 = a * var * z / (a * a * var + s * s)
        return x0 if prediction == "x0" else (z - a * x0) / s
    return fn


def _expected_loss(var, max_snr):
    """E_t[min(SNR, max_snr) * posterior variance], t ~ U(0, 1), by the midpoint rule on 2e5 points."""
    t = (np.arange(200_000) + 0.5) / 200_000
    g = np.asarray(GAMMA(jnp.asarray(t, jnp.float32)), np.float64)
    a2, s2 = 1 / (1 + np.exp(g)), 1 / (1 + np.exp(-g))
    return float(np.mean(np.minimum(np.exp(-g), max_snr) * var * s2 / (a2 * var + s2)))


@pytest.mark.parametrize("prediction", ["x0", "eps"])
def test_oracle_loss_matches_the_gaussian_closed_form(prediction):
    """With the posterior-mean denoiser of a Gaussian source, E[loss] = E_t[min(SNR, 5) Var(x | z_t)]; an
    eps-predicting network gives the same x0-space loss. 8192 examples x 48 dims: the Monte Carlo standard
    error is measured and the tolerance is 4 of them (a weight of min(SNR, 1) or no clipping is off by >30%)."""
    var = 0.25
    x = math.sqrt(var) * jax.random.normal(jax.random.PRNGKey(0), (8192, 4, 4, 3))
    terms = jax.jit(lambda x, k: x0_denoising_terms(_oracle(var, prediction), x, k, gamma_fn=GAMMA,
                                                    prediction=prediction))(x, jax.random.PRNGKey(1))
    assert isinstance(terms, DenoisingTerms) and terms.x0_hat.shape == x.shape
    est = np.asarray(terms.loss, np.float64)
    want = _expected_loss(var, 5.0)
    assert abs(est.mean() - want) < 4 * est.std() / math.sqrt(est.size) + 1e-6, (est.mean(), want)
    assert abs(_expected_loss(var, 1.0) - want) > 0.3 * want   # the test can tell the weights apart
    np.testing.assert_allclose(terms.weight, np.minimum(np.exp(-np.asarray(GAMMA(terms.t))), 5.0), rtol=1e-4)


def test_min_snr_weight_is_finite_at_extreme_log_snr():
    g = jnp.array([-1e4, -20.0, math.log(1 / 5), 0.0, 3.0, 1e4])
    np.testing.assert_allclose(min_snr_weight(g, 5.0), [5, 5, 5, 1, math.exp(-3), 0], rtol=1e-6)


def test_conditioning_reaches_the_network():
    """A denoiser that returns its conditioning input y = x reconstructs exactly: loss 0 (y is routed)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
    terms = x0_denoising_terms(lambda z, t, y: y, x, jax.random.PRNGKey(1), gamma_fn=GAMMA, y=x)
    assert float(jnp.max(terms.loss)) == 0.0


def _objective(**kw):
    return X0Denoising(net=NET, gamma_min=GMIN, gamma_max=GMAX, sample_size=8, sampler="ddim", sample_steps=2,
                       num_samples=2, **kw)


def test_conditional_objective_uses_batch_cond_and_samples_given_y():
    """cond_channels=3: the UNet is built for the extra channels from an image-only batch (the training loop's
    init), the loss depends on batch["cond"], a missing cond is a clear error, samples need y."""
    m = _objective(cond_channels=3)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3), minval=-1, maxval=1)
    p = m.init(jax.random.PRNGKey(0), {"image": x})
    assert p["net"]["params"]["conv_in"]["kernel"].shape[2] == 6 and p["schedule"] == {}
    p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(3), a.shape), p)
    loss = jax.jit(lambda p, y: m.loss(p, {"image": x, "cond": y}, jax.random.PRNGKey(1), True)[0])
    assert float(loss(p, x)) != float(loss(p, jnp.zeros_like(x)))
    with pytest.raises(ValueError, match="batch\\['cond'\\]"):
        m.loss(p, {"image": x}, jax.random.PRNGKey(1), True)
    with pytest.raises(ValueError, match="channels"):
        m.loss(p, {"image": x, "cond": x[..., :1]}, jax.random.PRNGKey(1), True)
    assert m.eval_samples(p, jax.random.PRNGKey(2)) is None
    s = m.sample(p, jax.random.PRNGKey(2), 2, y=x, noise_scale=0.8)
    assert s.shape == (2, 8, 8, 3) and s.dtype == np.uint8
    with pytest.raises(ValueError, match="conditioning"):
        m.sample(p, jax.random.PRNGKey(2), 3, y=x)


def test_logsnr_shift_is_the_schedule_hfd_files_were_written_with():
    """X0Denoising(logsnr_shift=s) trains and samples on schedules.cosine_gamma(shift=s); its values are bitwise
    those of the formula HFD used before the shift moved into schedules.py (so HFD checkpoints decode the same)."""
    lo, hi, s = -13.3, 5.0, 2.0
    m = X0Denoising(net=NET, gamma_min=lo, gamma_max=hi, sample_size=8, sampler="ddim", sample_steps=2,
                    num_samples=1, cond_channels=3, logsnr_shift=s)
    t = jnp.linspace(0.0, 1.0, 101)
    before = cosine_gamma(t, gamma_min=lo + s, gamma_max=hi + s) - s       # HFD's ShiftedX0Denoising.gamma_fn
    np.testing.assert_array_equal(m.gamma_fn({"schedule": {}})(t), before)
    plain = X0Denoising(net=NET, gamma_min=lo, gamma_max=hi, sample_size=8, sampler="ddim", sample_steps=2,
                        num_samples=1, cond_channels=3)
    assert float(jnp.max(plain.gamma_fn({"schedule": {}})(t)[1:-1] - m.gamma_fn({"schedule": {}})(t)[1:-1])) > 0.5
    a, sig = m.alpha_sigma({"schedule": {}})(jnp.float32(0.5))
    np.testing.assert_allclose(float(a) ** 2, 1 / (1 + np.exp(float(before[50]))), rtol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="logsnr_shift"):
        _objective(schedule="linear", logsnr_shift=1.0)
    with pytest.raises(ValueError, match="max_snr"):
        _objective(max_snr=0.0)
    with pytest.raises(ValueError, match="schedule"):
        _objective(schedule="cosine2")
    with pytest.raises(ValueError, match="prediction"):
        _objective(prediction="velocity")


def test_residual_variant_regresses_x_minus_the_stage1_reconstruction():
    """residual=True: a network that predicts r0_hat = 0 returns x0_hat = y[..., :3], so with y = x the loss is 0
    (and without the residual it is w * mean(x^2) > 0); samples come back with y added."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 3), minval=-1, maxval=1)
    for residual in (True, False):
        m = _objective(cond_channels=3, residual=residual)
        p = m.init(jax.random.PRNGKey(0), {"image": x})   # zero-initialised output layer: the net predicts 0
        terms = m.terms(p, {"image": x, "cond": x}, jax.random.PRNGKey(1))
        assert (float(jnp.max(terms.loss)) == 0.0) == residual
        np.testing.assert_allclose(terms.x0_hat, x if residual else jnp.zeros_like(x), atol=1e-6)
    s = m.sample_float(p, jax.random.PRNGKey(2), 2, y=x)
    s_res = _objective(cond_channels=3, residual=True).sample_float(p, jax.random.PRNGKey(2), 2, y=x)
    np.testing.assert_allclose(s_res, s + x, atol=1e-5)
    with pytest.raises(ValueError, match="cond_channels >= 3"):
        _objective(cond_channels=1, residual=True)
