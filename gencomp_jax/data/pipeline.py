"""Training and evaluation batches on grain: deterministic, resumable, split across processes.

The training stream is a grain `MapDataset` (random access by index), so it is a pure function of
(seed, step) whatever the number of worker processes:

    grain.MapDataset.source(images).shuffle(seed=s0).repeat()   # example g: image perm_{g // N}[g % N]
      .random_map(RandomCrop(...), seed=s1)                     # crop offsets + flip from Philox(s1, g)
      [process_index::process_count]                            # this process's examples
      .batch(batch_size // process_count, drop_remainder=True)  # element `step` = this process's batch

- grain's `shuffle` draws a new permutation of the N images for every epoch (seed s0 + epoch), and
  `repeat` runs straight across epoch boundaries, so global example g = step * B + r is image
  perm_{g // N}[g % N] (B = global batch size).
- grain's `random_map` hands the crop transform a generator keyed by (s1, g): the crop offsets and the
  horizontal flip of an example depend on nothing but the seed and g.
- Process p of P takes examples p, p + P, p + 2P, ...: its batch `step` holds global examples
  (step * B/P + j) * P + p, j < B/P, so the P slices of step `step` partition exactly the examples
  g in [step * B, (step + 1) * B) that one process would see at that step (row j of process p is
  row j * P + p of the single-process batch).
- s0, s1 are 32-bit seeds derived from `seed` by `np.random.SeedSequence([seed, 0|1])`.

Reading runs in grain: `workers` > 0 decodes in that many worker processes (`mp_prefetch`, each
worker taking every workers-th batch, yielded in order), 0 in this process (with one background
reading thread when prefetch > 0). Because the stream is a function of the step, `get_state()` is
{"step", ...} (JSON, saved in every checkpoint through orbax) and `set_state()` restarts grain at
that step: a run resumed with any number of workers sees exactly the batches of an uninterrupted run.

Images smaller than the crop (on either side) are padded on the bottom/right by mirroring
(numpy "symmetric", repeated as needed) up to the crop size before cropping — not upscaled, so no
blur is introduced; set data.small_images = "upscale" to instead resize them (bicubic, aspect ratio
kept) so the shorter side equals the crop.

data_cfg is the `data` section of config_utils.base_config() (random_flip: horizontal flips only;
small_images "pad" | "upscale"; prefetch: batches read ahead per process, 0 = none; workers: -1 =
sized to this host (`default_workers`), 0 = read in this process; image_key "" = automatic, TFDS).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from PIL import Image

from gencomp_jax.data.images import read_image
from gencomp_jax.data.sources import (
    DEFAULT_CACHE_BYTES, ArraySource, DataError, ImageSource, TfdsSource, list_image_files, load_kodak, open_source,
    skimage_source, tfds_source)

STATE_VERSION = 2
_SEED_MASK = (1 << 64) - 1
SMALL_IMAGE_POLICIES = ("pad", "upscale")


def _grain():
    """grain, imported on first use: `gencomp compress` and friends import this package but read no stream."""
    import grain

    return grain


def default_workers(cpu_count: int | None = None) -> int:
    """Worker processes for data.workers = -1: none on a small host (<= 4 cores, where a worker only
    competes with XLA for the same cores and the in-process reading thread does the same job), else
    all cores but two (the training process and its dispatch thread), at most 32."""
    if cpu_count is None:
        cpu_count = _usable_cores()
    return 0 if cpu_count <= 4 else min(cpu_count - 2, 32)


def _resolve_workers(workers) -> int:
    workers = int(workers)
    if workers < -1:
        raise ValueError(f"data.workers must be -1 (sized to this host), 0 (read in this process) or a "
                         f"number of worker processes; got {workers}.")
    return default_workers() if workers == -1 else workers


def fit_small(image: np.ndarray, crop: int, policy: str) -> np.ndarray:
    """Makes both sides >= crop: mirror-pad bottom/right ("pad") or bicubic upscale ("upscale")."""
    h, w = image.shape[:2]
    if h >= crop and w >= crop:
        return image
    if policy == "upscale":
        s = crop / min(h, w)
        nh, nw = max(crop, int(round(h * s))), max(crop, int(round(w * s)))
        return np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
    if policy != "pad":
        raise DataError(f"data.small_images must be one of {SMALL_IMAGE_POLICIES}, got {policy!r}.")
    return np.pad(image, [(0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)], mode="symmetric")


class RandomCrop:
    """grain random_map transform: uint8 [H, W, 3] -> {"image": uint8 [crop, crop, 3]}, a uniform window
    (offsets floor(u * (side - crop + 1))) of the fitted image, mirrored left-right with
    probability 1/2 when `flip`."""

    def __init__(self, crop: int, *, flip: bool, small_images: str):
        self.crop, self.flip, self.small_images = int(crop), bool(flip), small_images

    def __call__(self, image, rng: np.random.Generator):
        c = self.crop
        uy, ux, uf = rng.random(3)
        image = fit_small(image, c, self.small_images)
        h, w = image.shape[:2]
        y, x = int(uy * (h - c + 1)), int(ux * (w - c + 1))
        out = image[y:y + c, x:x + c]
        if self.flip and uf < 0.5:
            out = out[:, ::-1]
        return {"image": np.ascontiguousarray(out)}


class CenterCrop:
    """grain map transform: uint8 [H, W, 3] -> {"image": uint8 [crop, crop, 3]}, the central window."""

    def __init__(self, crop: int, *, small_images: str):
        self.crop, self.small_images = int(crop), small_images

    def __call__(self, image):
        return {"image": np.ascontiguousarray(center_crop(image, self.crop, small_images=self.small_images))}


def _stream_seeds(seed: int) -> tuple[int, int]:
    """(shuffle seed, crop seed): independent 32-bit seeds, grain's seed range."""
    return tuple(int(np.random.SeedSequence([int(seed) & _SEED_MASK, k]).generate_state(1)[0]) for k in (0, 1))


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
    if batch_size < 1 or batch_size % process_count:
        raise ValueError(f"data.batch_size={batch_size} (global) must be a positive multiple of "
                         f"process_count={process_count}.")


class TrainIterator:
    """Iterator of {"image": uint8 [B/P, crop, crop, 3]} over grain; see the module doc for the stream.

    `dataset` is the grain MapDataset of this process's batches (element `step` = batch `step`).
    """

    def __init__(self, source: ImageSource, *, seed: int, batch_size: int, crop_size: int,
                 process_index: int = 0, process_count: int = 1, random_flip: bool = True,
                 small_images: str = "pad", prefetch: int = 2, workers: int = 0):
        batch_size, crop_size = int(batch_size), int(crop_size)
        process_index, process_count = int(process_index), int(process_count)
        _check_sharding(batch_size, process_index, process_count)
        if crop_size < 1:
            raise ValueError(f"data.crop_size must be positive, got {crop_size}.")
        if small_images not in SMALL_IMAGE_POLICIES:
            raise DataError(f"data.small_images must be one of {SMALL_IMAGE_POLICIES}, got {small_images!r}.")
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
        self.workers = _resolve_workers(workers)
        shuffle_seed, crop_seed = _stream_seeds(self.seed)
        self._shuffle_seed = shuffle_seed
        examples = self._visit(_grain().MapDataset.source(source)).random_map(
            RandomCrop(crop_size, flip=self.random_flip, small_images=small_images), seed=crop_seed)
        self.dataset = self._local_batches(examples)
        self._step = 0
        self._iter = None

    def _visit(self, ds):
        """Epoch-wise reshuffled, endless order of a dataset of len(source) elements."""
        return ds.shuffle(seed=self._shuffle_seed).repeat()

    def _local_batches(self, ds):
        return ds[self.process_index::self.process_count].batch(self.local_batch_size, drop_remainder=True)

    # -- pure stream definition --------------------------------------------------------------
    def indices_at(self, step: int) -> np.ndarray:
        """Source indices of this process's batch `step` (int64 [B/P]), through the same grain order."""
        order = self._local_batches(self._visit(_grain().MapDataset.range(len(self.source))))
        return np.asarray(order[int(step)], dtype=np.int64)

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """This process's batch `step`, computed here: {"image": uint8 [B/P, crop, crop, 3]}."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        return self.dataset[step]

    # -- iteration ---------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iter is None:
            self._iter = iter(self._reader(self._step))
        try:
            batch = next(self._iter)
        except BaseException:
            self.close()
            raise
        self._step += 1
        if self.workers:
            # Worker batches arrive in grain's shared-memory arrays; a plain copy (~1 ms for 16 x 256^2)
            # frees the segment now instead of when the caller drops the batch, or at interpreter exit.
            batch = {k: np.array(v) for k, v in batch.items()}
        return batch

    def _reader(self, step: int):
        """grain IterDataset of batches step, step + 1, ... read by `workers` processes (0: this one)."""
        grain, ds = _grain(), self.dataset[step:]
        if self.workers == 0:
            return ds.to_iter_dataset(grain.ReadOptions(num_threads=min(self.prefetch, 1),
                                                        prefetch_buffer_size=self.prefetch))
        from absl import flags

        if not flags.FLAGS.is_parsed():
            # grain <= 0.2.18 reads an absl flag when it starts workers and fails in programs that do
            # not parse absl flags (pytest, notebooks): google/grain issue 1355. Defaults are parsed flags.
            flags.FLAGS.mark_as_parsed()
        # num_threads=0: each worker reads, crops and batches in its own main thread, one core's work per
        # process; a reading thread beside it made one worker use ~1.1 cores, so workers contended on a host
        # with as many cores as workers (benchmarks/input.py).
        return ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)).mp_prefetch(
            grain.MultiprocessingOptions(num_workers=self.workers,
                                         per_worker_buffer_size=max(1, self.prefetch)))

    def close(self):
        """Stops grain's reading threads and worker processes (iteration can continue; they restart)."""
        it, self._iter = self._iter, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- state -------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Index of the next batch this iterator yields."""
        return self._step

    def get_state(self) -> dict[str, Any]:
        """JSON-able position: the next step plus what the stream depends on."""
        return {"version": STATE_VERSION, "step": self._step, "seed": self.seed, "batch_size": self.batch_size,
                "crop_size": self.crop_size, "random_flip": self.random_flip, "small_images": self.small_images,
                "source": self.source.fingerprint()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continues the stream at state["step"]. Raises if seed/batch/crop differ (a different stream)."""
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError(f"Not a data iterator state: {state!r}.")
        version = int(state.get("version", STATE_VERSION))
        if version > STATE_VERSION:
            raise ValueError(f"Data iterator state version {version} is newer than this library's "
                             f"({STATE_VERSION}); upgrade gencomp_jax to resume this run.")
        if version < STATE_VERSION:
            warnings.warn(f"Data iterator state version {version} was written by the pipeline before grain; "
                          f"training continues at step {state['step']} but the examples after it differ "
                          "from the ones the original run would have seen.", stacklevel=2)
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
        self.close()
        self._step = step


def _workers(data_cfg) -> int:
    return _resolve_workers(data_cfg.workers)


# The training loop says it is input-bound when it waited for its next batch more than this fraction
# of the time and more than INPUT_BOUND_MIN_WAIT_S per step (a tiny step makes any wait a large share).
INPUT_BOUND_FRACTION = 0.1
INPUT_BOUND_MIN_WAIT_S = 5e-4


def input_bound_message(data_cfg, *, wait_fraction: float, wait_s_per_step: float) -> str | None:
    """What the training loop logs when it is input-bound (None otherwise): the measurement and what
    to change in config.data."""
    if not (wait_fraction > INPUT_BOUND_FRACTION and wait_s_per_step > INPUT_BOUND_MIN_WAIT_S):
        return None
    workers, cores = _workers(data_cfg), _usable_cores()
    tips = []
    if workers < cores - 1:
        tips.append(f"raise config.data.workers (now {workers}; this host has {cores} cores, grain runs one "
                    "decoding process per worker)")
    if int(data_cfg.prefetch) < 2:
        tips.append(f"raise config.data.prefetch (now {data_cfg.prefetch}) to 2 or more")
    tips.append("store the images at the size you train on: every crop decodes its whole image (a 2048x1365 "
                "PNG costs about 50x the CPU of a 481x321 JPEG, benchmarks/input.py)")
    if str(data_cfg.source).lower() == "folder":
        tips.append("or prepare the set as a TFDS array_record data set (source='tfds') on local disk")
    return (f"Input-bound: the training loop waited for data {wait_fraction:.0%} of the time "
            f"({1e3 * wait_s_per_step:.1f} ms per step), so the accelerator idles. To feed it: "
            + "; ".join(tips) + ".")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_train_iterator(data_cfg, *, seed: int, process_index: int = 0, process_count: int = 1) -> TrainIterator:
    """The training iterator for config.data (source "skimage" | "folder" | "tfds"; never Kodak).

    Yields {"image": uint8 [data_cfg.batch_size // process_count, crop_size, crop_size, 3]} forever.
    """
    workers = _workers(data_cfg)
    source = open_source(data_cfg.source, path=data_cfg.path, name=data_cfg.name, split=data_cfg.split,
                         data_dir=data_cfg.data_dir, training=True,
                         cache_bytes=DEFAULT_CACHE_BYTES // max(1, workers))
    if isinstance(source, TfdsSource) and data_cfg.image_key:
        source = tfds_source(data_cfg.name, split=data_cfg.split,
                             data_dir=data_cfg.data_dir, image_key=data_cfg.image_key)
    return TrainIterator(source, seed=seed, batch_size=data_cfg.batch_size,
                         crop_size=data_cfg.crop_size, process_index=process_index,
                         process_count=process_count, random_flip=data_cfg.random_flip,
                         small_images=data_cfg.small_images, prefetch=data_cfg.prefetch, workers=workers)


# ---------------------------------------------------------------------------------------------
# Evaluation


def center_crop(image: np.ndarray, crop: int, *, small_images: str = "pad") -> np.ndarray:
    """Central crop x crop window of uint8 [H, W, 3] (small images fitted as in training)."""
    image = fit_small(np.asarray(image), crop, small_images)
    h, w = image.shape[:2]
    y, x = (h - crop) // 2, (w - crop) // 2
    return image[y:y + crop, x:x + crop]


class EvalBatches:
    """Re-iterable fixed batches for held-out loss: the same center crops every time.

    grain: `MapDataset.source(images).repeat().map(CenterCrop)[p::P].batch(B/P)`, so global example
    g = k * B + r of batch k is image g mod N, and process p holds examples (k * B/P + j) * P + p.
    The batches are read once (they are few) and kept. len() = number of batches.
    """

    def __init__(self, source: ImageSource, *, batch_size: int, crop_size: int, num_batches: int,
                 process_index: int = 0, process_count: int = 1, small_images: str = "pad"):
        _check_sharding(int(batch_size), int(process_index), int(process_count))
        if num_batches < 1:
            raise ValueError(f"data.eval_num_batches must be >= 1, got {num_batches}.")
        self.source, self.batch_size, self.crop_size = source, int(batch_size), int(crop_size)
        self.num_batches, self.small_images = int(num_batches), small_images
        self.local_batch_size = self.batch_size // process_count
        self.dataset = (_grain().MapDataset.source(source).repeat()
                        .map(CenterCrop(self.crop_size, small_images=small_images))
                        [process_index::process_count]
                        .batch(self.local_batch_size, drop_remainder=True)[:self.num_batches])
        self._batches: list[dict[str, np.ndarray]] | None = None

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        if self._batches is None:
            self._batches = [self.dataset[k] for k in range(self.num_batches)]
        return iter(self._batches)


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
    path (any image format Pillow reads), several separated by commas, optionally ending in
    ":<split>" for split sub-folders (e.g. "/data/bsds500:val" reads bsds500/val). limit keeps the
    first `limit` images.
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


__all__ = ["TrainIterator", "EvalBatches", "RandomCrop", "CenterCrop", "make_train_iterator", "make_eval_iterator",
           "load_eval_set", "center_crop", "fit_small", "default_workers", "input_bound_message",
           "INPUT_BOUND_FRACTION", "INPUT_BOUND_MIN_WAIT_S"]
