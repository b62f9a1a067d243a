"""Building blocks for nonlinear transform coding: GDN / IGDN and fast sub-pixel up-sampling.

All layers are channels-last (NHWC) flax.linen modules.

Why `SubpixelConv` and never `nn.ConvTranspose`: on XLA:CPU the backward pass of a strided
transposed convolution is ~30x slower than a stride-1 convolution of the same FLOPs. A stride-s
transposed convolution is exactly a stride-1 convolution with s^2 polyphase sub-kernels followed by
depth-to-space, so `SubpixelConv` computes the same family of functions at the fast speed
(same parameters as `nn.ConvTranspose(..., padding="SAME")`, e.g. converted CompressAI weights).
"""

from __future__ import annotations

import functools
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


def _transpose_same_pad(k: int, s: int) -> int:
    """Leading padding of the dilated input in lax.conv_transpose(..., padding="SAME")."""
    pad_len = k + s - 2
    return k - 1 if s > k - 1 else -(-pad_len // 2)


def torch_transpose_pad(k: int) -> int:
    """Leading pad (of the stride-dilated input, correlation with the flipped kernel) that reproduces
    PyTorch's ConvTranspose2d(k, s, padding=k // 2, output_padding=s - 1), CompressAI's `deconv`."""
    return k - 1 - k // 2


def polyphase_kernels(kernel, stride: int, pad: int | None = None):
    """Splits a transposed-convolution kernel into its stride^2 polyphase sub-kernels.

    kernel: [k, k, Cin, Cout] as used by `lax.conv_transpose(x, kernel, (s, s), "SAME")` (HWIO,
    transpose_kernel=False). Returns a list over phases (r1, r2) in row-major order of
    (sub_kernel [k1, k2, Cin, Cout], ((pad_top, pad_bottom), (pad_left, pad_right))) such that the
    stride-1 convolution of x with sub_kernel and that padding gives the outputs y[s q + r1, s p + r2].
    pad: leading pad of the dilated input (None: lax's "SAME"; `torch_transpose_pad(k)`: PyTorch's).
    """
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError(f"Square kernels only, got {kernel.shape}.")
    pad = _transpose_same_pad(k, stride) if pad is None else int(pad)
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


# Convolutions with at most this many output pixels run as one im2col matmul (the hyper-transforms'
# 1x1 to 4x4 maps, where XLA:CPU's convolution has no fast path).
_IM2COL_MAX_PIXELS = 16


def _conv_im2col(x, kernel, strides, pads):
    """conv_general_dilated (NHWC, HWIO, explicit pads) as shifted slices + one matmul.

    Taps that only ever read padding are dropped, so e.g. a 5x5 conv of a 1x1 map is one matmul.
    """
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    (pt, pb), (pl, pr) = pads
    sh, sw = strides
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1

    def live(k, size, lo, s, out):  # taps whose input rows/cols are not all padding
        return [i for i in range(k) if any(0 <= i - lo + s * o < size for o in range(out))]

    ti, tj = live(kh, h, pt, sh, oh), live(kw, w, pl, sw, ow)
    if not ti or not tj:
        return jnp.zeros((n, oh, ow, cout), x.dtype)
    # pad only as far as the live taps read
    lo_h, hi_h = max(pt - ti[0], 0), max(ti[-1] - pt + sh * (oh - 1) - (h - 1), 0)
    lo_w, hi_w = max(pl - tj[0], 0), max(tj[-1] - pl + sw * (ow - 1) - (w - 1), 0)
    if lo_h or hi_h or lo_w or hi_w:
        x = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
    cols = []
    for i in ti:
        for j in tj:
            r0, c0 = i - pt + lo_h, j - pl + lo_w
            cols.append(x[:, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw])
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    k = kernel[ti[0]:ti[-1] + 1][:, tj[0]:tj[-1] + 1].reshape(len(ti) * len(tj) * cin, cout)
    return jnp.dot(patches.reshape(-1, k.shape[0]), k).reshape(n, oh, ow, cout)


def _conv(x, kernel, strides, padding):
    if padding == "VALID":
        padding = ((0, 0), (0, 0))
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    kh, kw = kernel.shape[:2]
    oh = (x.shape[1] + sum(pads[0]) - kh) // strides[0] + 1
    ow = (x.shape[2] + sum(pads[1]) - kw) // strides[1] + 1
    if oh * ow <= _IM2COL_MAX_PIXELS:
        return _conv_im2col(x, kernel, strides, pads)
    return jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv(nn.Module):
    """`nn.Conv(features, (k, k), padding="SAME")` (stride 1) with the same parameters ("kernel"
    [k, k, Cin, features], "bias") computed by `_conv` (one matmul on tiny maps). [N,H,W,Cin] -> [N,H,W,F]."""

    features: int
    kernel_size: int = 3
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        y = _conv(x, kernel.astype(x.dtype), (1, 1), (((k - 1) // 2, k // 2),) * 2)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


def _unified_polyphase(kernel, stride: int, pad: int | None = None):
    """All s^2 polyphase sub-kernels zero-padded into one window: ([kh, kw, Cin, s*s*Cout], pads).

    One stride-1 convolution with it, followed by depth_to_space, equals the transposed convolution
    (more FLOPs than the separate phases, but one large matmul: faster for few output channels).
    """
    phases = polyphase_kernels(kernel, stride, pad)
    lo = [max(p[1][d][0] for p in phases) for d in (0, 1)]
    hi = [max(p[1][d][1] for p in phases) for d in (0, 1)]
    subs = [jnp.pad(sub, ((lo[0] - p1[0], hi[0] - p1[1]), (lo[1] - p2[0], hi[1] - p2[1]), (0, 0), (0, 0)))
            for sub, (p1, p2) in phases]
    k = jnp.stack(subs, axis=3)  # [kh, kw, Cin, s*s, Cout]
    kh, kw, cin, _, cout = k.shape
    return k.reshape(kh, kw, cin, stride * stride * cout), ((lo[0], hi[0]), (lo[1], hi[1]))


# Below this many output channels the up-sampling runs as one unified stride-1 convolution.
_UNIFIED_MAX_FEATURES = 32


def _transpose_adjoint(kernel, stride: int, pad: int | None = None):
    """(kernel', pads) of the strided conv S whose adjoint is conv_transpose(., kernel, SAME).

    conv_transpose(x, k, s, SAME) = S^T x with S(u) = conv(u, flip(k) with in/out swapped, stride s,
    padding (k-1-pad_lo, k-pad_lo'-s)) per spatial dim, where pad_lo is conv_transpose's leading pad.
    """
    k = kernel.shape[0]
    pl = k - 1 - (_transpose_same_pad(k, stride) if pad is None else int(pad))
    ph = k - pl - stride
    kt = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    return kt, ((pl, ph), (pl, ph))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def subpixel_conv(x, kernel, stride: int, pad: int | None = None):
    """lax.conv_transpose(x, kernel, (s, s), "SAME") (HWIO kernel) computed for XLA:CPU's fast paths.

    Forward: s^2 polyphase stride-1 convolutions + depth_to_space. Backward (custom VJP): the input
    gradient is one strided convolution of the output gradient (the transpose's adjoint), the kernel
    gradient that convolution's weight gradient; neither needs an lhs-dilated convolution or per-phase
    slicing. [N, H, W, Cin] -> [N, s*H, s*W, Cout]. pad: as in `polyphase_kernels`.
    """
    if kernel.shape[-1] < _UNIFIED_MAX_FEATURES:
        k, pads = _unified_polyphase(kernel, stride, pad)
        return depth_to_space(_conv(x, k, (1, 1), pads), stride)
    outs = [_conv(x, sub, (1, 1), pads) for sub, pads in polyphase_kernels(kernel, stride, pad)]
    return depth_to_space(jnp.concatenate(outs, axis=-1), stride)


def _subpixel_fwd(x, kernel, stride, pad):
    return subpixel_conv(x, kernel, stride, pad), (x, kernel)


def _subpixel_bwd(stride, pad, res, g):
    x, kernel = res
    kt, pads = _transpose_adjoint(kernel, stride, pad)
    s_of = lambda u, kk: _conv(u, kk, (stride, stride), pads)  # noqa: E731
    dx = s_of(g, kt)
    # <g, S^T(x; k')> = <S(g; k'), x>: the kernel gradient is S's weight gradient with cotangent x.
    _, vjp_k = jax.vjp(lambda kk: s_of(g, kk), kt)
    (dkt,) = vjp_k(x)
    return dx, jnp.swapaxes(dkt, 2, 3)[::-1, ::-1]


subpixel_conv.defvjp(_subpixel_fwd, _subpixel_bwd)


class SubpixelConv(nn.Module):
    """Fast drop-in for `nn.ConvTranspose(features, (k, k), (s, s), padding="SAME")`.

    Same parameter ("kernel" [k, k, Cin, features], "bias" [features]) and the same function as
    lax.conv_transpose with padding "SAME", computed by `subpixel_conv`: s^2 stride-1 polyphase
    convolutions interleaved by depth-to-space, with a custom backward pass of plain strided
    convolutions: identical FLOPs, fast on XLA:CPU. [N, H, W, Cin] -> [N, s*H, s*W, features].

    geometry="torch": PyTorch's ConvTranspose2d(k, s, padding=k // 2, output_padding=s - 1) (CompressAI's
    `deconv`) for kernel = its weight [Cin, Cout, k, k] flipped in space and transposed to [k, k, Cin, Cout]
    (a one-sample shift of the dilated input from "same").
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    geometry: str = "same"
    # Effective fan-in of each output is k^2 Cin / s^2 (each phase sees ~1/s^2 of the taps).
    kernel_init: Callable | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s, k = self.stride, self.kernel_size
        init = self.kernel_init or nn.initializers.variance_scaling(float(s * s), "fan_in",
                                                                    "truncated_normal")
        kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features)).astype(x.dtype)
        y = subpixel_conv(x, kernel, s, torch_transpose_pad(k) if _check_geometry(self.geometry) else None)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


GEOMETRIES = ("same", "torch")


def _check_geometry(geometry: str) -> bool:
    """True for "torch" (PyTorch/CompressAI padding), False for "same"; anything else is an error."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry={geometry!r}; use one of {GEOMETRIES}.")
    return geometry == "torch"


def _strided_pads(size: int, k: int, stride: int, lo: int | None):
    """(pad_lo, pad_hi) of a stride-s conv with ceil(size / s) outputs: lo=None is "SAME" (the extra
    pad at the end, TensorFlow's rule), lo=k // 2 PyTorch's Conv2d(k, s, padding=k // 2)."""
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    if lo is None:
        return total // 2, total - total // 2
    return lo, max(total - lo, 0)


def _strided_lax(x, kernel, stride: int, lo: int | None = None):
    k = kernel.shape[0]
    pads = [_strided_pads(size, k, stride, lo) for size in x.shape[1:3]]
    return _conv(x, kernel, (stride, stride), pads)


def _polyphase_strided(x, kernel, stride: int, lo: int | None = None):
    """The strided conv as the sum of s^2 stride-1 convs of the input's polyphase components."""
    s, k = stride, kernel.shape[0]
    pads, outs = [], []
    for size in x.shape[1:3]:
        p_lo, p_hi = _strided_pads(size, k, s, lo)
        pads.append((p_lo, p_hi + (-(size + p_lo + p_hi) % s)))  # padded length a multiple of s
        outs.append(-(-size // s))
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    y = None
    for r1 in range(min(s, k)):
        for r2 in range(min(s, k)):
            part = _conv(xp[:, r1::s, r2::s], kernel[r1::s, r2::s], (1, 1), "VALID")
            part = part[:, :outs[0], :outs[1]]
            y = part if y is None else y + part
    return y


def _adjoint_is_subpixel(shape, k: int, stride: int, lo: int | None = None) -> bool:
    """Whether strided_conv's pads on this input equal those of a sub-pixel conv's adjoint (pad k-1-lo)."""
    if k < stride:
        return False
    pl = k - 1 - _transpose_same_pad(k, stride) if lo is None else lo
    for n in shape[1:3]:
        if n % stride or _strided_pads(n, k, stride, lo) != (pl, k - pl - stride):
            return False
    return True


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x, kernel, stride: int, lo: int | None = None):
    """conv(x, kernel, stride s, "SAME") (NHWC, HWIO) with a backward pass for XLA:CPU's fast paths.

    Forward and kernel gradient: XLA's own strided convolution (fastest here). Input gradient: the
    polyphase formulation's (s^2 stride-1 convolutions), never the lhs-dilated ("transposed")
    convolution that is XLA:CPU's slow path. [N, H, W, Cin] -> [N, ceil(H/s), ceil(W/s), Cout].
    lo: leading pad (None: "SAME"; k // 2: PyTorch's Conv2d(k, s, padding=k // 2)).
    """
    return _strided_lax(x, kernel, stride, lo)


def _strided_fwd(x, kernel, stride, lo):
    return strided_conv(x, kernel, stride, lo), (x, kernel)


def _strided_bwd(stride, lo, res, g):
    x, kernel = res
    _, vjp_k = jax.vjp(lambda kk: _strided_lax(x, kk, stride, lo), kernel)
    k = kernel.shape[0]
    if _adjoint_is_subpixel(x.shape, k, stride, lo):
        # S^T g is a transposed convolution: the (fast) sub-pixel forward pass computes it.
        dx = subpixel_conv(g, jnp.swapaxes(kernel, 2, 3)[::-1, ::-1], stride, None if lo is None else k - 1 - lo)
        return dx, vjp_k(g)[0]
    _, vjp_x = jax.vjp(lambda xx: _polyphase_strided(xx, kernel, stride, lo), x)
    return vjp_x(g)[0], vjp_k(g)[0]


strided_conv.defvjp(_strided_fwd, _strided_bwd)


class StridedConv(nn.Module):
    """Fast drop-in for `nn.Conv(features, (k, k), strides=(s, s), padding="SAME")`.

    Same parameters ("kernel" [k, k, Cin, features], "bias") and the same function, computed by
    `strided_conv`, whose gradient needs no lhs-dilated ("transposed") convolution, the slow path
    of XLA:CPU. [N, H, W, Cin] -> [N, ceil(H/s), ceil(W/s), features].
    geometry="torch": PyTorch's Conv2d(k, s, padding=k // 2) (CompressAI's `conv`): pads (2, 1) where
    "same" pads (1, 2) for k=5, s=2 on even sizes.
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    geometry: str = "same"
    kernel_init: Callable = nn.initializers.lecun_normal()
    # Kept for compatibility; no longer used (XLA's strided conv is faster than explicit patches).
    patches_max_depth: int = 0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        y = strided_conv(x, kernel.astype(x.dtype), self.stride, k // 2 if _check_geometry(self.geometry) else None)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y
