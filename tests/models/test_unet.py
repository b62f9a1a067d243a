"""UNet / VDMUNet: shapes, conditioning, doubled output, reference parameter counts, a loss-reducing step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gencomp_jax.models.unet import UNet, count_params, split_mean_scale, vdm_unet_preset

X = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
T = jnp.array([0.1, 0.7])


def _perturb(params, scale=0.05):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def test_unet_shapes_conditioning_and_double_output():
    net = UNet(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=4, double_output=True)
    y = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 2))
    p = net.init(jax.random.PRNGKey(0), X, T, y)
    out = net.apply(p, X, T, y)
    assert out.shape == (2, 16, 16, 6)
    mean, scale = split_mean_scale(out)
    np.testing.assert_allclose(scale, 1.0, rtol=1e-5)   # zero-init output -> scale starts at 1
    p = _perturb(p)
    o1, o2 = net.apply(p, X, T, y), net.apply(p, X, T, y + 1.0)
    assert float(jnp.max(jnp.abs(o1 - o2))) > 1e-3       # y is used
    o3 = net.apply(p, X, jnp.array([0.5, 0.2]), y)
    assert float(jnp.max(jnp.abs(o1 - o3))) > 1e-3       # t is used
    with pytest.raises(ValueError, match="divisible"):
        net.apply(p, X[:, :15, :15], T, y[:, :15, :15])
    with pytest.raises(ValueError, match="image-shaped"):
        net.apply(p, X, T, y[:, :8])


def test_vdm_unet_matches_reference_parameter_counts():
    """UQDM reference presets (learned_prior_scale = doubled output): tiny ~167 K, small ~2.24 M parameters."""
    x = jnp.zeros((1, 8, 8, 3))
    counts = {}
    for name in ("tiny", "small"):
        net = vdm_unet_preset(name, double_output=True)
        shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, jnp.zeros((1,))))
        counts[name] = count_params(shapes)
    assert counts["tiny"] == 167_494
    assert counts["small"] == 2_238_150
    net = vdm_unet_preset("tiny")
    p = net.init(jax.random.PRNGKey(0), X, T)
    np.testing.assert_allclose(net.apply(p, X, T), X, atol=1e-6)   # residual input, zero-init output


def test_gradient_steps_reduce_denoising_loss():
    net = UNet(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=4)
    x0 = jnp.tanh(jax.random.normal(jax.random.PRNGKey(2), (4, 16, 16, 3)))
    eps = jax.random.normal(jax.random.PRNGKey(3), x0.shape)
    t = jnp.linspace(0.2, 0.8, 4)
    z = jnp.sqrt(1 - t)[:, None, None, None] * x0 + jnp.sqrt(t)[:, None, None, None] * eps
    p = net.init(jax.random.PRNGKey(0), z, t)
    opt = optax.adam(2e-3)
    st = opt.init(p)

    def loss(p):
        return jnp.mean((net.apply(p, z, t) - eps) ** 2)

    @jax.jit
    def step(p, st):
        l, g = jax.value_and_grad(loss)(p)
        u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st, l

    l0 = float(loss(p))
    for _ in range(10):
        p, st, _ = step(p, st)
    assert float(loss(p)) < 0.9 * l0
