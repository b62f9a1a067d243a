"""Distortion metrics on 8-bit RGB images: PSNR and MS-SSIM.

Both take uint8 images, HWC or NHWC (the same shape for x and y), and return one value per image:
a Python float for HWC input, a float64 numpy array [N] for NHWC input.

psnr: 10 log10(255^2 / MSE), the MSE over all pixels and channels of one image, computed exactly in
    float64 (inf for identical images).

ms_ssim: multi-scale SSIM (Wang, Simoncelli & Bovik 2003) exactly as pytorch_msssim.ms_ssim (and
    tf.image.ssim_multiscale for images whose sides stay even): data range 255, K1=0.01, K2=0.03,
    11x11 Gaussian window with sigma 1.5 applied separably without padding ("valid"), 5 scales with
    weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling between scales. MS-SSIM is
    computed per colour channel and averaged over the channels. Documented edge behaviour (as
    pytorch_msssim):
      * both sides must be >= 161 pixels (the 11-tap window must fit at the 5th scale, after four
        halvings: (11 - 1) * 2**4 = 160); smaller images raise ValueError. Use psnr, or evaluate on
        larger crops, for tiny images.
      * odd sides at a pooling step are zero-padded by one pixel on both sides with the zeros counted
        in the average (torch avg_pool2d(padding=1, count_include_pad=True)); tf.image differs here.
      * per-scale contrast-structure and the last-scale SSIM are clamped at 0 before the powers
        (negative correlations give MS-SSIM 0 instead of NaN).
    Checked against pytorch_msssim 1.0.0 on torch 2.13.0 (tests/golden/make_msssim_golden.py).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
MIN_MS_SSIM_SIDE = (WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161


def _check_pair(x, y, fn: str) -> tuple[np.ndarray, np.ndarray, bool]:
    x = np.asarray(x)
    y = np.asarray(y)
    for name, a in (("x", x), ("y", y)):
        if a.dtype != np.uint8:
            raise TypeError(f"{fn}: {name} must be uint8 (8-bit RGB, as read from a PNG), got {a.dtype}. "
                            "Convert float images in [0, 1] with np.round(255 * img).astype(np.uint8).")
        if a.ndim not in (3, 4):
            raise ValueError(f"{fn}: {name} must be HWC or NHWC, got shape {a.shape}")
    if x.shape != y.shape:
        raise ValueError(f"{fn}: x and y must have the same shape, got {x.shape} and {y.shape}")
    single = x.ndim == 3
    if single:
        x, y = x[None], y[None]
    return x, y, single


def psnr(x, y):
    """PSNR in dB of uint8 images x, y [H,W,C] or [N,H,W,C]; float (or float64 [N]); inf if equal."""
    x, y, single = _check_pair(x, y, "psnr")
    diff = x.astype(np.float64) - y.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(255.0 ** 2 / mse)
    return float(out[0]) if single else out


def _gaussian_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> np.ndarray:
    coords = np.arange(size, dtype=np.float32) - size // 2
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).astype(np.float32)


def _filter(img: jnp.ndarray) -> jnp.ndarray:
    """Separable valid Gaussian filter along the last two axes. float32 [..., H, W] -> [..., H-10, W-10].

    Written as 11 shifted multiply-adds per axis (much faster on XLA:CPU than a 1-channel convolution).
    """
    g = _gaussian_window()
    h, w = img.shape[-2:]
    ho, wo = h - WIN_SIZE + 1, w - WIN_SIZE + 1
    out = sum(float(g[i]) * img[..., i:i + ho, :] for i in range(WIN_SIZE))
    return sum(float(g[i]) * out[..., :, i:i + wo] for i in range(WIN_SIZE))


def _ssim_terms(x: jnp.ndarray, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Mean SSIM and mean contrast-structure per plane. x, y: float32 [B, H, W] in [0, 255] -> [B], [B]."""
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    mu_x, mu_y, exx, eyy, exy = _filter(jnp.stack([x, y, x * x, y * y, x * y]))
    sxx = exx - mu_x * mu_x
    syy = eyy - mu_y * mu_y
    sxy = exy - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def _avg_pool2(img: jnp.ndarray) -> jnp.ndarray:
    """2x2 average pooling, stride 2, of [B, H, W]; an odd side is zero-padded by 1 on both sides (zeros counted)."""
    _, h, w = img.shape
    img = jnp.pad(img, ((0, 0), (h % 2, h % 2), (w % 2, w % 2)))
    _, h, w = img.shape
    img = img[:, : h // 2 * 2, : w // 2 * 2]
    return img.reshape(img.shape[0], h // 2, 2, w // 2, 2).mean(axis=(2, 4))


@jax.jit
def _ms_ssim_batch(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """x, y: uint8 [N, H, W, C] -> float32 [N] (mean over channels of per-channel MS-SSIM)."""
    n, h, w, c = x.shape
    # channels become batch entries: [N*C, H, W]
    to_planes = lambda a: jnp.transpose(a.astype(jnp.float32), (0, 3, 1, 2)).reshape(n * c, h, w)
    xs, ys = to_planes(x), to_planes(y)
    weights = jnp.asarray(MS_SSIM_WEIGHTS, jnp.float32)
    values = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(xs, ys)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            values.append(jax.nn.relu(cs))
            xs, ys = _avg_pool2(xs), _avg_pool2(ys)
        else:
            values.append(jax.nn.relu(ssim))
    stacked = jnp.stack(values)  # [levels, N*C]
    per_plane = jnp.prod(stacked ** weights[:, None], axis=0)
    return per_plane.reshape(n, c).mean(axis=1)


def ms_ssim(x, y):
    """MS-SSIM of uint8 images x, y [H,W,C] or [N,H,W,C], both sides >= 161; float (or float64 [N]).

    See the module docstring for the exact definition and edge behaviour.
    """
    x, y, single = _check_pair(x, y, "ms_ssim")
    h, w = x.shape[1:3]
    if min(h, w) < MIN_MS_SSIM_SIDE:
        raise ValueError(
            f"ms_ssim needs images of at least {MIN_MS_SSIM_SIDE}x{MIN_MS_SSIM_SIDE} pixels (5 scales of an "
            f"11x11 window), got {h}x{w}. Use psnr for smaller images, or drop 'ms-ssim-rgb' from the metrics.")
    out = np.asarray(_ms_ssim_batch(jnp.asarray(x), jnp.asarray(y)), dtype=np.float64)
    return float(out[0]) if single else out
