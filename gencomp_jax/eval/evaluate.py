"""Runs a codec over a set of images with real files, and writes CompressAI-style results.

    res = evaluate_codec(codec, images, name="hyperprior-q3", description="...",
                         metrics=("psnr-rgb", "ms-ssim"), realism=None, out_json="rd/q3.json")

For every image: `codec.compress(image)` -> bytes, written to a file (in `workdir_for_files` or a
temporary directory); the file is read back and decoded; bpp = file size in bytes * 8 / (H * W) of
the original image (header included); bpp_est = codec.estimate_bits(image) / (H * W); encoding and
decoding wall-clock seconds; then every requested per-image metric on the 8-bit reconstruction
(gencomp_jax.metrics.compute_per_image). Realism metrics (FID/KID) are computed over the whole set
only when `realism` is given (gencomp_jax.metrics.fid.realism_metrics).

Results JSON (`out_json`):
    {"name", "description",
     "results": {"bpp": [...], "bpp_est": [...], "psnr-rgb": [...], "ms-ssim": [...],
                 "encoding_time": [...], "decoding_time": [...], (realism keys: "fid", "kid", ...)},
     "rate_points": [decode options of each point], "num_images": n, "images": [names]}
with one list entry per rate point: the mean over images (realism: one value over the set). A
per-image CSV is written beside it (`<stem>_per_image.csv`, one row per image and rate point).

Rate points (codecs with several rates in one file, e.g. progressive UQDM):
  A codec may define these optional methods (duck-typed; plain codecs define none of them and give
  exactly one point):
    rate_points() -> list[dict]
        One dict of keyword options for `decompress` per RD point, e.g.
        [{"steps": 1, "reconstruction": "denoise"}, ..., {"steps": 4, "reconstruction": "denoise"}].
        Each point is decoded with `codec.decompress(data_k, **options)`.
    truncate(data, **options) -> bytes
        The prefix of the file that a receiver needs for that point (progressive codecs: the header
        plus the first k segments). If absent, every point uses the whole file. bpp of the point is
        measured on these bytes, which are written to their own file and decoded from it, so
        progressive decoding of truncated files is exercised for real.
    estimate_bits(image, **options) -> float
        When rate_points() is defined, estimate_bits is called with each point's options and must
        accept them (it may ignore options that do not change the rate, e.g. "reconstruction").
  The image is compressed once; encoding_time is the same for every point of an image.

Timing: by default (`warmup=True`) the first image is compressed and decoded once before timing,
so jit compilation is not counted (images of another shape still compile once on first use).
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import sys
import tempfile
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gencomp_jax import metrics as metrics_lib
from gencomp_jax.eval import results as results_lib


def _as_named_images(images) -> list[tuple[str, np.ndarray]]:
    out = []
    for i, item in enumerate(images):
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            name, img = item
        else:
            name, img = f"image_{i:04d}", item
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"evaluate_codec: image {name!r} must be uint8 [H, W, 3], got {img.dtype}{img.shape}")
        out.append((name, img))
    if not out:
        raise ValueError("evaluate_codec: no images to evaluate")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError("evaluate_codec: image names must be unique")
    return out


def _rate_points(codec) -> list[dict]:
    fn = getattr(codec, "rate_points", None)
    if fn is None:
        return [{}]
    points = [dict(p) for p in fn()]
    if not points:
        raise ValueError(f"{type(codec).__name__}.rate_points() returned no points")
    return points


def _point_data(codec, data: bytes, options: Mapping[str, Any]) -> bytes:
    if options and hasattr(codec, "truncate"):
        return bytes(codec.truncate(data, **options))
    return data


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def per_image_csv_path(out_json) -> pathlib.Path:
    """Where the per-image CSV of a results JSON goes: `<stem>_per_image.csv` beside it."""
    p = pathlib.Path(out_json)
    return p.with_name(p.stem + "_per_image.csv")


def evaluate_codec(codec, images: Iterable, *, name: str, description: str = "",
                   metrics: Sequence[str] = ("psnr-rgb", "ms-ssim"), realism: Mapping[str, Any] | bool | None = None,
                   out_json=None, workdir_for_files=None, progress: bool = True, warmup: bool = True) -> dict:
    """Evaluates `codec` on `images` with real files; see the module docstring.

    Args:
      codec: a Codec (codecs/base.py), optionally with rate_points()/truncate().
      images: list of uint8 [H, W, 3] arrays or of (name, array) pairs (data.load_eval_set's output).
      name, description: stored in the results.
      metrics: per-image metric names (gencomp_jax.metrics.PER_IMAGE).
      realism: None/False = no realism metrics; True or a dict of keyword arguments for
        gencomp_jax.metrics.fid.realism_metrics (e.g. {"features": "inception",
        "inception_weights": path, "patch_size": 256}).
      out_json: where to write the results JSON (and the per-image CSV beside it); None = not written.
      workdir_for_files: folder that keeps the compressed files (`<image>.gcz`, and `<image>.p<k>.gcz`
        per rate point when truncated); None = a temporary folder deleted afterwards.
      progress: show a progress bar on stderr.
      warmup: compress/decode the first image once before timing (excludes jit compilation).
    Returns:
      the results dict as written to JSON, plus "per_image": a list of per-image row dicts.
    """
    images = _as_named_images(images)
    metrics = list(metrics)
    for m in metrics:
        if m not in metrics_lib.PER_IMAGE:
            raise ValueError(f"Unknown metric {m!r}; per-image metrics are {list(metrics_lib.PER_IMAGE)} "
                             "(FID/KID: pass realism=...)")
    if "ms-ssim" in metrics:
        small = [(n, im.shape[:2]) for n, im in images if min(im.shape[:2]) < metrics_lib.distortion.MIN_MS_SSIM_SIDE]
        if small:
            raise ValueError(f"ms-ssim needs images of at least {metrics_lib.distortion.MIN_MS_SSIM_SIDE} px per "
                             f"side; too small: {small[:3]}{'...' if len(small) > 3 else ''}. Drop 'ms-ssim' from "
                             "the metrics for this data set.")
    points = _rate_points(codec)
    multi = len(points) > 1 or bool(points[0])

    tmp = None
    if workdir_for_files is None:
        tmp = tempfile.TemporaryDirectory(prefix="gencomp_eval_")
        files_dir = pathlib.Path(tmp.name)
    else:
        files_dir = pathlib.Path(workdir_for_files)
        files_dir.mkdir(parents=True, exist_ok=True)

    try:
        if warmup:
            _, first = images[0]
            data = codec.compress(first)
            for opts in points:
                codec.decompress(_point_data(codec, data, opts), **opts)

        rows: list[dict] = []
        recs: list[list[np.ndarray]] = [[] for _ in points]
        iterator = images
        if progress:
            from tqdm import tqdm

            iterator = tqdm(images, desc=f"evaluate {name}", unit="img", file=sys.stderr)
        for img_name, image in iterator:
            h, w = image.shape[:2]
            t0 = time.perf_counter()
            data = bytes(codec.compress(image))
            enc_time = time.perf_counter() - t0
            path = files_dir / f"{_safe(img_name)}.gcz"
            path.write_bytes(data)
            for k, opts in enumerate(points):
                pdata = _point_data(codec, data, opts)
                ppath = path if pdata == data else files_dir / f"{_safe(img_name)}.p{k}.gcz"
                if ppath != path:
                    ppath.write_bytes(pdata)
                from_disk = ppath.read_bytes()
                t0 = time.perf_counter()
                rec = np.asarray(codec.decompress(from_disk, **opts))
                dec_time = time.perf_counter() - t0
                if rec.shape != image.shape or rec.dtype != np.uint8:
                    raise ValueError(f"{type(codec).__name__}.decompress returned {rec.dtype}{rec.shape} for image "
                                     f"{img_name!r} of shape {image.shape}; it must return uint8 of the input's shape")
                est = codec.estimate_bits(image, **opts) if multi else codec.estimate_bits(image)
                row = {"image": img_name, "point": k, "options": json.dumps(opts, sort_keys=True),
                       "height": h, "width": w, "bytes": len(from_disk),
                       "bpp": len(from_disk) * 8.0 / (h * w), "bpp_est": float(est) / (h * w),
                       "encoding_time": enc_time, "decoding_time": dec_time}
                for m in metrics:
                    row[m] = metrics_lib.compute_per_image(m, image, rec)
                rows.append(row)
                if realism:
                    recs[k].append(rec)
    finally:
        if tmp is not None:
            tmp.cleanup()

    keys = ["bpp", "bpp_est", *metrics, "encoding_time", "decoding_time"]
    results: dict[str, list[float]] = {k: [] for k in keys}
    for k in range(len(points)):
        prow = [r for r in rows if r["point"] == k]
        for key in keys:
            results[key].append(_mean([r[key] for r in prow]))
    if realism:
        from gencomp_jax.metrics import fid

        kwargs = dict(realism) if isinstance(realism, Mapping) else {}
        refs = [im for _, im in images]
        for k in range(len(points)):
            for key, value in fid.realism_metrics(refs, recs[k], **kwargs).items():
                results.setdefault(key, []).append(float(value))

    out = {"name": name, "description": description, "results": results, "rate_points": points,
           "num_images": len(images), "images": [n for n, _ in images]}
    if out_json is not None:
        results_lib.save_results(out, out_json)
        write_per_image_csv(rows, per_image_csv_path(out_json))
    out["per_image"] = rows
    return out


def write_per_image_csv(rows: list[dict], path) -> pathlib.Path:
    """Writes per-image rows (evaluate_codec(...)["per_image"]) as CSV."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
