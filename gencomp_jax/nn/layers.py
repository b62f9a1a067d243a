"""Building blocks for nonlinear transform coding: GDN / IGDN and fast sub-pixel up-sampling.

All layers are channels-last (NHWC) flax.linen modules.

Why `SubpixelConv` and never `nn.ConvTranspose`: on XLA:CPU the backward pass of a strided
transposed convolution is ~30x slower than a stride-1 convolution of the same FLOPs. A stride-s
transposed convolution is exactly a stride-1 convolution with s^2 polyphase sub-kernels followed by
depth-to-space, so `SubpixelConv` computes the same family of functions at the fast speed
(same parameters as `nn.ConvTranspose(..., padding="SAME")`, e.g. converted CompressAI weights).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = Any

_PEDESTAL = 2.0 ** -36  # Ballé's reparam_offset ** 2


@jax.custom_vjp
def lower_bound(x, bound):
    """max(x, bound) whose gradient still flows where x < bound if it pushes x upwards (Ballé)."""
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(res, g):
    x, bound = res
    pass_through = (x >= bound) | (g < 0)
    return (jnp.where(pass_through, g, 0.0).astype(x.dtype), jnp.zeros_like(bound))


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def nonneg_param(raw, minimum: float = 0.0):
    """Reparameterized nonnegative value: lower_bound(raw, sqrt(minimum + pedestal))^2 - pedestal."""
    bound = jnp.sqrt(jnp.asarray(minimum + _PEDESTAL, raw.dtype))
    return jnp.square(lower_bound(raw, bound)) - _PEDESTAL


def nonneg_init(value_fn: Callable[[int], np.ndarray]):
    """Initializer storing raw = sqrt(value + pedestal) for the value returned by value_fn(C)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.sqrt(jnp.asarray(value_fn(shape[-1]), dtype) + _PEDESTAL)

    return init


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), channels-last.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)      (inverse=False)
    y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)      (inverse=True, "IGDN")
    beta >= beta_min and gamma >= 0 through the squared, lower-bounded reparameterization; init
    beta = 1, gamma = gamma_init * I. Input [..., C] -> output [..., C].
    """

    inverse: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        beta_raw = self.param("beta", nonneg_init(lambda n: np.ones(n)), (c,))
        gamma_raw = self.param("gamma", nonneg_init(lambda n: self.gamma_init * np.eye(n)), (c, c))
        beta = nonneg_param(beta_raw, self.beta_min)
        gamma = nonneg_param(gamma_raw)  # gamma[i, j]: weight of x_j^2 in the norm of channel i
        norm = jnp.dot(jnp.square(x), gamma.T.astype(x.dtype)) + beta.astype(x.dtype)
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)


def IGDN(**kwargs) -> GDN:  # noqa: N802  (a layer "class" by name)
    """Inverse GDN: `GDN(inverse=True)`."""
    return GDN(inverse=True, **kwargs)


def depth_to_space(x: Array, stride: int) -> Array:
    """[N, H, W, s*s*C] -> [N, s*H, s*W, C]; channel (r1*s + r2)*C + c goes to pixel (s h + r1, s w + r2)."""
    n, h, w, cs = x.shape
    c = cs // (stride * stride)
    x = x.reshape(n, h, w, stride, stride, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * stride, w * stride, c)


def space_to_depth(x: Array, stride: int) -> Array:
    """Inverse of depth_to_space: [N, s*H, s*W, C] -> [N, H, W, s*s*C]."""
    n, hs, ws, c = x.shape
    h, w = hs // stride, ws // stride
    x = x.reshape(n, h, stride, w, stride, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, stride * stride * c)


def _transpose_same_pad(k: int, s: int) -> int:
    """Leading padding of the dilated input in lax.conv_transpose(..., padding="SAME")."""
    pad_len = k + s - 2
    return k - 1 if s > k - 1 else -(-pad_len // 2)


def polyphase_kernels(kernel, stride: int):
    """Splits a transposed-convolution kernel into its stride^2 polyphase sub-kernels.

    kernel: [k, k, Cin, Cout] as used by `lax.conv_transpose(x, kernel, (s, s), "SAME")` (HWIO,
    transpose_kernel=False). Returns a list over phases (r1, r2) in row-major order of
    (sub_kernel [k1, k2, Cin, Cout], ((pad_top, pad_bottom), (pad_left, pad_right))) such that the
    stride-1 convolution of x with sub_kernel and that padding gives the outputs y[s q + r1, s p + r2].
    """
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError(f"Square kernels only, got {kernel.shape}.")
    pad = _transpose_same_pad(k, stride)
    taps = []
    for r in range(stride):
        t0 = (pad - r) % stride
        length = len(range(t0, k, stride))
        base = (r + t0 - pad) // stride  # exact division
        taps.append((slice(t0, None, stride), (-base, length - 1 + base)))
    out = []
    for sl1, p1 in taps:
        for sl2, p2 in taps:
            out.append((kernel[sl1, sl2], (p1, p2)))
    return out


class SubpixelConv(nn.Module):
    """Fast drop-in for `nn.ConvTranspose(features, (k, k), (s, s), padding="SAME")`.

    Same parameter ("kernel" [k, k, Cin, features], "bias" [features]) and the same function as
    lax.conv_transpose with padding "SAME", computed as s^2 stride-1 polyphase convolutions whose
    outputs are interleaved by depth-to-space: identical FLOPs, fast backward pass on XLA:CPU.
    [N, H, W, Cin] -> [N, s*H, s*W, features].
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    # Effective fan-in of each output is k^2 Cin / s^2 (each phase sees ~1/s^2 of the taps).
    kernel_init: Callable | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s, k = self.stride, self.kernel_size
        init = self.kernel_init or nn.initializers.variance_scaling(float(s * s), "fan_in",
                                                                    "truncated_normal")
        kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features)).astype(x.dtype)
        outs = []
        for sub, pads in polyphase_kernels(kernel, s):
            outs.append(jax.lax.conv_general_dilated(
                x, sub, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")))
        y = depth_to_space(jnp.concatenate(outs, axis=-1), s)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


class StridedConv(nn.Module):
    """Fast drop-in for `nn.Conv(features, (k, k), strides=(s, s), padding="SAME")`.

    Same parameters ("kernel" [k, k, Cin, features], "bias") and the same function, computed as the
    sum of s^2 stride-1 convolutions of the polyphase components of the input. Its gradient needs no
    lhs-dilated ("transposed") convolution, which is the slow path of XLA:CPU.
    [N, H, W, Cin] -> [N, ceil(H/s), ceil(W/s), features].
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    # Inputs with k*k*Cin <= this use explicit patches + one matmul (e.g. the RGB input layer, where
    # convolutions with 3 input channels run far below peak and no input gradient is needed).
    patches_max_depth: int = 128

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s, k = self.stride, self.kernel_size
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, cin, self.features))
        kernel = kernel.astype(x.dtype)
        if k * k * cin <= self.patches_max_depth:
            patches = jax.lax.conv_general_dilated_patches(
                x, (k, k), (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            # patches feature order is (Cin, kh, kw)
            w = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * k * k, self.features)
            y = jnp.dot(patches, w)
            if self.use_bias:
                y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
            return y
        pads, outs = [], []
        for size in x.shape[1:3]:
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            lo = total // 2
            hi = total - lo + (-(size + total) % s)  # make the padded length a multiple of s
            pads.append((lo, hi))
            outs.append(out)
        xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
        y = None
        for r1 in range(min(s, k)):
            for r2 in range(min(s, k)):
                part = jax.lax.conv_general_dilated(
                    xp[:, r1::s, r2::s], kernel[r1::s, r2::s], (1, 1), "VALID",
                    dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, :outs[0], :outs[1]]
                y = part if y is None else y + part
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y
