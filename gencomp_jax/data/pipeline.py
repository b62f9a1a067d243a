"""Training and evaluation batches: deterministic, resumable, split across processes.

The training stream is a pure function of (seed, step):

- The source's N images are visited epoch by epoch; epoch e uses the permutation drawn by
  `np.random.default_rng([seed, 0, e])`. Global example g (g = step * B + j for global batch size B)
  is image perm_{g // N}[g % N], so batches run straight across epoch boundaries.
- The crop offsets and flips of global batch `step` come from `np.random.default_rng([seed, 1, step])`
  (B uniforms for y, B for x, B for the flip, always drawn for the whole global batch).
- Process p of P gets rows [p * B/P, (p+1) * B/P) of that global batch, so the processes' slices
  partition exactly the batch a single process would see.

So `get_state()` only needs the next step: {"step", "seed", "batch_size", "crop_size", ...} (JSON).
`set_state()` continues the exact stream. The optional background thread prefetches batch_at(step)
for the next steps; it changes nothing in the values.

Images smaller than the crop (on either side) are padded on the bottom/right by mirroring
(numpy "symmetric", repeated as needed) up to the crop size before cropping — not upscaled, so no
blur is introduced; set data.small_images = "upscale" to instead resize them (bicubic, aspect ratio
kept) so the shorter side equals the crop.

data_cfg is the `data` section of config_utils.base_config(), which holds every default (among them
random_flip: horizontal flips only; small_images "pad" | "upscale"; prefetch 2, 0 = no thread;
image_key "" = automatic, TFDS).
"""

from __future__ import annotations

import queue
import threading
import warnings
import weakref
from typing import Any

import numpy as np
from PIL import Image

from gencomp_jax.data.images import read_image
from gencomp_jax.data.sources import (
    ArraySource, DataError, ImageSource, TfdsSource, list_image_files, load_kodak, open_source, skimage_source,
    tfds_source)

STATE_VERSION = 1
_SEED_MASK = (1 << 64) - 1


def _fit_small(image: np.ndarray, crop: int, policy: str) -> np.ndarray:
    """Makes both sides >= crop: mirror-pad bottom/right ("pad") or bicubic upscale ("upscale")."""
    h, w = image.shape[:2]
    if h >= crop and w >= crop:
        return image
    if policy == "upscale":
        s = crop / min(h, w)
        nh, nw = max(crop, int(round(h * s))), max(crop, int(round(w * s)))
        return np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
    if policy != "pad":
        raise DataError(f"data.small_images must be 'pad' or 'upscale', got {policy!r}.")
    return np.pad(image, [(0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)], mode="symmetric")


class TrainIterator:
    """Iterator of {"image": uint8 [B/P, crop, crop, 3]}; see the module doc for the stream definition."""

    def __init__(self, source: ImageSource, *, seed: int, batch_size: int, crop_size: int,
                 process_index: int = 0, process_count: int = 1, random_flip: bool = True,
                 small_images: str = "pad", prefetch: int = 2):
        batch_size, crop_size = int(batch_size), int(crop_size)
        process_index, process_count = int(process_index), int(process_count)
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
        if batch_size < 1 or batch_size % process_count:
            raise ValueError(f"data.batch_size={batch_size} (global) must be a positive multiple of "
                             f"process_count={process_count}.")
        if crop_size < 1:
            raise ValueError(f"data.crop_size must be positive, got {crop_size}.")
        if small_images not in ("pad", "upscale"):
            raise DataError(f"data.small_images must be 'pad' or 'upscale', got {small_images!r}.")
        self.source = source
        self.seed = int(seed) & _SEED_MASK
        self.batch_size = batch_size
        self.local_batch_size = batch_size // process_count
        self.crop_size = crop_size
        self.process_index = process_index
        self.process_count = process_count
        self.random_flip = bool(random_flip)
        self.small_images = small_images
        self.prefetch = max(0, int(prefetch))
        self._n = len(source)
        self._step = 0
        self._perm_cache: dict[int, np.ndarray] = {}
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop: threading.Event | None = None

    # -- pure stream definition --------------------------------------------------------------
    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, 0, int(epoch)]).permutation(self._n)
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            self._perm_cache[epoch] = perm
        return perm

    def indices_at(self, step: int) -> np.ndarray:
        """Source indices of the whole global batch `step` (int64 [B])."""
        g = int(step) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        epochs, pos = g // self._n, g % self._n
        return np.array([self.permutation(int(e))[p] for e, p in zip(epochs, pos)], dtype=np.int64)

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch `step`: {"image": uint8 [B/P, crop, crop, 3]}."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        idx = self.indices_at(step)
        rng = np.random.default_rng([self.seed, 1, step])
        uy, ux, uf = rng.random(self.batch_size), rng.random(self.batch_size), rng.random(self.batch_size)
        lo = self.process_index * self.local_batch_size
        c = self.crop_size
        out = np.empty((self.local_batch_size, c, c, 3), np.uint8)
        for row, j in enumerate(range(lo, lo + self.local_batch_size)):
            image = _fit_small(self.source[int(idx[j])], c, self.small_images)
            h, w = image.shape[:2]
            y, x = int(uy[j] * (h - c + 1)), int(ux[j] * (w - c + 1))
            crop = image[y:y + c, x:x + c]
            if self.random_flip and uf[j] < 0.5:
                crop = crop[:, ::-1]
            out[row] = crop
        return {"image": out}

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.prefetch == 0:
            batch = self.batch_at(self._step)
        else:
            if self._thread is None:
                self._start(self._step)
            step, batch = self._queue.get()
            if isinstance(batch, BaseException):
                self._shutdown()
                raise batch
            assert step == self._step, (step, self._step)
        self._step += 1
        return batch

    def _start(self, step: int):
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        q, stop = self._queue, self._stop

        produce = weakref.WeakMethod(self.batch_at)  # no strong ref: an abandoned iterator is collected

        def work(s=step):
            while not stop.is_set():
                batch_at = produce()
                if batch_at is None:
                    return
                try:
                    item = (s, batch_at(s))
                except BaseException as e:  # handed to the consumer, raised there
                    item = (s, e)
                del batch_at
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if isinstance(item[1], BaseException):
                    return
                s += 1

        self._thread = threading.Thread(target=work, name="gencomp-data-prefetch", daemon=True)
        self._thread.start()

    def _shutdown(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
        self._thread = self._queue = self._stop = None

    def close(self):
        """Stops the prefetch thread (iteration can continue afterwards; it restarts on demand)."""
        self._shutdown()

    def __del__(self):
        try:
            self._shutdown()
        except Exception:
            pass

    # -- state -------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Index of the next global batch this iterator yields."""
        return self._step

    def get_state(self) -> dict[str, Any]:
        """JSON-able position: the next global step plus what the stream depends on."""
        return {"version": STATE_VERSION, "step": self._step, "seed": self.seed, "batch_size": self.batch_size,
                "crop_size": self.crop_size, "random_flip": self.random_flip, "small_images": self.small_images,
                "source": self.source.fingerprint()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues the stream at state["step"]. Raises if seed/batch/crop differ (a different stream)."""
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError(f"Not a data iterator state: {state!r}.")
        if int(state.get("version", STATE_VERSION)) != STATE_VERSION:
            raise ValueError(f"Data iterator state version {state.get('version')} unsupported (this is {STATE_VERSION}).")
        for key in ("seed", "batch_size", "crop_size", "random_flip", "small_images"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"Cannot resume the data stream: saved {key}={state[key]!r}, this iterator has {getattr(self, key)!r}. "
                    "Use the same data config and seed as the run being resumed.")
        if state.get("source", self.source.fingerprint()) != self.source.fingerprint():
            warnings.warn(f"The training data changed since the state was saved ({state.get('source')} -> "
                          f"{self.source.fingerprint()}); the resumed stream is not the one the original run would see.",
                          stacklevel=2)
        step = int(state["step"])
        if step < 0:
            raise ValueError(f"Invalid step {step} in data iterator state.")
        self._shutdown()
        self._step = step


def make_train_iterator(data_cfg, *, seed: int, process_index: int = 0, process_count: int = 1) -> TrainIterator:
    """The training iterator for config.data (source "skimage" | "folder" | "tfds"; never Kodak).

    Yields {"image": uint8 [data_cfg.batch_size // process_count, crop_size, crop_size, 3]} forever.
    """
    source = open_source(data_cfg.source, path=data_cfg.path, name=data_cfg.name, split=data_cfg.split,
                         data_dir=data_cfg.data_dir, training=True)
    if isinstance(source, TfdsSource) and data_cfg.image_key:
        source = tfds_source(data_cfg.name, split=data_cfg.split,
                             data_dir=data_cfg.data_dir, image_key=data_cfg.image_key)
    return TrainIterator(source, seed=seed, batch_size=data_cfg.batch_size,
                         crop_size=data_cfg.crop_size, process_index=process_index,
                         process_count=process_count, random_flip=data_cfg.random_flip,
                         small_images=data_cfg.small_images, prefetch=data_cfg.prefetch)


# ---------------------------------------------------------------------------------------------
# Evaluation


def center_crop(image: np.ndarray, crop: int, *, small_images: str = "pad") -> np.ndarray:
    """Central crop x crop window of uint8 [H, W, 3] (small images fitted as in training)."""
    image = _fit_small(np.asarray(image), crop, small_images)
    h, w = image.shape[:2]
    y, x = (h - crop) // 2, (w - crop) // 2
    return image[y:y + crop, x:x + crop]


class EvalBatches:
    """Re-iterable fixed batches for held-out loss: the same center crops every time.

    Batch k holds images (k * B + j) mod N, j < B (global order), center-cropped; process p gets
    rows [p * B/P, (p+1) * B/P). len() = number of batches.
    """

    def __init__(self, source: ImageSource, *, batch_size: int, crop_size: int, num_batches: int,
                 process_index: int = 0, process_count: int = 1, small_images: str = "pad"):
        if batch_size % process_count:
            raise ValueError(f"data.batch_size={batch_size} must be a multiple of process_count={process_count}.")
        if num_batches < 1:
            raise ValueError(f"data.eval_num_batches must be >= 1, got {num_batches}.")
        self.source, self.batch_size, self.crop_size = source, int(batch_size), int(crop_size)
        self.num_batches, self.small_images = int(num_batches), small_images
        self.local_batch_size = self.batch_size // process_count
        self._lo = process_index * self.local_batch_size
        self._crops: dict[int, np.ndarray] = {}

    def __len__(self):
        return self.num_batches

    def _crop(self, i: int) -> np.ndarray:
        if i not in self._crops:
            self._crops[i] = center_crop(self.source[i], self.crop_size, small_images=self.small_images)
        return self._crops[i]

    def __iter__(self):
        n = len(self.source)
        for k in range(self.num_batches):
            rows = [(k * self.batch_size + self._lo + r) % n for r in range(self.local_batch_size)]
            yield {"image": np.stack([self._crop(i) for i in rows])}


def make_eval_iterator(data_cfg, *, process_index: int = 0, process_count: int = 1) -> EvalBatches | None:
    """Held-out batches from data_cfg.eval_source ("" -> None).

    eval_source "folder" reads data_cfg.eval_path (or data_cfg.path when empty) with eval_split
    (e.g. path=".../bsds500", eval_split="val"); "tfds" reads data_cfg.name with eval_split
    (default "validation"); "skimage" the bundled photographs (eval_path may name a subset);
    "kodak" the bundled Kodak set (evaluation only). Crops: eval_crop_size (0 = crop_size).
    """
    src = str(data_cfg.eval_source).strip()
    if not src:
        return None
    kind = src.lower()
    eval_path = data_cfg.eval_path
    split = data_cfg.eval_split
    if kind == "folder":
        path = eval_path or data_cfg.path
    else:
        path = eval_path
    if kind == "tfds" and not split:
        split = "validation"
    source = open_source(kind, path=path, name=data_cfg.name, split=split,
                         data_dir=data_cfg.data_dir, training=False)
    crop = int(data_cfg.eval_crop_size) or int(data_cfg.crop_size)
    return EvalBatches(source, batch_size=int(data_cfg.batch_size), crop_size=crop,
                       num_batches=int(data_cfg.eval_num_batches), process_index=process_index,
                       process_count=process_count, small_images=data_cfg.small_images)


def load_eval_set(name_or_path: str, *, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Whole images for codec evaluation: [(name, uint8 [H, W, 3]), ...] in a fixed order.

    name_or_path: "kodak" (bundled, sha256-verified), "skimage" (bundled photographs),
    "tfds:<name>[:<split>]" (e.g. "tfds:clic:test"; split defaults to "test"), or a folder / file
    path, several separated by commas, optionally ending in ":<split>" for split sub-folders
    (e.g. "/data/bsds500:val" reads bsds500/val). limit keeps the first `limit` images.
    """
    spec = str(name_or_path).strip()
    if not spec:
        raise DataError("No evaluation set given: use 'kodak', 'skimage', 'tfds:<name>[:<split>]' or a folder path.")
    if spec.lower() == "kodak":
        return load_kodak(limit=limit)
    if spec.lower() == "skimage":
        src: ImageSource = skimage_source()
    elif spec.lower().startswith("tfds:"):
        parts = spec.split(":")
        name, split = parts[1], (parts[2] if len(parts) > 2 and parts[2] else "test")
        src = tfds_source(name, split=split)
    else:
        path, split = spec, ""
        head, sep, tail = spec.rpartition(":")
        if sep and head and "/" not in tail and "," not in tail and not _looks_like_drive(spec):
            path, split = head, tail
        files = list_image_files(path, split=split)
        src = ArraySource([(n, read_image(p)) for n, p in files[: limit if limit is not None else None]],
                          description=spec)
    n = len(src) if limit is None else min(len(src), int(limit))
    return [(src.name(i), src[i]) for i in range(n)]


def _looks_like_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[0].isalpha()


__all__ = ["TrainIterator", "EvalBatches", "make_train_iterator", "make_eval_iterator", "load_eval_set",
           "center_crop"]
