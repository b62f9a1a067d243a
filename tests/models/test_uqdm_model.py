"""UQDM model: forward-process moments, schedule, rate terms (closed forms and fixed-seed Monte Carlo)."""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import pytest
from scipy import integrate, special

from gencomp_jax.channel import dq
from gencomp_jax.diffusion import process, schedules
from gencomp_jax.models import uqdm as M
from gencomp_jax.config_utils import load_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(arg="runlocal"):
    return load_config(f"uqdm:{arg}")


@pytest.mark.parametrize("gt,gs", [(6.0, 1.425), (-3.15, -7.725), (-7.725, -12.3)])
def test_forward_kernel_moments_match_gaussian_posterior(gt, gs):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, 4000), jnp.float32)
    z_t = jnp.asarray(rng.normal(size=4000), jnp.float32)
    mu, width = M.forward_posterior(z_t, x, jnp.float32(gt), jnp.float32(gs))
    a_t, s_t = schedules.alpha_sigma_from_gamma(jnp.float32(gt))
    a_s, s_s = schedules.alpha_sigma_from_gamma(jnp.float32(gs))
    mean_g, var_g = process.posterior(z_t, x, a_s, s_s, a_t, s_t)
    np.testing.assert_allclose(mu, mean_g, rtol=2e-4, atol=2e-5 * float(jnp.max(jnp.abs(mean_g))))
    np.testing.assert_allclose(float(width) ** 2 / 12.0, float(var_g), rtol=1e-4)
    # The codec's DQ path realizes U(mu - Delta/2, mu + Delta/2): check its first two moments (MC).
    n = 200_000
    mu1 = jnp.broadcast_to(mu[:1], (n,))
    w = dq.dither(jax.random.PRNGKey(3), (n,), width)
    y = dq.dq_reconstruct(dq.dq_quantize(mu1, w, width), w, width)
    err = np.asarray(y - mu1, np.float64) / float(width)
    assert np.all(np.abs(err) <= 0.5 + 1e-3)
    assert abs(err.mean()) < 4 * math.sqrt(1 / 12 / n)          # 4 sigma
    assert abs(err.var() - 1 / 12) < 0.01 / 12                   # ~1%, MC sd ~0.2%


def test_schedule_init_fixed_gamma_max_and_gradient():
    cfg = _config()
    model = M.UQDM(cfg.model)
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
    params = jax.jit(model.init)({"params": jax.random.PRNGKey(0)}, x, jax.random.PRNGKey(1))
    g = model.apply(params, method=M.UQDM.gammas)
    np.testing.assert_allclose(g, np.linspace(6.0, -12.3, 5), rtol=1e-5, atol=1e-5)

    def loss(p):
        terms = model.apply(p, x, jax.random.PRNGKey(2))
        return M.nelbo_metrics(terms, 8 * 8 * 3)[0]

    grads = jax.jit(jax.grad(loss))(params)
    gg = grads["params"]["schedule"]["gamma_0"]
    assert np.isfinite(gg) and gg != 0.0
    # gamma_max stays fixed whatever gamma_0 becomes
    p2 = jax.tree_util.tree_map(lambda a: a, params)
    p2["params"]["schedule"]["gamma_0"] = jnp.float32(-8.0)
    g2 = model.apply(p2, method=M.UQDM.gammas)
    assert abs(float(g2[0]) - 6.0) < 1e-5 and abs(float(g2[-1]) + 8.0) < 1e-5


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_step_rate_expectation_is_the_kl(family):
    """E_{z ~ U(mu_Q +- D/2)}[-log mass of g on the D-cell at z] = KL(U || g * U) (quadrature)."""
    mu_q, mu_p, std, width = 0.3, 0.1, 0.25, 0.4
    # the family's scale parameter for this std, written here: logistic variance = s^2 pi^2 / 3
    scale = std if family == "gaussian" else std * math.sqrt(3.0) / math.pi
    np.testing.assert_allclose(float(M.std_to_scale(family, std)), scale, rtol=1e-12)
    cdf = (lambda u: special.ndtr(u)) if family == "gaussian" else (lambda u: special.expit(u))
    # and the closed-form variance of that density, by quadrature
    dens = (lambda v: np.exp(-0.5 * (v / scale) ** 2) / (scale * math.sqrt(2 * math.pi))) if family == "gaussian" \
        else (lambda v: np.exp(-abs(v) / scale) / (scale * (1 + np.exp(-abs(v) / scale)) ** 2))
    assert abs(integrate.quad(lambda v: v * v * dens(v), -np.inf, np.inf)[0] - std ** 2) < 1e-6

    def log_p(z):  # density of g * U(-D/2, D/2)
        return np.log((cdf((z - mu_p + width / 2) / scale) - cdf((z - mu_p - width / 2) / scale)) / width)

    kl = -math.log(width) - integrate.quad(lambda z: log_p(z) / width, mu_q - width / 2, mu_q + width / 2)[0]
    u = jax.random.uniform(jax.random.PRNGKey(0), (400_000,), minval=-0.5, maxval=0.5)
    z = mu_q + width * u
    mc = np.asarray(M.step_rate_nats(family, z, mu_p, M.std_to_scale(family, std), width), np.float64)
    assert abs(mc.mean() - kl) < 4 * mc.std() / math.sqrt(mc.size) + 1e-4 * kl
    assert abs(mc.mean() - kl) / kl < 0.005


def test_loss_terms_add_up_and_prior_start():
    cfg = _config()
    model = M.UQDM(cfg.model)
    x = jnp.asarray(np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3)) / 127.5 - 1.0, jnp.float32)
    params = jax.jit(model.init)({"params": jax.random.PRNGKey(0)}, x, jax.random.PRNGKey(1))
    apply = jax.jit(model.apply, static_argnums=(3, 4))
    terms = apply(params, x, jax.random.PRNGKey(4), False, None)
    loss, m = M.nelbo_metrics(terms, 16 * 16 * 3)
    parts = m["bpd_prior"] + sum(m[f"bpd_step{i}"] for i in range(4)) + m["bpd_recon"]
    np.testing.assert_allclose(loss, parts, rtol=1e-5)
    assert 0 < float(m["bpd_prior"]) < 0.01     # gamma_max = 6: X_T carries almost nothing
    t2 = apply(params, x, jax.random.PRNGKey(4), False, "prior")
    assert float(jnp.max(jnp.abs(t2["prior"]))) == 0.0
    with pytest.raises(ValueError, match="z_T_source"):
        model.apply(params, x, jax.random.PRNGKey(4), False, "nope")


@pytest.mark.parametrize("preset,expected", [("tiny", 167_495), ("small", 2_240_000)])
def test_presets_match_reference_sizes(preset, expected):
    """`net=tiny|small` are the UQDM reference's networks (167 K / 2.24 M parameters with learned scale)."""
    from gencomp_jax import registry
    from gencomp_jax.models.unet import count_params

    cfg = _config(f"runlocal,net={preset}")
    shapes = jax.eval_shape(registry.make_method(cfg).init, jax.random.PRNGKey(0),
                            {"image": jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)})
    n = count_params(shapes)
    assert abs(n - expected) / expected < 0.01, n
    for arg in ("cifar10", "imagenet64", "runlocal,diffusion_steps=2,family=gaussian,base=posterior"):
        c = _config(arg)
        assert c.method == "uqdm" and c.model.diffusion_steps in (2, 4)
    with pytest.raises(ValueError):
        _config("net=huge")


def test_config_names_and_old_keys():
    """`diffusion_steps=T` is the number of diffusion steps, `steps=N` the training steps (as configs/vdm.py);
    a config.json with the old keys (model.num_steps = T, model.unet) still builds the same model."""
    c = _config("runlocal,diffusion_steps=3,steps=17")
    assert c.model.diffusion_steps == 3 and c.train.num_steps == 17 and "num_steps" not in c.model
    assert c.model.net["preset"] == "tiny" and "unet" not in c.model
    old = c.model.to_dict()
    old["num_steps"] = old.pop("diffusion_steps")
    old["unet"] = old.pop("net")
    m = M.model_config(old)
    assert m.to_dict() == c.model.to_dict()
    x = jnp.zeros((1, 8, 8, 3))
    shapes_new = jax.eval_shape(M.UQDM(c.model).init, jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
    shapes_old = jax.eval_shape(M.UQDM(m).init, jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
    assert jax.tree_util.tree_structure(shapes_new) == jax.tree_util.tree_structure(shapes_old)
    with pytest.raises(ValueError, match="model_config"):            # old keys not migrated: clear error
        M.UQDM(ml_collections.ConfigDict(old)).init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="both"):
        M.model_config({**old, "net": old["unet"]})
