"""Tests for gencomp_jax.nn.layers: SubpixelConv == conv_transpose, GDN/IGDN formulas and bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.nn import layers as L


@pytest.mark.parametrize("k,s", [(5, 2), (3, 2), (4, 2), (3, 3)])
def test_subpixel_conv_equals_conv_transpose(k, s):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
    bias = rng.normal(size=(4,)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        ref = jax.lax.conv_transpose(x, kernel, (s, s), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
        layer = L.SubpixelConv(4, kernel_size=k, stride=s)
        params = layer.init(jax.random.PRNGKey(0), x)
        assert params["params"]["kernel"].shape == kernel.shape  # same parameters as ConvTranspose
        got = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
        # and the same gradients
        g_ref = jax.grad(lambda kk: jnp.sum(jax.lax.conv_transpose(
            x, kk, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2))(kernel)
        g = jax.grad(lambda kk: jnp.sum((layer.apply({"params": {"kernel": kk, "bias": bias * 0}},
                                                     x)) ** 2))(kernel)
    assert got.shape == ref.shape == (2, 5 * s, 7 * s, 4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-3)


def test_depth_to_space_index_map():
    """Channel (r1*s + r2)*C + c of pixel (h, w) lands on pixel (s*h + r1, s*w + r2), channel c."""
    s, c = 3, 2
    x = np.arange(2 * 2 * 4 * s * s * c, dtype=np.float32).reshape(2, 2, 4, s * s * c)
    want = np.zeros((2, 2 * s, 4 * s, c), np.float32)
    for h in range(2):
        for w in range(4):
            for r1 in range(s):
                for r2 in range(s):
                    want[:, s * h + r1, s * w + r2, :] = x[:, h, w, (r1 * s + r2) * c:(r1 * s + r2 + 1) * c]
    np.testing.assert_array_equal(L.depth_to_space(jnp.asarray(x), s), want)


def test_gdn_and_igdn_match_formula_and_invert_each_other():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 3, 5)).astype(np.float32)
    gdn, igdn = L.GDN(), L.IGDN()
    p = gdn.init(jax.random.PRNGKey(0), x)
    beta_raw = rng.uniform(0.5, 1.5, size=5).astype(np.float32)
    gamma_raw = rng.uniform(0.0, 0.5, size=(5, 5)).astype(np.float32)
    p = {"params": {"beta": jnp.asarray(beta_raw), "gamma": jnp.asarray(gamma_raw)}}
    beta, gamma = beta_raw ** 2 - 2.0 ** -36, gamma_raw ** 2 - 2.0 ** -36
    norm = np.einsum("nhwj,ij->nhwi", x ** 2, gamma) + beta
    y = gdn.apply(p, x)
    np.testing.assert_allclose(y, x / np.sqrt(norm), rtol=1e-5)
    np.testing.assert_allclose(igdn.apply(p, x), x * np.sqrt(norm), rtol=1e-5)
    # inverse relation: x is the fixed point of x' = y * sqrt(beta + gamma x'^2) (IGDN's norm at x)
    np.testing.assert_allclose(np.asarray(y) * np.sqrt(norm), x, rtol=1e-5, atol=1e-6)
    # with gamma = 0 GDN and IGDN are exact inverses
    p0 = {"params": {"beta": jnp.asarray(beta_raw), "gamma": jnp.zeros((5, 5))}}
    np.testing.assert_allclose(igdn.apply(p0, gdn.apply(p0, x)), x, rtol=1e-5, atol=1e-6)


def test_gdn_reparameterization_keeps_beta_positive_and_gradient_flows_upwards():
    x = jnp.ones((1, 1, 1, 2))
    p = {"params": {"beta": jnp.array([-3.0, 0.0]), "gamma": jnp.zeros((2, 2))}}
    y = L.GDN().apply(p, x)
    assert np.all(np.isfinite(y)) and np.all(np.asarray(y) <= 1e3 + 1)  # beta clamped at beta_min
    # lower_bound: gradient passes where it would push the value up, blocked otherwise
    g = jax.grad(lambda r: jnp.sum(-L.lower_bound(r, 1.0)))(jnp.array([0.0, 2.0]))
    np.testing.assert_array_equal(g, [-1.0, -1.0])
    g = jax.grad(lambda r: jnp.sum(L.lower_bound(r, 1.0)))(jnp.array([0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0])


@pytest.mark.parametrize("cin,size", [(3, (9, 12)), (16, (9, 7))])  # patches path, polyphase path
def test_strided_conv_equals_nn_conv(cin, size):
    import flax.linen as nn
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, *size, cin)), jnp.float32)
    layer = L.StridedConv(8, 5, 2)
    params = layer.init(jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # nonzero bias
    ref_layer = nn.Conv(8, (5, 5), strides=(2, 2), padding="SAME")
    with jax.default_matmul_precision("highest"):
        got = layer.apply(params, x)
        ref = ref_layer.apply(params, x)
        g = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))(params)
        g_ref = jax.grad(lambda p: jnp.sum(ref_layer.apply(p, x) ** 2))(params)
    assert got.shape == (2, (size[0] + 1) // 2, (size[1] + 1) // 2, 8)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["params"]["kernel"], g_ref["params"]["kernel"], rtol=1e-4, atol=1e-3)


def test_subpixel_and_strided_conv_custom_gradients_match_lax_on_wide_layers():
    """Polyphase forward path (>= 32 output channels) and both custom VJPs against lax's autodiff."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(1, 3, 4, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(5, 5, 8, 32)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")
    with jax.default_matmul_precision("highest"):
        f_ref = lambda x, k: jnp.sum(jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=dn) ** 2)  # noqa: E731
        f_got = lambda x, k: jnp.sum(L.subpixel_conv(x, k, 2) ** 2)  # noqa: E731
        np.testing.assert_allclose(f_got(x, k), f_ref(x, k), rtol=1e-5)
        for a, b in zip(jax.grad(f_got, (0, 1))(x, k), jax.grad(f_ref, (0, 1))(x, k)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
        x2 = jnp.asarray(rng.normal(size=(1, 7, 6, 32)), jnp.float32)
        k2 = jnp.asarray(rng.normal(size=(5, 5, 32, 4)), jnp.float32)
        s_ref = lambda x, k: jnp.sum(jax.lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=dn) ** 2)  # noqa: E731
        s_got = lambda x, k: jnp.sum(L.strided_conv(x, k, 2) ** 2)  # noqa: E731
        for a, b in zip(jax.grad(s_got, (0, 1))(x2, k2), jax.grad(s_ref, (0, 1))(x2, k2)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


_DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("size,k,s,pads", [
    ((4, 4), 3, 1, ((1, 1), (1, 1))),   # h_a conv0 / h_s conv2 at 64x64 input
    ((4, 3), 5, 2, ((1, 2), (1, 2))),   # strided 5x5 on a tiny map
    ((2, 2), 5, 2, ((1, 2), (1, 2))),   # -> 1x1 output, taps that only read padding are dropped
    ((1, 1), 5, 1, ((2, 2), (2, 2))),   # 5x5 conv of a 1x1 map == one matmul with the centre tap
    ((3, 3), 2, 1, ((0, 1), (1, 0))),   # asymmetric pads
])
def test_conv_im2col_matches_lax_values_and_gradients(size, k, s, pads):
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(2, *size, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 5, 7)), jnp.float32)
    with jax.default_matmul_precision("highest"):
        ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), pads, dimension_numbers=_DN)  # noqa: E731
        got = lambda x, w: L._conv_im2col(x, w, (s, s), pads)  # noqa: E731
        np.testing.assert_allclose(got(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
        loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
        for a, b in zip(jax.grad(loss(got), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(4, 4), (7, 6)])  # im2col path (<= 16 pixels), lax path
def test_conv_equals_nn_conv_with_the_same_parameters(size):
    import flax.linen as nn
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(2, *size, 6)), jnp.float32)
    layer, ref_layer = L.Conv(8, 3), nn.Conv(8, (3, 3), padding="SAME")
    params = layer.init(jax.random.PRNGKey(0), x)
    ref_params = ref_layer.init(jax.random.PRNGKey(0), x)
    # same names, shapes and initial values: checkpoints of nn.Conv models load unchanged
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, ref_params)
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # nonzero bias
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(layer.apply(params, x), ref_layer.apply(params, x), rtol=1e-5, atol=1e-5)
        g = jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), (0, 1))(params, x)
        g_ref = jax.grad(lambda p, x: jnp.sum(ref_layer.apply(p, x) ** 2), (0, 1))(params, x)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("k", [5, 4, 3])
@pytest.mark.parametrize("size", [(4, 4), (12, 10)])  # im2col and lax paths
def test_strided_conv_input_gradient_via_subpixel_matches_lax(k, size):
    """Even sizes: strided_conv's input gradient is computed by subpixel_conv (the adjoint)."""
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.normal(size=(2, *size, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 6, 40)), jnp.float32)  # >= 32 channels: polyphase path
    assert L._adjoint_is_subpixel(x.shape, k, 2)
    assert not L._adjoint_is_subpixel((2, 7, 6, 6), k, 2)  # odd size: polyphase fallback
    with jax.default_matmul_precision("highest"):
        ref = lambda x, w: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=_DN)))  # noqa: E731
        got = lambda x, w: jnp.sum(jnp.sin(L.strided_conv(x, w, 2)))  # noqa: E731
        for a, b in zip(jax.grad(got, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
