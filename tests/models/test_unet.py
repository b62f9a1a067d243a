"""UNet / VDMUNet: shapes, conditioning, doubled output, reference parameter counts, a loss-reducing step.

Kept fast: one small UNet (8x8 inputs, 8 channels) whose jitted apply is shared by the tests (module fixture),
parameters perturbed with numpy (no per-leaf compiles), the reference presets counted with eval_shape only.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gencomp_jax.models.unet import UNet, attention, count_params, split_mean_scale, vdm_unet_preset

X = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
T = jnp.array([0.1, 0.7])
Y = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 2))


def _perturb(params, scale=0.05):
    rng = np.random.default_rng(9)
    return jax.tree_util.tree_map(lambda l: l + scale * rng.standard_normal(l.shape).astype(np.float32), params)


@pytest.fixture(scope="module")
def small_unet():
    """(net, params, jitted apply) of a 2-level UNet with attention at level 1 and a doubled output."""
    net = UNet(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=4, double_output=True)
    p = jax.jit(net.init)(jax.random.PRNGKey(0), X, T, Y)
    return net, p, jax.jit(net.apply)


def test_unet_shapes_conditioning_and_double_output(small_unet):
    net, p, apply = small_unet
    out = apply(p, X, T, Y)
    assert out.shape == (2, 8, 8, 6)
    mean, scale = split_mean_scale(out)
    np.testing.assert_allclose(scale, 1.0, rtol=1e-5)   # zero-init output -> scale starts at 1
    p = _perturb(p)
    o1, o2 = apply(p, X, T, Y), apply(p, X, T, Y + 1.0)
    assert float(jnp.max(jnp.abs(o1 - o2))) > 1e-3       # y is used
    o3 = apply(p, X, jnp.array([0.5, 0.2]), Y)
    assert float(jnp.max(jnp.abs(o1 - o3))) > 1e-3       # t is used
    with pytest.raises(ValueError, match="divisible"):
        net.apply(p, X[:, :7, :7], T, Y[:, :7, :7])
    with pytest.raises(ValueError, match="image-shaped"):
        net.apply(p, X, T, Y[:, :4])


def test_attention_matches_naive_softmax():
    """The cache-friendly attention (per-example map, deferred normalisation) equals softmax(q k^T) v, 1 and 2 heads."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 16, 4)), jnp.float32) for _ in range(3))
    naive = jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q, k), -1) @ v
    for per_example in (False, True):
        np.testing.assert_allclose(attention(q, k, v, per_example=per_example), naive, atol=1e-5)
        np.testing.assert_allclose(attention(q[:, 0], k[:, 0], v[:, 0], per_example=per_example), naive[:, 0],
                                   atol=1e-5)


def test_vdm_unet_matches_reference_parameter_counts():
    """UQDM reference presets (learned_prior_scale = doubled output): tiny ~167 K, small ~2.24 M parameters."""
    x = jnp.zeros((1, 4, 4, 3))
    counts = {}
    for name in ("tiny", "small"):
        net = vdm_unet_preset(name, double_output=True)
        shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, jnp.zeros((1,))))
        counts[name] = count_params(shapes)
    assert counts["tiny"] == 167_494
    assert counts["small"] == 2_238_150
    net = vdm_unet_preset("tiny")
    x = X[:, :4, :4]
    out = jax.jit(lambda x, t: net.apply(net.init(jax.random.PRNGKey(0), x, t), x, t))(x, T)
    np.testing.assert_allclose(out, x, atol=1e-6)   # residual input, zero-init output


def test_gradient_steps_reduce_denoising_loss(small_unet):
    net, p, _ = small_unet
    x0 = jnp.tanh(jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 3)))
    eps = jax.random.normal(jax.random.PRNGKey(3), x0.shape)
    t = jnp.array([0.3, 0.7])
    z = jnp.sqrt(1 - t)[:, None, None, None] * x0 + jnp.sqrt(t)[:, None, None, None] * eps
    opt = optax.adam(2e-3)

    def loss(p):
        return jnp.mean((net.apply(p, z, t, Y)[..., :3] - eps) ** 2)

    @jax.jit
    def train(p):
        def step(carry, _):
            p, st = carry
            l, g = jax.value_and_grad(loss)(p)
            u, st = opt.update(g, st, p)
            return (optax.apply_updates(p, u), st), l
        (p, _), ls = jax.lax.scan(step, (p, opt.init(p)), None, length=10)
        return ls[0], loss(p)

    l0, l10 = train(p)
    assert float(l10) < 0.9 * float(l0)
