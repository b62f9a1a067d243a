"""Image quality metrics.

Per-image metrics on uint8 RGB images (HWC), by name, through `compute_per_image`:
  "psnr-rgb"    PSNR in dB on 8-bit RGB (distortion.psnr)
  "ms-ssim-rgb" MS-SSIM, 5 scales, images >= 161 px per side (distortion.ms_ssim)
  "lpips-alex"  LPIPS with AlexNet features (lpips.lpips_distance(net="alex")), imported lazily
  "lpips-vgg"   LPIPS with VGG features (lpips.lpips_distance(net="vgg")), imported lazily
Realism metrics over a whole data set (FID/KID...) live in gencomp_jax.metrics.fid
(`realism_metrics(refs, recs, ...)`) and are imported only when requested.
Names are the results keys CompressAI writes (gencomp_jax.eval.results reads older spellings).
Higher is better for psnr-rgb and ms-ssim-rgb; lower is better for lpips-* (see HIGHER_IS_BETTER).
"""

from __future__ import annotations

from gencomp_jax.metrics.distortion import ms_ssim, psnr

PER_IMAGE = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "lpips-vgg")
HIGHER_IS_BETTER = {"psnr-rgb": True, "ms-ssim-rgb": True, "lpips-alex": False, "lpips-vgg": False,
                    "fid": False, "kid": False, "kid_std": False,
                    "fd-vgg16": False, "kid-vgg16": False, "kid_std-vgg16": False,
                    "fd-alex": False, "kid-alex": False, "kid_std-alex": False}


def compute_per_image(name: str, x_uint8, y_uint8) -> float:
    """Metric `name` (one of PER_IMAGE) between uint8 images x, y [H, W, 3]; a Python float."""
    if name == "psnr-rgb":
        return float(psnr(x_uint8, y_uint8))
    if name == "ms-ssim-rgb":
        return float(ms_ssim(x_uint8, y_uint8))
    if name in ("lpips-alex", "lpips-vgg"):
        from gencomp_jax.metrics import lpips  # lazy: loads network weights

        return float(lpips.lpips_distance(x_uint8, y_uint8, net=name.split("-")[1]))
    raise ValueError(f"Unknown per-image metric {name!r}; choose from {list(PER_IMAGE)} "
                     "(realism metrics such as FID/KID are requested separately).")


__all__ = ["PER_IMAGE", "HIGHER_IS_BETTER", "compute_per_image", "psnr", "ms_ssim"]
