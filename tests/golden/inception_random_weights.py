"""Deterministic random FID-Inception weights (numpy only), shared by make_inception_golden.py (torch
side) and tests/metrics/test_inception.py (our side). Keys are drawn in sorted order so both sides
get identical arrays from the same {torch key: torch shape} set."""

import numpy as np


def random_state_dict(shapes, seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for k in sorted(shapes):
        sh = tuple(shapes[k])
        if k.endswith("bn.running_var") or k.endswith("bn.weight"):
            sd[k] = rng.uniform(0.5, 1.5, sh).astype(np.float32)
        elif k.endswith("bn.running_mean") or k.endswith("bn.bias"):
            sd[k] = (0.1 * rng.standard_normal(sh)).astype(np.float32)
        else:  # conv kernel OIHW, He init
            fan_in = int(np.prod(sh[1:]))
            sd[k] = (rng.standard_normal(sh) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return sd


def golden_inputs():
    """Two uint8 images 64x80 (not square, so the bilinear resize to 299 is exercised)."""
    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, 64 * 80 * 3).reshape(64, 80, 3)
    a = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    b = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    return np.stack([a, b])
