"""geometry="torch" of StridedConv / SubpixelConv is PyTorch's Conv2d / ConvTranspose2d (CompressAI's
conv / deconv), forward and gradients, against lax convolutions written out with PyTorch's padding
rules here (an independent formula), and differs from "same" (so the option matters)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.nn import layers

DN = ("NHWC", "HWIO", "NHWC")


def _torch_conv2d(x, w_oihw, stride, padding):
    """PyTorch Conv2d(weight [O, I, k, k], stride, padding=p): symmetric zero padding p, floor output."""
    k = jnp.transpose(w_oihw, (2, 3, 1, 0))
    return jax.lax.conv_general_dilated(x, k, (stride, stride), ((padding, padding),) * 2, dimension_numbers=DN)


def _torch_conv_transpose2d(x, w_iokk, stride, padding, output_padding):
    """PyTorch ConvTranspose2d(weight [I, O, k, k]): out[o] = sum_i x[i] w[o + p - s i], size (n-1)s - 2p + k + op.

    Written as the gradient of the matching Conv2d (its definition as an adjoint), by jax.vjp.
    """
    n, h, w, _ = x.shape
    k = w_iokk.shape[-1]
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    zeros = jnp.zeros((n, out_h, out_w, w_iokk.shape[1]), x.dtype)
    # Conv2d with weight [O=I_t, I=O_t, k, k] maps the transpose's output space to its input space
    _, vjp = jax.vjp(lambda u: _torch_conv2d(u, w_iokk, stride, padding), zeros)
    return vjp(x)[0]


@pytest.mark.parametrize("size", [(8, 8), (16, 6), (7, 9)])
def test_strided_conv_torch_geometry_equals_conv2d(size):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (2,) + size + (3,))
    w = jax.random.normal(kw, (4, 3, 5, 5))  # torch layout [O, I, k, k]
    kernel = jnp.transpose(w, (2, 3, 1, 0))
    ref = lambda x, w: _torch_conv2d(x, w, 2, 2)  # noqa: E731
    ours = lambda x, w: layers.strided_conv(x, jnp.transpose(w, (2, 3, 1, 0)), 2, 2)  # noqa: E731
    np.testing.assert_allclose(ours(x, w), ref(x, w), atol=1e-5)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    same = layers.strided_conv(x, kernel, 2)
    if any(n % 2 == 0 for n in size):  # "same" pads (1, 2) there, PyTorch (2, 2); on odd sizes both (2, 2)
        assert float(jnp.max(jnp.abs(same - ref(x, w)))) > 1e-2
    else:
        np.testing.assert_allclose(same, ref(x, w), atol=1e-5)


@pytest.mark.parametrize("features", [4, 40])  # both sub-pixel code paths (unified / per phase)
def test_subpixel_torch_geometry_equals_conv_transpose2d(features):
    kx, kw = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (2, 4, 6, 3))
    w = jax.random.normal(kw, (3, features, 5, 5))  # torch ConvTranspose2d layout [I, O, k, k]
    to_ours = lambda w: jnp.transpose(w, (2, 3, 0, 1))[::-1, ::-1]  # noqa: E731  (the converter's mapping)
    ref = lambda x, w: _torch_conv_transpose2d(x, w, 2, 2, 1)  # noqa: E731
    ours = lambda x, w: layers.subpixel_conv(x, to_ours(w), 2, layers.torch_transpose_pad(5))  # noqa: E731
    assert ours(x, w).shape == ref(x, w).shape == (2, 8, 12, features)
    np.testing.assert_allclose(ours(x, w), ref(x, w), atol=1e-4)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, atol=1e-3)
    same = layers.subpixel_conv(x, to_ours(w), 2)
    assert float(jnp.max(jnp.abs(same - ref(x, w)))) > 1e-2


def test_modules_take_the_geometry_and_refuse_unknown_ones():
    x = jnp.ones((1, 8, 8, 2))
    for cls in (layers.StridedConv, layers.SubpixelConv):
        m = cls(3, geometry="torch")
        m.apply(m.init(jax.random.PRNGKey(0), x), x)
        bad = cls(3, geometry="tf")
        with pytest.raises(ValueError, match="geometry"):
            bad.init(jax.random.PRNGKey(0), x)
