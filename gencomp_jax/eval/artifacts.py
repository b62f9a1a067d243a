"""Images a run leaves for people to look at: PNG grids of samples, with their summary statistics.

  sample_grid(images, *, pad=2) -> uint8 [rows * (h + pad) + pad, cols * (w + pad) + pad, 3]
  write_sample_grid(path, images, *, pad=2) -> path          (an atomic PNG write, data.write_png)
  sample_stats(images) -> {"sample_mean", "sample_std"}      (on the 0..255 scale)

The training loop calls these at each evaluation for a method with `eval_samples(params, rng)`
(gencomp_jax/objectives): `<workdir>/artifacts/samples_<step>.png`.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from gencomp_jax.data.images import write_png


def sample_grid(images, *, pad: int = 2) -> np.ndarray:
    """uint8 [n, h, w, 3] -> one uint8 image: a near-square grid, row-major, on a white background."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or images.shape[0] < 1:
        raise ValueError(f"sample_grid expects uint8 [n >= 1, h, w, 3], got {images.dtype} {images.shape}.")
    n, h, w, _ = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid


def write_sample_grid(path, images, *, pad: int = 2) -> pathlib.Path:
    """Writes `sample_grid(images)` as a PNG at `path`; returns the path."""
    return write_png(path, sample_grid(images, pad=pad))


def sample_stats(images) -> dict[str, float]:
    """Mean and standard deviation of the samples' pixel values (0..255): a collapse shows at a glance."""
    f = np.asarray(images, np.float64)
    return {"sample_mean": float(f.mean()), "sample_std": float(f.std())}
