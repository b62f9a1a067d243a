"""UNet denoisers (flax linen).

Two networks, same call signature ``model.apply(params, x, t, y=None, train=False, rngs=...)``:
  x: float32 [B, H, W, C] (the noisy z_t), t: [B] or scalar conditioning value in ~[0, 1] (diffusion time or a
  normalised log-SNR); it is embedded sinusoidally after multiplying by `time_scale` (1000, as in DDPM/VDM).
  y: optional image-shaped conditioning [B, H, W, Cy], concatenated to x at the input (HFD). `UNet` also takes
  a list of feature maps [y_0 [B, H, W, C0], y_1 [B, H/2, W/2, C1], ...] (at most one per level): y_0 is
  concatenated at the input and y_i at the start of level i (CDC's context features, models/cdc.py).
  Returns [B, H, W, out] with out = out_channels (default C), doubled when ``double_output=True``; use
  `split_mean_scale` to get (mean, positive scale) with the scale initialised near 1 (UQDM's learned
  per-pixel scale). Dropout needs ``rngs={"dropout": key}`` when train=True and dropout > 0.

`UNet`: multi-resolution (DDPM/ADM-style): ch * ch_mult[i] channels at level i, `num_res_blocks` residual
  blocks per level, attention at the levels listed in `attn_levels` (level i has resolution H / 2^i; keep
  it to low resolutions: attention over 1024 positions dominates the cost on CPU) and in the middle.
  Down-sampling: stride-2 convolution; up-sampling: `gencomp_jax.nn.layers.SubpixelConv` (default) or
  nearest-neighbour resize + 3x3 convolution (upsample="nearest") (never
  transposed convolutions, whose backward pass is slow on XLA:CPU). H and W must be divisible by
  2^(len(ch_mult) - 1).

`VDMUNet`: VDM's single-resolution score network (``ScoreUNet`` of google-research/vdm, as used by the UQDM
  reference ``VDM_Net``): Fourier features of the input, `n_blocks` residual blocks down and n_blocks + 1 up
  (with skip concatenation), one middle attention block, no down-sampling. `vdm_unet_preset("tiny")`
  (~167 K parameters) and `("small")` (~2.24 M) match the UQDM reference presets. ``residual_input=True``
  adds the input z to the first C output channels, as the reference does.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gencomp_jax.nn.layers import SubpixelConv

_SOFTPLUS_INV1 = math.log(math.expm1(1.0))


def timestep_embedding(t, dim: int, *, max_period: float = 10000.0):
    """Sinusoidal embedding [B, dim] of t [B] (already scaled, e.g. t * 1000)."""
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}.")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def fourier_features(x, exponents: Sequence[float]):
    """VDM's input Fourier features: sin and cos of 2 pi 2^n x for n in exponents, [B, H, W, 2 len(exponents) C]."""
    freqs = 2.0 ** jnp.asarray(exponents, jnp.float32) * 2 * jnp.pi
    h = (x[..., None] * freqs).reshape(x.shape[:-1] + (-1,))
    return jnp.concatenate([jnp.sin(h), jnp.cos(h)], axis=-1)


def split_mean_scale(out):
    """Splits a doubled output [..., 2C] into (mean [..., C], scale [..., C] = softplus(s + softplus^-1(1)) > 0)."""
    c = out.shape[-1] // 2
    return out[..., :c], jax.nn.softplus(out[..., c:] + _SOFTPLUS_INV1)


def _groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def _conv(features, kernel=3, stride=1, zero=False, name=None):
    kw = dict(kernel_init=nn.initializers.zeros) if zero else {}
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME", name=name, **kw)


class ResBlock(nn.Module):
    """GN-swish-conv, + projected conditioning, GN-swish-dropout-conv(zero init), + skip (1x1 if channels change)."""

    features: int
    norm_groups: int = 32
    dropout: float = 0.0
    norm_epsilon: float = 1e-6   # GroupNorm epsilon (flax's default; PyTorch's is 1e-5)

    @nn.compact
    def __call__(self, x, cond, train: bool = False):
        h = nn.swish(nn.GroupNorm(_groups(x.shape[-1], self.norm_groups), epsilon=self.norm_epsilon)(x))
        h = _conv(self.features)(h)
        if cond is not None:
            h = h + nn.Dense(self.features, use_bias=False, kernel_init=nn.initializers.zeros)(cond)[:, None, None]
        h = nn.swish(nn.GroupNorm(_groups(self.features, self.norm_groups), epsilon=self.norm_epsilon)(h))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.features, zero=True)(h)
        if x.shape[-1] != self.features:
            x = nn.Dense(self.features, name="skip")(x)
        return x + h


def attention(q, k, v, *, per_example: Optional[bool] = None):
    """Softmax attention softmax(q k^T) v for q, k, v [B, N, D] or [B, heads, N, D] (q already scaled by 1/sqrt(D)).

    Written for XLA:CPU: the softmax normalisation is applied to the [.., N, D] output instead of the [.., N, N]
    weights (one pass fewer over the largest tensor), and for long sequences (N >= 512, default) the batch is
    processed one example at a time (`lax.map`) so each [N, N] block stays in cache: 6x faster forward+backward
    than a batched einsum + jax.nn.softmax for the 1,024-position attention of the VDM `tiny` network.
    """
    def one(q, k, v):
        s = jnp.einsum("...qd,...kd->...qk", q, k)
        e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
        return jnp.einsum("...qk,...kd->...qd", e, v) / jnp.sum(e, axis=-1, keepdims=True)

    if per_example is None:
        per_example = q.shape[-2] >= 512
    if per_example:
        return jax.lax.map(lambda a: one(*a), (q, k, v))
    return one(q, k, v)


class AttnBlock(nn.Module):
    """Self-attention over all positions (residual; GN, 1x1 qkv, zero-init output projection)."""

    num_heads: int = 1
    norm_groups: int = 32
    norm_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x):
        b, hgt, wid, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"channels {c} not divisible by num_heads {self.num_heads}.")
        d = c // self.num_heads
        h = nn.GroupNorm(_groups(c, self.norm_groups), epsilon=self.norm_epsilon)(x)
        qkv = nn.Dense(3 * c, name="qkv")(h).reshape(b, hgt * wid, 3, self.num_heads, d)
        q, k, v = qkv[:, :, 0] * (1.0 / math.sqrt(d)), qkv[:, :, 1], qkv[:, :, 2]   # [b, n, heads, d]
        if self.num_heads == 1:
            o = attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
        else:
            o = attention(*(jnp.swapaxes(a, 1, 2) for a in (q, k, v)))               # [b, heads, n, d]
            o = jnp.swapaxes(o, 1, 2)
        o = o.reshape(b, hgt, wid, c)
        return x + nn.Dense(c, kernel_init=nn.initializers.zeros, name="proj_out")(o)


class _TimeEmbed(nn.Module):
    dim: int
    time_scale: float = 1000.0

    @nn.compact
    def __call__(self, t, batch):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (batch,))
        e = timestep_embedding(t * self.time_scale, self.dim)
        e = nn.swish(nn.Dense(4 * self.dim)(e))
        return nn.swish(nn.Dense(4 * self.dim)(e))


def _check_inputs(x, y):
    if x.ndim != 4:
        raise ValueError(f"UNet expects x of shape [B, H, W, C], got {x.shape}.")
    if isinstance(y, (list, tuple)):
        raise ValueError("This network takes one image-shaped conditioning array y; per-level lists of "
                         "conditioning maps are for the multi-resolution UNet.")
    if y is not None and (y.ndim != 4 or y.shape[:3] != x.shape[:3]):
        raise ValueError(f"Conditioning y must be image-shaped [B, H, W, Cy] matching x {x.shape[:3]}, got "
                         f"{y.shape}. Resize/upsample it to the image size first.")


def _multires_cond(x, y, n_levels):
    """y (None, one array or a list of per-level maps) -> list of per-level maps, checked (see module docstring)."""
    if y is None:
        return []
    if not isinstance(y, (list, tuple)):
        _check_inputs(x, y)
        return [y]
    if not 1 <= len(y) <= n_levels:
        raise ValueError(f"A list of conditioning maps needs 1 to {n_levels} entries (one per UNet level), "
                         f"got {len(y)}.")
    b, hgt, wid, _ = x.shape
    for i, yi in enumerate(y):
        want = (b, hgt // 2 ** i, wid // 2 ** i)
        if yi.ndim != 4 or tuple(yi.shape[:3]) != want:
            raise ValueError(f"Conditioning map {i} must have shape [B, H/2^{i}, W/2^{i}, C] = {want + ('C',)}, "
                             f"got {yi.shape}.")
    return list(y)


class UNet(nn.Module):
    """Multi-resolution UNet (see module docstring)."""

    ch: int = 64
    ch_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_levels: Sequence[int] = (1, 2)
    mid_attention: bool = True
    num_heads: int = 1
    dropout: float = 0.0
    norm_groups: int = 16
    out_channels: int = 0
    double_output: bool = False
    fourier_exponents: Sequence[float] = ()
    time_scale: float = 1000.0
    upsample: str = "subpixel"

    @nn.compact
    def __call__(self, x, t, y=None, *, train: bool = False):
        _check_inputs(x, None)
        ys = _multires_cond(x, y, len(self.ch_mult))
        if self.upsample not in ("subpixel", "nearest"):
            raise ValueError(f"upsample must be 'subpixel' or 'nearest', got {self.upsample!r}.")
        b, hgt, wid, c = x.shape
        n_levels = len(self.ch_mult)
        f = 2 ** (n_levels - 1)
        if hgt % f or wid % f:
            raise ValueError(f"UNet with {n_levels} levels needs H and W divisible by {f}, got {hgt}x{wid}; "
                             "pad the image (gencomp_jax.data.pad_to_multiple) first.")
        cond = _TimeEmbed(self.ch, self.time_scale)(t, b)
        h = x
        if self.fourier_exponents:
            h = jnp.concatenate([h, fourier_features(x, self.fourier_exponents)], axis=-1)
        if ys:
            h = jnp.concatenate([h, ys[0].astype(h.dtype)], axis=-1)
        h = _conv(self.ch, name="conv_in")(h)
        hs = [h]
        rb = lambda feats: ResBlock(feats, self.norm_groups, self.dropout)  # noqa: E731
        at = lambda: AttnBlock(self.num_heads, self.norm_groups)  # noqa: E731
        for level, mult in enumerate(self.ch_mult):
            if 0 < level < len(ys):
                h = jnp.concatenate([h, ys[level].astype(h.dtype)], axis=-1)
            for _ in range(self.num_res_blocks):
                h = rb(self.ch * mult)(h, cond, train)
                if level in self.attn_levels:
                    h = at()(h)
                hs.append(h)
            if level != n_levels - 1:
                h = _conv(h.shape[-1], stride=2)(h)
                hs.append(h)
        h = rb(h.shape[-1])(h, cond, train)
        if self.mid_attention:
            h = at()(h)
        h = rb(h.shape[-1])(h, cond, train)
        for level in reversed(range(n_levels)):
            for _ in range(self.num_res_blocks + 1):
                h = rb(self.ch * self.ch_mult[level])(jnp.concatenate([h, hs.pop()], axis=-1), cond, train)
                if level in self.attn_levels:
                    h = at()(h)
            if level != 0:
                bb, hh, ww, cc = h.shape
                if self.upsample == "subpixel":
                    h = SubpixelConv(cc, kernel_size=3, stride=2)(h)
                else:
                    h = jax.image.resize(h, (bb, 2 * hh, 2 * ww, cc), method="nearest")
                    h = _conv(cc)(h)
        assert not hs
        out = (self.out_channels or c) * (2 if self.double_output else 1)
        h = nn.swish(nn.GroupNorm(_groups(h.shape[-1], self.norm_groups))(h))
        return _conv(out, zero=True, name="conv_out")(h)


class VDMUNet(nn.Module):
    """VDM / UQDM single-resolution score network (see module docstring)."""

    embedding_dim: int = 32
    n_blocks: int = 1
    norm_groups: int = 8
    num_heads: int = 1
    attention_everywhere: bool = False
    fourier_exponents: Sequence[float] = (5.0, 6.0)
    dropout: float = 0.0
    out_channels: int = 0
    double_output: bool = False
    residual_input: bool = True
    time_scale: float = 1000.0
    norm_epsilon: float = 1e-6   # GroupNorm epsilon: 1e-5 for weights converted from PyTorch (eval/pretrained.py)

    @nn.compact
    def __call__(self, x, t, y=None, *, train: bool = False):
        _check_inputs(x, y)
        b, _, _, c = x.shape
        d = self.embedding_dim
        cond = _TimeEmbed(d, self.time_scale)(t, b)
        h = x
        if self.fourier_exponents:
            h = jnp.concatenate([h, fourier_features(x, self.fourier_exponents)], axis=-1)
        if y is not None:
            h = jnp.concatenate([h, y.astype(h.dtype)], axis=-1)
        h = _conv(d, name="conv_in")(h)
        rb = lambda: ResBlock(d, self.norm_groups, self.dropout, self.norm_epsilon)  # noqa: E731
        at = lambda: AttnBlock(self.num_heads, self.norm_groups, self.norm_epsilon)  # noqa: E731
        hs = []
        for _ in range(self.n_blocks):
            hs.append(h)
            h = rb()(h, cond, train)
            if self.attention_everywhere:
                h = at()(h)
        hs.append(h)
        h = rb()(h, cond, train)
        h = at()(h)
        h = rb()(h, cond, train)
        for _ in range(self.n_blocks + 1):
            h = rb()(jnp.concatenate([h, hs.pop()], axis=-1), cond, train)
            if self.attention_everywhere:
                h = at()(h)
        out_c = self.out_channels or c
        h = nn.swish(nn.GroupNorm(_groups(d, self.norm_groups), epsilon=self.norm_epsilon)(h))
        h = _conv(out_c * (2 if self.double_output else 1), zero=True, name="conv_out")(h)
        if self.residual_input:
            if out_c != c:
                raise ValueError("residual_input=True needs out_channels == input channels.")
            h = h.at[..., :c].add(x)
        return h


VDM_PRESETS = {
    "tiny": dict(embedding_dim=32, n_blocks=1, norm_groups=8),
    "small": dict(embedding_dim=64, n_blocks=8, norm_groups=16),
}


def vdm_unet_preset(name: str, **overrides) -> VDMUNet:
    """The UQDM reference presets: "tiny" (~167 K params with double_output) and "small" (~2.24 M)."""
    if name not in VDM_PRESETS:
        raise ValueError(f"Unknown VDMUNet preset {name!r}; use one of {sorted(VDM_PRESETS)}.")
    return VDMUNet(**{**VDM_PRESETS[name], **overrides})


def make_unet(cfg) -> nn.Module:
    """Builds a network from a config dict: cfg.arch in {"unet", "vdm_unet"}, other keys = module fields."""
    cfg = dict(cfg)
    arch = cfg.pop("arch", "unet")
    preset = cfg.pop("preset", None)
    if arch == "unet":
        return UNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    if arch == "vdm_unet":
        return vdm_unet_preset(preset, **cfg) if preset else VDMUNet(**cfg)
    raise ValueError(f"Unknown network arch {arch!r}; use 'unet' or 'vdm_unet'.")


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
