"""The two protocols every method implements.

`Method` is what the one training loop (gencomp_jax.train) optimises. `Codec` is what evaluation and
the CLI use to write and read real files. Both are structural (typing.Protocol): a class implements
them by having the methods, without importing this module.

Conventions (DESIGN.md): images at API boundaries are uint8 NHWC; models see float32 in [-1, 1];
rates are in bits in every public API.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

PyTree = Any


@runtime_checkable
class Method(Protocol):
    """A trainable model.

    The training loop calls, with `batch = {"image": float32 [B, H, W, 3] in [-1, 1]}`:
      init(rng, batch) -> params                       (a flax variables pytree, e.g. {"params": ...})
      loss(params, batch, rng, train) -> (loss, metrics)
        loss: scalar float32 to minimise (for codecs: rate + lambda * distortion);
        metrics: dict of scalars to log (e.g. "bpp", "mse", "psnr", "bits_per_dim"); all rates in bits.
    Both must be jit-able pure functions of their arguments. `train=False` is the evaluation mode
    (e.g. rounding instead of additive noise).

    Optional hook: `eval_artifacts(params, rng, outdir, step) -> dict` (plain Python, not jitted);
    the training loop calls it on process 0 at each evaluation, e.g. to write a PNG grid of samples
    to `outdir`, and logs the returned scalars.
    """

    def init(self, rng: Any, batch: Mapping[str, Any]) -> PyTree: ...

    def loss(self, params: PyTree, batch: Mapping[str, Any], rng: Any, train: bool
             ) -> tuple[Any, dict[str, Any]]: ...


@runtime_checkable
class Codec(Protocol):
    """Compresses uint8 images into self-describing files (codecs/bitstream.py container).

      compress(image) -> bytes          image: uint8 [H, W, 3], any H, W >= 1 (padded internally)
      decompress(data) -> uint8 [H, W, 3]
      estimate_bits(image) -> float     the model's own rate estimate (bits), for bpp_est
    """

    name: str

    def compress(self, image: np.ndarray) -> bytes: ...

    def decompress(self, data: bytes) -> np.ndarray: ...

    def estimate_bits(self, image: np.ndarray) -> float: ...
