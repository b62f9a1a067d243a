"""Runs a codec over a set of images with real files, and writes CompressAI-style results.

    res = evaluate_codec(codec, images, name="hyperprior-q3", description="...",
                         metrics=("psnr-rgb", "ms-ssim-rgb"), realism=None, out_json="rd/q3.json")

For every image: `codec.compress(image)` -> bytes, written to a file (in `workdir_for_files` or a
temporary directory); the file is read back and decoded; bpp = file size in bytes * 8 / (H * W) of
the original image (header included); bpp_est = codec.estimate_bits(image) / (H * W); encoding and
decoding wall-clock seconds; then every requested per-image metric on the 8-bit reconstruction
(gencomp_jax.metrics.compute_per_image). Realism metrics (FID/KID) are computed over the whole set
only when `realism` is given (gencomp_jax.metrics.fid.realism_metrics).

Results JSON (`out_json`):
    {"name", "description",
     "results": {"bpp": [...], "bpp_est": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...], (realism keys: "fid", "kid", ...)},
     "rate_points": [decode options of each point], "num_images": n, "images": [names]}
with one list entry per rate point: the mean over images (realism: one value over the set). A
per-image CSV is written beside it (`<stem>_per_image.csv`, one row per image and rate point).

Rate points (the contract of gencomp_jax/codecs/base.py):
  The points evaluated are `codec.rate_points()` (a list of decode-option dicts; [{}] for a
  single-rate codec), optionally overridden or extended by `options` ({name: values}, every
  combination of the given values applied to every point; see `rate_points`). Each point is checked
  against the codec's declared `decode_options` (base.check_options). A point that sets an option
  declared with `rate=True` (e.g. `steps`) is measured on the bytes a receiver needs for it,
  `ProgressiveCodec.truncate(data, **those options)`; they are written to their own file and decoded
  from it, so progressive decoding of truncated files is exercised for real. Every point is decoded
  with `codec.decompress(data_k, **point)` and estimated with `codec.estimate_bits(image, **point)`
  (a progressive codec with `compress_with_bits(image) -> (file, step bits)` and `bits_at(step bits,
  **point)`, codecs/base.py: the sum of the first `steps` step bits of its one encoding pass). The image is compressed once;
  encoding_time is the same for every point of an image.

Timing: by default (`warmup=True`) the first image is compressed and decoded once before timing,
so jit compilation is not counted (images of another shape still compile once on first use).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import pathlib
import sys
import tempfile
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gencomp_jax import metrics as metrics_lib
from gencomp_jax.codecs import base
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


def rate_points(codec, options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The RD points of an evaluation: `codec.rate_points()`, overridden/extended by `options`.

    options: {name: value or list of values} of the codec's declared decode options (strings are
      parsed with DecodeOption.parse, e.g. from the CLI's `--option realism=0,0.5,1`). Every
      combination of the given values (cartesian product) is applied to every point of
      `codec.rate_points()`, replacing the same keys; repeated points are dropped, order kept (the
      combinations outermost). E.g. UQDM's points {steps: k, reconstruction: r} with
      {"reconstruction": ["flow"]} become steps 0..T+1 with flow only; a single-rate codec's [{}] with
      {"realism": [0, 1]} becomes [{"realism": 0.0}, {"realism": 1.0}].
    Returns checked option dicts (base.check_options); OptionError for an undeclared option or value.
    """
    points = [dict(p) for p in codec.rate_points()]
    if not points:
        raise ValueError(f"{type(codec).__name__}.rate_points() returned no points")
    combos: list[dict[str, Any]] = [{}]
    if options:
        base.check_options(codec, dict.fromkeys(options), fill_defaults=False)  # undeclared names
        declared = {o.name: o for o in codec.decode_options}
        grid = []
        for key, values in options.items():
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise base.OptionError(f"option {key}: no values given")
            opt = declared[key]
            grid.append([(key, opt.parse(v) if isinstance(v, str) else opt.check(v)) for v in values])
        combos = [dict(c) for c in itertools.product(*grid)]
    out: list[dict[str, Any]] = []
    for combo in combos:
        for p in points:
            point = base.check_options(codec, {**p, **combo}, fill_defaults=False)
            if point not in out:
                out.append(point)
    return out


def parse_option_args(pairs: Sequence[str]) -> dict[str, list[str]]:
    """Command-line option texts ["name=v1,v2", ...] (a repeated --option) -> {name: ["v1", "v2"]}.

    The texts are parsed by `rate_points` with the codec's declared options. OptionError if a text is
    not NAME=VALUE[,VALUE...] or a name is given twice.
    """
    out: dict[str, list[str]] = {}
    for pair in pairs or ():
        key, sep, values = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise base.OptionError(f"--option {pair!r}: write it as NAME=VALUE, e.g. --option reconstruction=flow")
        if key in out:
            raise base.OptionError(f"--option {key} is given twice (list several values as {key}=A,B)")
        out[key] = [v.strip() for v in values.split(",") if v.strip()]
    return out


def point_bytes(codec, data: bytes, options: Mapping[str, Any]) -> bytes:
    """The bytes a receiver needs to decode `data` with `options`: the whole file, or
    `codec.truncate(data, **rate options)` when `options` set a decode option declared `rate=True`."""
    rate = {o.name for o in codec.decode_options if o.rate}
    rate_opts = {k: v for k, v in options.items() if k in rate and v is not None}
    if not rate_opts:
        return data
    if not isinstance(codec, base.ProgressiveCodec):
        raise TypeError(f"{type(codec).__name__} declares the rate option(s) {sorted(rate_opts)} but is not a "
                        "ProgressiveCodec (no truncate(data, *, steps)); see gencomp_jax/codecs/base.py")
    return bytes(codec.truncate(data, **rate_opts))


def _compress(codec, image) -> tuple[bytes, list[float] | None]:
    """(file, ideal bits of each segment or None). A progressive codec built on codecs/progressive.py
    offers compress_with_bits(image) -> (file, step bits) from its one encoding pass; evaluation then
    needs no second forward pass per rate point for bpp_est."""
    with_bits = getattr(codec, "compress_with_bits", None)
    if with_bits is None:
        return bytes(codec.compress(image)), None
    data, bits = with_bits(image)
    return bytes(data), [float(b) for b in bits]


def _estimate_bits(codec, image, options: Mapping[str, Any], step_bits: list[float] | None) -> float:
    """codec.estimate_bits(image, **options), or codec.bits_at(step_bits, **options) when _compress
    returned the step bits (a codec with compress_with_bits has bits_at: codecs/progressive.py)."""
    if step_bits is None:
        return float(codec.estimate_bits(image, **options))
    return float(codec.bits_at(step_bits, **options))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def per_image_csv_path(out_json) -> pathlib.Path:
    """Where the per-image CSV of a results JSON goes: `<stem>_per_image.csv` beside it."""
    p = pathlib.Path(out_json)
    return p.with_name(p.stem + "_per_image.csv")


def evaluate_codec(codec, images: Iterable, *, name: str, description: str = "",
                   metrics: Sequence[str] = ("psnr-rgb", "ms-ssim-rgb"), realism: Mapping[str, Any] | bool | None = None,
                   options: Mapping[str, Any] | None = None, out_json=None, workdir_for_files=None,
                   progress: bool = True, warmup: bool = True) -> dict:
    """Evaluates `codec` on `images` with real files; see the module docstring.

    Args:
      codec: a Codec (codecs/base.py); a ProgressiveCodec's points are measured on truncated files.
      images: list of uint8 [H, W, 3] arrays or of (name, array) pairs (data.load_eval_set's output).
      name, description: stored in the results.
      metrics: per-image metric names (gencomp_jax.metrics.PER_IMAGE).
      realism: None/False = no realism metrics; True or a dict of keyword arguments for
        gencomp_jax.metrics.fid.realism_metrics (e.g. {"features": "inception",
        "inception_weights": path, "patch_size": 256}).
      options: decode options to sweep, {name: values} (see `rate_points`); None = codec.rate_points().
      out_json: where to write the results JSON (and the per-image CSV beside it); None = not written.
      workdir_for_files: folder that keeps the compressed files (`<image>.gcz`, and `<image>.p<k>.gcz`
        per rate point when truncated); None = a temporary folder deleted afterwards.
      progress: show a progress bar on stderr.
      warmup: compress/decode the first image once before timing (excludes jit compilation).
    Returns:
      the results dict as written to JSON, plus "per_image": a list of per-image row dicts.
    """
    points = rate_points(codec, options)
    images = _as_named_images(images)
    metrics = [results_lib.canonical_key(m) for m in metrics]  # e.g. the older "ms-ssim", "psnr"
    for m in metrics:
        if m not in metrics_lib.PER_IMAGE:
            raise ValueError(f"Unknown metric {m!r}; per-image metrics are {list(metrics_lib.PER_IMAGE)} "
                             "(FID/KID: pass realism=...)")
    if "ms-ssim-rgb" in metrics:
        small = [(n, im.shape[:2]) for n, im in images if min(im.shape[:2]) < metrics_lib.distortion.MIN_MS_SSIM_SIDE]
        if small:
            raise ValueError(f"ms-ssim-rgb needs images of at least {metrics_lib.distortion.MIN_MS_SSIM_SIDE} px per "
                             f"side; too small: {small[:3]}{'...' if len(small) > 3 else ''}. Drop 'ms-ssim-rgb' from "
                             "the metrics for this data set.")

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
            data, _ = _compress(codec, first)
            for opts in points:
                codec.decompress(point_bytes(codec, data, opts), **opts)

        rows: list[dict] = []
        recs: list[list[np.ndarray]] = [[] for _ in points]
        iterator = images
        if progress:
            from tqdm import tqdm

            iterator = tqdm(images, desc=f"evaluate {name}", unit="img", file=sys.stderr)
        for img_name, image in iterator:
            h, w = image.shape[:2]
            t0 = time.perf_counter()
            data, step_bits = _compress(codec, image)
            enc_time = time.perf_counter() - t0
            path = files_dir / f"{_safe(img_name)}.gcz"
            path.write_bytes(data)
            for k, opts in enumerate(points):
                pdata = point_bytes(codec, data, opts)
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
                est = _estimate_bits(codec, image, opts, step_bits)
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
