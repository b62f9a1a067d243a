"""ELBO, I-MMSE, parameterisation equivalences and the DDPM KL sum, with exact denoisers as the model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.diffusion import losses, process, schedules
from gencomp_jax.theory import gaussian
from tests.diffusion.gaussian_helpers import COV, MU, source, x0_model

LN2 = math.log(2.0)


# -- a discrete source on the 8-bit grid: uniform over 4 atoms in 2-D, H = 2 bits = 1 bit/dim ---------
ATOMS = (jnp.array([[40, 200], [44, 60], [180, 70], [120, 121]], jnp.float32) / 127.5 - 1.0)


def atom_denoiser(gamma_fn):
    """Exact E[X_0 | z_t] for the uniform 4-atom source, as an eps-prediction model."""
    def fn(z, t):
        a, s = schedules.alpha_sigma_from_gamma(gamma_fn(t))
        a, s = a[:, None], s[:, None]
        logits = -0.5 * jnp.sum((z[:, None, :] - a[:, :, None] * ATOMS[None]) ** 2, -1) / s ** 2
        x0 = jax.nn.softmax(logits, -1) @ ATOMS
        return (z - a * x0) / s
    return fn


def test_vdm_elbo_tightens_to_exact_nll_discrete():
    """The 256-level VDM bound with the exact denoiser decreases to H(X)/D = 1 bit/dim as [gamma_min, gamma_max]
    widens (n = 20000 examples; the diffusion term's MC standard error is ~0.04 bit/dim here because the exact
    denoiser of a discrete source switches sharply between atoms, so the final check allows 0.15 = ~3.5 SE)."""
    n = 20000
    x = ATOMS[jax.random.randint(jax.random.PRNGKey(0), (n,), 0, 4)]

    @jax.jit
    def bound(gmin, gmax):
        g = lambda t: schedules.linear_gamma(t, gamma_min=gmin, gamma_max=gmax)  # noqa: E731
        return jnp.mean(losses.vdm_elbo(atom_denoiser(g), x, jax.random.PRNGKey(1), gamma_fn=g)["bpd"])

    vals = [float(bound(gmin, gmax)) for gmin, gmax in [(-4.0, 0.0), (-8.0, 4.0), (-13.3, 10.0)]]
    assert all(a > b for a, b in zip(vals, vals[1:])), vals
    assert vals[-1] == pytest.approx(1.0, abs=0.15), vals


def test_vdm_elbo_tightens_to_exact_nll_gaussian():
    """Continuous-data variant on N(mu, Sigma): the Monte Carlo bound matches its closed form (data term
    d/2 log(2 pi e / xi_0) + prior KL + I(xi_0) - I(xi_1) by I-MMSE) within 4 standard errors, and the closed
    form decreases to h(X) as [gamma_min, gamma_max] widens."""
    n = 50000
    x = source(jax.random.PRNGKey(2), n)
    d = 2
    h_bits = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * np.asarray(COV, np.float64))) / LN2 / d
    second_moment = float(jnp.sum(MU ** 2 + jnp.diag(COV)))

    @jax.jit
    def bound(gmin, gmax):
        g = lambda t: schedules.linear_gamma(t, gamma_min=gmin, gamma_max=gmax)  # noqa: E731
        out = losses.vdm_elbo(x0_model(schedules.vp_alpha_sigma(g)), x, jax.random.PRNGKey(3), gamma_fn=g,
                              prediction="x0", data="gaussian")
        return jnp.mean(out["bpd"]), jnp.std(out["bpd"])

    gaps = []
    for gmin, gmax in [(-4.0, 2.0), (-8.0, 6.0), (-12.0, 10.0)]:
        mc, sd = bound(gmin, gmax)
        mc, se = float(mc), float(sd) / math.sqrt(n)
        xi0, xi1 = math.exp(-gmin), math.exp(-gmax)
        s1 = 1 / (1 + math.exp(-gmax))
        recon = d / 2 * math.log(2 * math.pi * math.e / xi0)
        prior = 0.5 * (d * s1 + (1 - s1) * second_moment - d - d * math.log(s1))
        diff = float(gaussian.mutual_information(xi0, COV) - gaussian.mutual_information(xi1, COV)) * LN2
        closed = (recon + prior + diff) / (d * LN2)
        assert abs(mc - closed) < 4 * se + 1e-3, (gmin, gmax, mc, closed, se)
        gaps.append(closed - h_bits)
    assert gaps[0] > gaps[1] > gaps[2] > 0, gaps
    assert gaps[-1] < 1e-3, gaps


def test_i_mmse_integral_equals_mutual_information():
    """1/2 int_{xi_T}^{xi_tau} mmse(xi) dxi (mmse by Monte Carlo with the exact denoiser) = I(X0; X_tau) - I(X0; X_T)
    in closed form, within 1%."""
    xi_T, xi_tau = math.exp(-5.0), math.exp(4.0)
    nodes = np.linspace(math.log(xi_T), math.log(xi_tau), 41)  # trapezoid in log xi: d xi = xi d log xi
    n = 40000
    x0 = source(jax.random.PRNGKey(4), n)
    eps = jax.random.normal(jax.random.PRNGKey(5), x0.shape)

    @jax.jit
    def mc_mmse(log_xi):
        a, s = schedules.alpha_sigma_from_gamma(-log_xi)
        xt = a * x0 + s * eps
        return jnp.mean(jnp.sum((gaussian.posterior_mean(xt, a, s, MU, COV) - x0) ** 2, -1))

    m = np.array([float(mc_mmse(v)) for v in nodes])
    exact_m = np.asarray(gaussian.mmse(jnp.exp(jnp.asarray(nodes)), COV))
    np.testing.assert_allclose(m, exact_m, rtol=0.03)
    integrand = 0.5 * m * np.exp(nodes)
    integral = np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(nodes))
    mi = float(gaussian.mutual_information(xi_tau, COV) - gaussian.mutual_information(xi_T, COV)) * LN2
    assert integral == pytest.approx(mi, rel=0.01)


def test_parameterisations_same_loss_up_to_weighting():
    """eps / x0 / v: (i) identical VDM ELBO for the same underlying denoiser, (ii) denoising losses in x0 and v space
    equal the eps-space loss times `equivalent_weight` (SNR^-1 and (1 + SNR^-1) for VP)."""
    g = schedules.linear_gamma
    asg = schedules.vp_alpha_sigma(g)
    x = source(jax.random.PRNGKey(6), 512) * 0.3
    base = x0_model(asg, cov=COV * 0.5)  # deliberately mis-specified so the losses are not ~0

    def as_pred(kind):
        def fn(z, t):
            a, s = asg(t)
            a, s = a[:, None], s[:, None]
            x0 = base(z, t)
            return process.from_x0_eps(x0, (z - a * x0) / s, a, s, prediction=kind)
        return fn

    @jax.jit
    def compute():   # one compile for all losses
        elbos = [losses.vdm_elbo(as_pred(k), x, jax.random.PRNGKey(7), gamma_fn=g, prediction=k,
                                 data="gaussian")["bpd"] for k in ("eps", "x0", "v")]
        key = jax.random.PRNGKey(8)
        pairs = []
        for target in ("x0", "v"):
            w = lambda t, target=target: losses.equivalent_weight(target, *asg(t))  # noqa: E731
            l_t = losses.denoising_loss(as_pred("eps"), x, key, alpha_sigma=asg, prediction="eps", target=target)
            l_w = losses.denoising_loss(as_pred("eps"), x, key, alpha_sigma=asg, prediction="eps", target="eps",
                                        weighting=w)
            pairs.append((l_t, l_w))
        return elbos, pairs

    elbos, pairs = compute()
    for e in elbos[1:]:
        np.testing.assert_allclose(np.asarray(e), np.asarray(elbos[0]), rtol=2e-3)
    for l_t, l_w in pairs:
        np.testing.assert_allclose(np.asarray(l_t), np.asarray(l_w), rtol=1e-3)
    # VP identities of the documented weights
    t = jnp.linspace(0.05, 0.95, 7)
    a, s = asg(t)
    snr = jnp.exp(-g(t))
    np.testing.assert_allclose(losses.equivalent_weight("x0", a, s), 1 / snr, rtol=1e-4)
    np.testing.assert_allclose(losses.equivalent_weight("v", a, s), 1 + 1 / snr, rtol=1e-4)


def test_ddpm_elbo_kl_sum_matches_monte_carlo():
    """Closed-form per-step KLs of the T=8 DDPM bound match a direct Monte Carlo of log q - log p, and the sampled-step
    VDM estimator (timesteps=T) is unbiased for their sum."""
    T = 8
    g = lambda t: schedules.linear_gamma(t, gamma_min=-6.0, gamma_max=4.0)
    asg = schedules.vp_alpha_sigma(g)
    model = x0_model(asg, mu=MU + 0.3, cov=COV)  # mis-specified mean: KLs are clearly non-zero
    x = source(jax.random.PRNGKey(9), 4000)

    @jax.jit
    def compute():   # one compile for the closed form, the direct Monte Carlo and the sampled-step estimator
        terms = losses.ddpm_elbo_terms(model, x, jax.random.PRNGKey(10), alpha_sigma=asg, num_steps=T,
                                       prediction="x0", data="gaussian")

        # direct MC: z_t ~ q(z_t|x), z_s ~ q(z_s|z_t,x), average log q(z_s|z_t,x) - log p(z_s|z_t)
        def logn(z, m, v):
            return jnp.sum(-0.5 * (z - m) ** 2 / v - 0.5 * jnp.log(2 * jnp.pi * v), -1)

        def mc_step(i):
            t, s = i / T, (i - 1) / T
            (a_t, s_t), (a_s, s_s) = asg(t), asg(s)
            k1, k2 = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(11), i))
            zt = a_t * x + s_t * jax.random.normal(k1, x.shape)
            mq, var = process.posterior(zt, x, a_s, s_s, a_t, s_t)
            mp, _ = process.posterior(zt, model(zt, jnp.full((x.shape[0],), t)), a_s, s_s, a_t, s_t)
            zs = mq + jnp.sqrt(var) * jax.random.normal(k2, x.shape)
            return jnp.mean(logn(zs, mq, var) - logn(zs, mp, var))

        kl_mc = jax.lax.map(mc_step, jnp.arange(1, T + 1))
        est = losses.vdm_elbo(model, x, jax.random.PRNGKey(12), gamma_fn=g, prediction="x0", timesteps=T,
                              data="gaussian", antithetic=True)
        return (jnp.mean(terms["kl"], 0), kl_mc, jnp.mean(terms["total"]), jnp.mean(est["bpd_diffusion"]),
                jnp.mean(est["bpd"]))

    kl_closed, kl_mc, total, est_diff, est_bpd = (np.asarray(v, np.float64) for v in compute())
    np.testing.assert_allclose(kl_mc, kl_closed, rtol=0.1, atol=0.01)
    assert abs(kl_mc.sum() - kl_closed.sum()) < 0.05 * kl_closed.sum()
    dims_ln2 = 2 * LN2
    assert float(est_diff) * dims_ln2 == pytest.approx(kl_closed.sum(), rel=0.05)
    assert float(total) == pytest.approx(float(est_bpd) * dims_ln2, rel=0.05)


def test_flow_matching_loss_minimised_by_exact_velocity():
    """The exact velocity field of the Gaussian path has lower flow-matching loss than perturbed ones; the
    conditional variant passes y through."""
    x = source(jax.random.PRNGKey(13), 4000)
    asg = schedules.flow_alpha_sigma
    den = x0_model(asg)

    def vel(scale):
        def fn(z, t, y=None):
            a, s = asg(t)
            x0 = den(z, t)
            u = -x0 + (z - a[:, None] * x0) / s[:, None]
            return scale * u if y is None else scale * u + 0.0 * y
        return fn

    ls = [float(jnp.mean(losses.flow_matching_loss(vel(c), x, jax.random.PRNGKey(14)))) for c in (0.9, 1.0, 1.1)]
    assert ls[1] < ls[0] and ls[1] < ls[2]
    lc = float(jnp.mean(losses.flow_matching_loss(vel(1.0), x, jax.random.PRNGKey(14), y=x)))
    assert lc == pytest.approx(ls[1], rel=1e-5)


def test_schedules():
    t = jnp.linspace(0, 1, 11)
    for name in ("linear", "cosine"):
        fn = {"linear": schedules.linear_gamma, "cosine": schedules.cosine_gamma}[name]
        gm = fn(t)
        assert float(gm[0]) == pytest.approx(schedules.GAMMA_MIN, abs=1e-3)
        assert float(gm[-1]) == pytest.approx(schedules.GAMMA_MAX, abs=1e-3)
        assert bool(jnp.all(jnp.diff(gm) > 0))
        a, s = schedules.alpha_sigma_from_gamma(gm)
        np.testing.assert_allclose(a ** 2 + s ** 2, 1.0, atol=1e-6)
    net = schedules.MonotoneNetSchedule(n_features=64)
    p = net.init(jax.random.PRNGKey(0), t)
    gm = net.apply(p, t)
    assert bool(jnp.all(jnp.diff(gm) > 0))
    lin = schedules.LearnedLinearSchedule()
    p = lin.init(jax.random.PRNGKey(0), t)
    np.testing.assert_allclose(lin.apply(p, t), schedules.linear_gamma(t), atol=1e-5)
    with pytest.raises(ValueError, match="Unknown schedule"):
        schedules.get_alpha_sigma("sqrt")


# -- the discretized data likelihood p(x | z_0): one implementation, checked against float64 numpy -------


def _reference_log_probs(z0, gamma0, grid):
    """log p(x = v_k | z_0) in float64 numpy, written from the definition p_k ∝ N(z_0; alpha_0 v_k, sigma_0^2)."""
    from scipy.special import logsumexp

    a0 = math.sqrt(1.0 / (1.0 + math.exp(gamma0)))
    s0 = math.sqrt(1.0 / (1.0 + math.exp(-gamma0)))
    k = np.arange(256, dtype=np.float64)
    v = k / 127.5 - 1.0 if grid == "edge" else 2.0 * (k + 0.5) / 256.0 - 1.0
    logits = -0.5 * ((np.asarray(z0, np.float64)[..., None] - a0 * v) / s0) ** 2
    return logits - logsumexp(logits, axis=-1, keepdims=True), a0, s0, v


@pytest.mark.parametrize("grid", ["edge", "center"])
@pytest.mark.parametrize("gamma0", [-13.3, -9.0, -5.0])   # windowed nll path (-13.3) and the full sum
def test_discrete_data_likelihood_matches_definition(grid, gamma0):
    rng = np.random.default_rng(0)
    x_int = rng.integers(0, 256, 600)
    ref0, a0, s0, v = _reference_log_probs(np.zeros(1), gamma0, grid)
    z0 = a0 * v[x_int] + s0 * rng.normal(size=600) * rng.choice([0.3, 1.0, 3.0], 600)   # near and far
    ref, *_ = _reference_log_probs(z0, gamma0, grid)
    x = jnp.asarray(v[x_int], jnp.float32)
    z0j = jnp.asarray(z0, jnp.float32)
    g = jnp.float32(gamma0)
    lp = np.asarray(losses.discrete_data_log_probs(z0j, g, grid=grid), np.float64)
    # the logits' gamma form (the UQDM file format) loses ~exp(-gamma0) * ulp: 1e-3 nats at gamma0 = -13.3
    np.testing.assert_allclose(lp[np.arange(600), x_int], ref[np.arange(600), x_int], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    nll = jax.jit(lambda *a: losses.discrete_data_nll(*a, grid=grid))(x, z0j, jnp.float32(a0), jnp.float32(s0))
    np.testing.assert_allclose(nll, -ref[np.arange(600), x_int], rtol=2e-4, atol=2e-4)
    mode = np.asarray(losses.discrete_data_argmax(z0j, g, grid=grid))
    ref_mode = np.argmax(ref, -1)
    assert np.mean(mode == ref_mode) > 0.99 and np.all(np.abs(mode - ref_mode) <= 1)   # ties at float32


def test_discrete_data_nll_gradient_matches_autodiff_of_log_probs():
    """The hand-written VJP of discrete_data_nll (windowed) vs autodiff through the full log-softmax."""
    rng = np.random.default_rng(1)
    x_int = rng.integers(0, 256, 64)
    gamma0 = -10.0
    _, a0, s0, v = _reference_log_probs(np.zeros(1), gamma0, "edge")
    x = jnp.asarray(v[x_int], jnp.float32)
    z0 = jnp.asarray(a0 * v[x_int] + s0 * rng.normal(size=64), jnp.float32)

    def full(z, a, s):   # -log softmax of l_v = -(z - a v)^2 / (2 s^2), autodiff through all 256 values
        logits = -0.5 * ((z[:, None] - a * jnp.asarray(v, jnp.float32)) / s) ** 2
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits, -1), jnp.asarray(x_int)[:, None], 1))

    ours = lambda z, a, s: jnp.sum(losses.discrete_data_nll(x, z, a, s))   # noqa: E731
    args = (z0, jnp.float32(a0), jnp.float32(s0))
    for got, want in zip(jax.grad(ours, (0, 1, 2))(*args), jax.grad(full, (0, 1, 2))(*args)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3 * float(jnp.max(jnp.abs(want))))


def test_discrete_data_mode_and_errors():
    gamma0 = jnp.float32(-14.0)  # std of z_0/alpha_0: 0.12 grid steps
    a0, _ = schedules.alpha_sigma_from_gamma(gamma0)
    x_int = jnp.arange(0, 256, 17)
    z0 = a0 * (x_int / 127.5 - 1.0) + 0.001
    lp = losses.discrete_data_log_probs(z0, gamma0)
    np.testing.assert_array_equal(losses.discrete_data_argmax(z0, gamma0), x_int)
    np.testing.assert_array_equal(jnp.argmax(lp, -1), x_int)
    assert float(jnp.min(jnp.take_along_axis(lp, x_int[:, None], 1))) > -0.01
    with pytest.raises(ValueError, match="grid"):
        losses.discrete_data_nll(z0, z0, a0, a0, grid="middle")
    with pytest.raises(ValueError, match="256"):
        losses.discrete_data_nll(z0, z0, a0, a0, num_levels=16)


def test_discrete_data_argmax_is_the_rounding_of_the_uqdm_file_format():
    u = jax.random.uniform(jax.random.PRNGKey(0), (2_000_000,), minval=-1.01, maxval=1.01)
    a0, _ = schedules.alpha_sigma_from_gamma(jnp.float32(-12.3))
    got = jax.jit(losses.discrete_data_argmax)(u * a0, jnp.float32(-12.3))
    want = jax.jit(lambda z: jnp.clip(jnp.round((z / a0 + 1.0) * 127.5), 0, 255).astype(jnp.int32))(u * a0)
    np.testing.assert_array_equal(got, want)
