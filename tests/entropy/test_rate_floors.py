"""Rate numerics (issue 11): floors that keep the gradient, log-space rates, the scale floor once.

References are written here independently: float64 math of the logistic / Gaussian CDFs.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import special

from gencomp_jax.codecs import ntc
from gencomp_jax.entropy import densities, gaussian_conditional as gc
from gencomp_jax.entropy.factorized import FactorizedPrior
from gencomp_jax.models import uqdm
from tests.entropy import float64_references


def _logistic_mass(lo, hi):
    """float64 P(lo < L <= hi) of the standard logistic, computed on the lower side of the median."""
    if lo + hi > 0:
        lo, hi = -hi, -lo
    return 1 / (1 + math.exp(-hi)) - 1 / (1 + math.exp(-lo))


@pytest.mark.parametrize("family", ["logistic", "gaussian"])
@pytest.mark.parametrize("distance", [0.0, 3.0, 12.0, 25.0, -40.0])
def test_log_bin_probability_is_exact_in_the_tails(family, distance):
    loc, scale, width = 0.3, 0.7, 0.9
    z = loc + distance * scale
    lo, hi = (z - width / 2 - loc) / scale, (z + width / 2 - loc) / scale
    if family == "logistic":
        ref = math.log(_logistic_mass(lo, hi))
    else:
        a, b = (lo, hi) if lo + hi <= 0 else (-hi, -lo)
        ref = special.log_ndtr(b) + math.log(-math.expm1(special.log_ndtr(a) - special.log_ndtr(b)))
    ours = float(densities.log_bin_probability(family, loc, scale, z - width / 2, z + width / 2))
    assert abs(ours - ref) < 1e-4 * max(1.0, abs(ref)), (ours, ref)


def test_uqdm_step_rate_far_from_the_prior_is_exact_and_pulls_loc_towards_z_s():
    """25 logistic scales away: the old floor charged a flat 20.7 nats with zero gradient."""
    scale, width, z_s = 0.05, 0.04, 25 * 0.05
    rate = lambda loc: uqdm.step_rate_nats("logistic", jnp.float32(z_s), loc, scale, width)  # noqa: E731
    ref = -math.log(_logistic_mass((z_s - width / 2) / scale, (z_s + width / 2) / scale))
    assert abs(float(rate(jnp.float32(0.0))) - ref) < 1e-3, (float(rate(jnp.float32(0.0))), ref)
    g = float(jax.grad(rate)(jnp.float32(0.0)))
    assert g < -0.9 / scale  # d rate / d loc ~ -1/scale: moving loc towards z_s lowers the rate


def test_gaussian_conditional_below_the_floor_still_moves_scale_and_y_the_right_way():
    """y_hat = 1.3 at scale 0.11: P ~ 1e-13 < MIN_PROB. Bits must fall when scale grows or y shrinks."""
    bits = lambda s, y: -jnp.log2(gc.likelihood(y, gc.lower_bound_scale(s)))  # noqa: E731
    assert float(gc.likelihood(jnp.float32(1.3), jnp.float32(0.11))) == pytest.approx(densities.MIN_PROB)
    ds, dy = jax.grad(bits, (0, 1))(jnp.float32(0.11), jnp.float32(1.3))
    assert float(ds) < 0 and float(dy) > 0
    # one gradient step on the scale raises the real (unfloored) probability
    true_p = lambda s: special.ndtr(-0.8 / s) - special.ndtr(-1.8 / s)  # noqa: E731
    s1 = 0.11 - 0.5 * float(ds)
    assert true_p(s1) > true_p(0.11) > 0


def test_scale_floor_gradient_is_not_halved():
    """At scale == SCALE_MIN (already bounded once) the likelihood's own bound passes the whole gradient."""
    y = jnp.float32(0.3)
    twice = lambda s: -jnp.log2(gc.likelihood(y, gc.lower_bound_scale(s)))  # noqa: E731
    once = lambda s: -jnp.log2(densities.bin_probability("gaussian", 0.0, s, y - 0.5, y + 0.5))  # noqa: E731
    g_twice = float(jax.grad(twice)(jnp.float32(gc.SCALE_MIN)))
    g_once = float(jax.grad(once)(jnp.float32(gc.SCALE_MIN)))
    assert g_twice == pytest.approx(g_once, rel=1e-4)


def test_factorized_prior_below_the_floor_moves_its_parameters_towards_the_element():
    """z = 300, far beyond the density's support (P ~ 1e-14 < MIN_PROB): a step along the gradient of its
    (floored) bits raises its true probability, computed independently in float64."""
    prior = FactorizedPrior(1)
    v = jax.jit(prior.init)(jax.random.PRNGKey(0), jnp.zeros((4, 1)))
    far = jnp.full((1, 1), 300.0)
    true_logp = lambda v: float(float64_references.factorized_log_likelihood(v["params"], far)[0, 0])  # noqa: E731
    assert float(jax.jit(prior.apply)(v, far)[0, 0]) == pytest.approx(densities.MIN_PROB)
    assert -40 < true_logp(v) < math.log(densities.MIN_PROB) - 5

    @jax.jit
    def normalized_step(v):
        g = jax.grad(lambda v: -jnp.sum(jnp.log2(prior.apply(v, far))))(v)
        norm = optax.global_norm(g)
        return jax.tree_util.tree_map(lambda p, d: p - 0.05 * d / norm, v, g), norm

    stepped, norm = normalized_step(v)
    assert float(norm) > 0
    assert true_logp(stepped) > true_logp(v) + 0.1


def test_ntc_loss_step_lowers_the_bits_of_an_element_below_the_floor():
    """End to end through the NTC loss: channel 0 of y is held at 2 with h_s giving it scale 0.2, so each of its
    elements has P ~ 3e-14 < MIN_PROB (float64, below). One Adam step on the method's loss must raise that
    channel's scale and so lower those elements' true bits (a zero-gradient floor leaves them unchanged: in
    eval mode nothing else of the loss depends on channel 0's scale)."""
    config = ml_collections.ConfigDict({"method": "hyperprior",
                                        "model": {"N": 8, "M": 12, "lmbda": 0.01}})
    method = ntc.make_method(config)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)), jnp.float32)
    params = flax.core.unfreeze(jax.jit(method.init)(jax.random.PRNGKey(0), {"image": x}))
    last_g_a = sorted(k for k in params["params"]["g_a"] if k.startswith("conv"))[-1]
    for layer, value in ((params["params"]["g_a"][last_g_a], 2.0), (params["params"]["h_s"]["conv2"], 0.2)):
        layer["kernel"] = layer["kernel"].at[..., 0].set(0.0)
        layer["bias"] = layer["bias"].at[0].set(value)

    def channel0(params, x):
        def f(mdl, x):
            y = mdl.analysis(x)
            z = mdl.latent.hyper_analysis(y)
            z_hat = jnp.round(z - mdl.latent.z_medians()) + mdl.latent.z_medians()
            return jnp.round(y)[..., 0], mdl.latent.entropy_parameters(z_hat)[1][..., 0]
        return method.model.apply(params, x, method=f)

    @jax.jit
    def before_and_after_one_step(params, x):
        tx = optax.adam(1e-2)
        g = jax.grad(lambda p: method.loss(p, {"image": x}, None, False)[0])(params)
        upd, _ = tx.update(g, tx.init(params), params)
        return channel0(params, x), channel0(optax.apply_updates(params, upd), x)

    (y0, s0), (y1, s1) = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                                                before_and_after_one_step(params, x))
    np.testing.assert_array_equal(y0, 2.0)
    np.testing.assert_allclose(s0, 0.2, rtol=1e-6)
    bits0 = -float64_references.gaussian_log_bin(y0, s0) / math.log(2)
    assert np.all(bits0 > -math.log2(densities.MIN_PROB) + 10)  # ~45 bits each, the floor charges 29.9
    np.testing.assert_array_equal(y1, 2.0)
    bits1 = -float64_references.gaussian_log_bin(y1, s1) / math.log(2)
    assert np.all(bits1 < bits0 - 1.0), (bits0.ravel()[:4], bits1.ravel()[:4])
