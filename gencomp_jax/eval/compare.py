"""One rate-distortion-perception comparison of every method on identical data, with real files.

    summary = run_compare(load_config("configs/compare.py:runlocal"), "runs/compare")

For each entry of `config.methods` (configs/compare.py): train it with the one training loop
(gencomp_jax.train.train_and_evaluate; one run per value of its rate sweep, resumed / skipped when its workdir
already holds the final step), load a published checkpoint (eval/pretrained.py, through eval.loading), or build
a classical codec (eval/classical.py: JPEG / WebP through Pillow). Then EVERY point is evaluated by the one
evaluation path (eval/evaluate.evaluate_codec) on the same images: real files written, read back and decoded,
bpp from their bytes, PSNR, LPIPS (MS-SSIM when the images allow it), KID on patches (FID only when there are
at least as many patches as feature dimensions), encode / decode seconds.

Written under `workdir`:
  images/<name>.png                 the evaluation images (identical for every method)
  runs/<entry>/<key>=<value>/       training workdirs (the naming of experiments/sweep.py; HFD's value is the
                                    absolute path of its stage-1 run, so its workdirs are nested)
  files/<entry>/<run>/              every compressed file (.gcz; .jpg / .webp for the classical codecs);
                                    progressive points as the truncated files a receiver would have
  evals/<entry>/<run>.json          the raw evaluation of each run (+ per-image CSV)
  results/<curve>.json              one CompressAI-style results JSON per curve (a method, or one decode
                                    variant of it, e.g. UQDM's flow reconstruction), with "points": for each
                                    point the run, the decode options and the files it was measured on
  table.md                          per curve: BD-rate against the anchor (NTC hyperprior) on PSNR, and the bpp
                                    needed for fixed PSNR / LPIPS / KID targets (interpolated; "—" out of range)
  rd.png                            three panels: bpp vs PSNR, vs LPIPS, vs KID (FID when it is meaningful)
  summary.json                      the curves, notes (what was skipped and why), seconds per stage
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from gencomp_jax.eval import results as results_lib

FEATURE_DIMS = {"inception": 2048, "vgg16": 512, "alex": 256}
REPO = pathlib.Path(__file__).resolve().parents[2]


class CompareError(ValueError):
    """A comparison config that cannot be run."""


# ------------------------------------------------------------------------------------------ planning

def _to_dict(x) -> Any:
    return x.to_dict() if isinstance(x, ml_collections.ConfigDict) else x


def selected(config) -> list[str]:
    """Names of the entries to run (config.only, default all), in the order of config.order (ConfigDict sorts
    its keys; the order matters: the anchor first, stage-1 entries before the entries built on them)."""
    names = [str(n) for n in config.order]
    missing = sorted(set(config.methods.keys()) - set(names))
    if missing or len(set(names)) != len(names) or set(names) - set(config.methods.keys()):
        raise CompareError(f"config.order {names} must list every entry of config.methods once (missing: {missing})")
    only = [s.strip() for s in str(config.get("only", "") or "").split(",") if s.strip()]
    unknown = [s for s in only if s not in names]
    if unknown:
        raise CompareError(f"config.only names unknown entries {unknown}; entries: {names}")
    return [n for n in names if not only or n in only]


def _merge(node: ml_collections.ConfigDict, overrides: Mapping, where: str) -> None:
    """Merges nested `overrides` into `node`; a network spec (a mapping with "arch") replaces the old one whole."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and "arch" in value:
            node[key] = dict(value)
            continue
        if key not in node:
            raise CompareError(f"{where}: the method's config has no key {key!r}")
        if isinstance(value, Mapping) and isinstance(node[key], (ml_collections.ConfigDict, Mapping)):
            if isinstance(node[key], ml_collections.ConfigDict):
                _merge(node[key], value, f"{where}.{key}")
            else:
                node[key] = {**node[key], **value}
        else:
            node[key] = value


def _get(config, key: str):
    """config[a][b][c] for key "a.b.c"."""
    for k in key.split("."):
        config = config[k]
    return config


def _set_key(config, key: str, value) -> None:
    node = config
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    if last not in node:
        raise CompareError(f"sweep key {key!r}: the config has no such key")
    node[last] = float(value) if isinstance(node[last], float) and isinstance(value, int) else value


def _sweep(entry) -> tuple[str, list]:
    key, values = str(entry.sweep_key or ""), list(entry.sweep_values or ())
    return (key, values) if key and values else ("seed", [0])


def method_config(config, name: str, *, value=None, key: str | None = None) -> ml_collections.ConfigDict:
    """The training config of one run of entry `name`: its config spec, the comparison's training data
    (config.data), the entry's overrides, then `key` = `value`."""
    from gencomp_jax.config_utils import load_config

    entry = config.methods[name]
    cfg = load_config(str(entry.config))
    _merge(cfg.data, _to_dict(config.data), f"{name}: data")
    _merge(cfg, _to_dict(entry.overrides), f"{name}: overrides")
    cfg.seed = int(config.seed)
    if key:
        _set_key(cfg, key, value)
    return cfg


def plan_runs(config, workdir) -> dict[str, list[dict]]:
    """{entry: [{"workdir", "key", "value", "config"}]} of the trained entries (see module docstring)."""
    root = pathlib.Path(workdir) / "runs"
    plan: dict[str, list[dict]] = {}
    for name in selected(config):
        entry = config.methods[name]
        if entry.kind != "train":
            continue
        if entry.stage1_from:
            if entry.stage1_from not in plan:
                raise CompareError(f"{name}: stage1_from={entry.stage1_from!r} must name an earlier trained entry "
                                   "that is selected")
            runs = []
            for s1 in plan[entry.stage1_from][:int(entry.get("stage1_runs", 0)) or None]:
                path = str(pathlib.Path(s1["workdir"]).resolve())
                cfg = method_config(config, name, key="model.stage1.workdir", value=path)
                m1 = s1["config"].model
                cfg.model.stage1.update(dict(variant=s1["config"].method, N=int(m1.N), M=int(m1.M),
                                             lmbda=float(m1.lmbda)))
                # experiments/sweep.py's naming <root>/<key>=<value>, so that --emit slurm runs land here too
                runs.append(dict(workdir=root / name / f"model.stage1.workdir={path}",
                                 key="model.stage1.workdir", value=path, config=cfg))
            plan[name] = runs
            continue
        key, values = _sweep(entry)
        plan[name] = [dict(workdir=root / name / f"{key}={v}", key=key, value=v,
                           config=method_config(config, name, key=key, value=v)) for v in values]
    return plan


def _trained_step(workdir) -> int | None:
    from gencomp_jax.train import checkpoint

    if not (pathlib.Path(workdir) / "config.json").exists():
        return None
    ck = checkpoint.Checkpointer(workdir, keep=1)
    try:
        return ck.latest_step()
    finally:
        ck.close()


def train_all(plan: Mapping[str, list[dict]], *, log=print) -> dict[str, float]:
    """Trains every planned run (skipping runs whose workdir already holds the final step); seconds per run."""
    from gencomp_jax.train import train_and_evaluate

    seconds = {}
    for name, runs in plan.items():
        for run in runs:
            cfg, wd = run["config"], pathlib.Path(run["workdir"])
            if _trained_step(wd) == int(cfg.train.num_steps):
                log(f"== {name}: {wd} already trained ({cfg.train.num_steps} steps)")
                continue
            log(f"== training {name} ({run['key']}={run['value']}) in {wd}")
            t0 = time.perf_counter()
            train_and_evaluate(cfg, wd)
            seconds[str(wd)] = time.perf_counter() - t0
    return seconds


# ------------------------------------------------------------------------------------------ data

def load_images(config) -> list[tuple[str, np.ndarray]]:
    """The evaluation images: config.eval.dataset (first num_images), centre crops of config.eval.crop (0: whole)."""
    from gencomp_jax import data

    items = data.load_eval_set(str(config.eval.dataset), limit=int(config.eval.num_images) or None)
    crop = int(config.eval.crop)
    out = []
    for name, image in items:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pathlib.Path(name).stem)
        if crop:
            image, safe = np.ascontiguousarray(data.center_crop(image, crop)), f"{safe}_c{crop}"
        out.append((safe, image))
    return out


# ------------------------------------------------------------------------------------------ evaluation

def _codecs(config, name: str, runs: Sequence[dict] | None) -> tuple[list[tuple[str, Any]], list[str]]:
    """[(run label, codec)] of one entry, and notes (e.g. an absent published checkpoint)."""
    from gencomp_jax.eval import classical, loading

    entry = config.methods[name]
    if entry.kind == "classical":
        return [(f"quality={q}", classical.PillowCodec(entry.format, quality=int(q))) for q in entry.qualities], []
    if entry.kind == "pretrained":
        path = pathlib.Path(str(entry.path))
        if not path.exists():
            return [], [f"{entry.label}: not run, the published checkpoint {path} is absent (download it from the "
                        "authors' page, see README 'Published weights')"]
        return [(path.name, loading.load_codec(path))], [f"{entry.label}: published weights from {path}"]
    if entry.kind == "train":
        return [(pathlib.Path(r["workdir"]).name, loading.load_codec(r["workdir"])) for r in runs], []
    raise CompareError(f"{name}: kind must be 'train', 'pretrained' or 'classical', got {entry.kind!r}")


def _metrics(config, images) -> tuple[list[str], list[str]]:
    from gencomp_jax.metrics import distortion

    metrics, notes = [], []
    side = min(min(im.shape[:2]) for _, im in images)
    for m in config.eval.metrics:
        m = results_lib.canonical_key(m)
        if m == results_lib.canonical_key("ms-ssim") and side < distortion.MIN_MS_SSIM_SIDE:
            notes.append(f"MS-SSIM not reported: the images are {side} px, MS-SSIM needs >= "
                         f"{distortion.MIN_MS_SSIM_SIDE} px per side")
            continue
        metrics.append(m)
    return metrics, notes


def _realism(config) -> dict | None:
    r = config.eval.realism
    if not r or not r.features:
        return None
    out = {"features": str(r.features), "patch_size": int(r.patch_size) or None, "kid_subsets": int(r.kid_subsets)}
    if r.get("inception_weights"):
        out["inception_weights"] = str(r.inception_weights)
    return out


def _fd_key(features: str) -> str:
    return "fid" if features == "inception" else f"fd-{features}"


def _kid_key(features: str) -> str:
    return "kid" if features == "inception" else f"kid-{features}"


def _point_files(files_dir: pathlib.Path, image_names, k: int, suffix: str, root: pathlib.Path) -> list[str]:
    out = []
    for n in image_names:
        p = files_dir / f"{n}.p{k}{suffix}"
        if not p.exists():
            p = files_dir / f"{n}{suffix}"
        if not p.exists():
            raise CompareError(f"no file for image {n!r} point {k} in {files_dir}")
        out.append(str(p.relative_to(root)))
    return out


def evaluate_entry(config, name: str, codecs, images, workdir, *, metrics, realism, progress=False
                   ) -> list[dict]:
    """Evaluates every codec of one entry with evaluate_codec; returns the per-run results (with "files")."""
    from gencomp_jax.eval import evaluate

    root = pathlib.Path(workdir)
    entry = config.methods[name]
    options = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in _to_dict(entry.options).items()}
    names = [n for n, _ in images]
    out = []
    for run_label, codec in codecs:
        files_dir = root / "files" / name / run_label
        if files_dir.exists():   # files of an earlier evaluation (other points) must not be taken for these
            shutil.rmtree(files_dir)
        res = evaluate.evaluate_codec(
            codec, images, name=f"{entry.label} [{run_label}]", description=f"{name}/{run_label}",
            metrics=metrics, realism=realism, options=options or None,
            out_json=root / "evals" / name / f"{run_label}.json", workdir_for_files=files_dir, progress=progress,
            warmup=bool(config.eval.get("warmup", True)))
        res.pop("per_image", None)
        suffix = ".gcz"
        if entry.kind == "classical":   # they are real JPEG / WebP files: give them their own suffix
            suffix = codec.suffix
            for p in files_dir.glob("*.gcz"):
                p.rename(p.with_suffix(suffix))
        res["run"] = run_label
        res["files"] = [_point_files(files_dir, names, k, suffix, root) for k in range(len(res["rate_points"]))]
        out.append(res)
    return out


def _drop_fid(run_results: list[dict], realism: dict | None) -> list[str]:
    """Removes the Fréchet distance where there are fewer patches than feature dimensions; notes why."""
    if not realism:
        return []
    fd, dim = _fd_key(realism["features"]), FEATURE_DIMS.get(realism["features"])
    notes = []
    for res in run_results:
        n = res["results"].get("num_patches", [math.inf])
        if fd in res["results"] and dim and min(n) < dim:
            del res["results"][fd]
            notes.append(f"{fd} not reported: {int(min(n))} patches < {dim} feature dimensions "
                         f"({realism['features']}); KID is unbiased at this sample size")
    return sorted(set(notes))


def curves_of(config, name: str, run_results: list[dict]) -> list[dict]:
    """Splits the runs' points into curves (by the entry's `split` option) and merges each over the runs."""
    entry = config.methods[name]
    split = str(entry.split or "")
    groups: dict[Any, list[tuple[dict, int]]] = {}
    for res in run_results:
        for k, point in enumerate(res["rate_points"]):
            groups.setdefault(point.get(split) if split else None, []).append((res, k))
    curves = []
    for value, members in groups.items():
        keys = [k for k in members[0][0]["results"] if all(k in r["results"] for r, _ in members)]
        members = sorted(members, key=lambda rk: rk[0]["results"]["bpp"][rk[1]])
        suffix = "" if value is None else f"-{value}"
        label = entry.label if value is None else f"{entry.label}, {split}={value}"
        res0 = members[0][0]
        curves.append({
            "name": label, "key": f"{name}{suffix}",
            "description": f"{label}: {len(run_results)} run(s) x {len(members) // max(len(run_results), 1)} point(s); "
                           f"{res0['num_images']} images of {config.eval.dataset}; files written and decoded "
                           "(gencomp_jax.eval.compare)",
            "results": {k: [r["results"][k][i] for r, i in members] for k in keys},
            "points": [{"run": r["run"], "options": r["rate_points"][i], "files": r["files"][i]} for r, i in members],
            "num_images": res0["num_images"], "images": res0["images"], "dataset": str(config.eval.dataset),
            "entry": name, "kind": str(entry.kind)})
    return curves


# ------------------------------------------------------------------------------------------ the table

def bpp_at(bpp: Sequence[float], quality: Sequence[float], target: float, *, higher_is_better: bool
           ) -> float | None:
    """The bpp at which a curve first reaches `target` quality, interpolated linearly in log(bpp) between the
    two points that bracket it (points sorted by bpp); None if the curve never crosses it within its range."""
    pts = sorted((float(b), float(q)) for b, q in zip(bpp, quality) if np.isfinite(b) and np.isfinite(q) and b > 0)
    good = (lambda q: q >= target) if higher_is_better else (lambda q: q <= target)
    for i, (b, q) in enumerate(pts):
        if not good(q):
            continue
        if q == target:
            return b
        if i == 0:
            return None      # already better than the target at the lowest rate: out of range
        b0, q0 = pts[i - 1]
        f = (target - q0) / (q - q0)
        return float(math.exp(math.log(b0) + f * (math.log(b) - math.log(b0))))
    return None


def _bd_rate(anchor: dict, curve: dict, metric: str) -> tuple[float | None, str]:
    from gencomp_jax.eval import bd

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = bd.bd_rate(*finite_points(anchor, metric), *finite_points(curve, metric))
    except (ValueError, KeyError) as e:
        return None, str(e).split(";")[0]
    overlap = [re.search(r"only (\d+%)", str(w.message)) for w in caught]
    return value, "; ".join(f"{m.group(1)} overlap" for m in overlap if m)


def finite_points(curve: Mapping, metric: str) -> tuple[list[float], list[float]]:
    """(bpp, metric) of a curve's points where both are finite: a lossless point (PSNR = inf) has no place on a
    BD curve."""
    pts = [(b, q) for b, q in zip(curve["results"]["bpp"], curve["results"][metric])
           if math.isfinite(b) and math.isfinite(q)]
    return [b for b, _ in pts], [q for _, q in pts]


def _fmt(x: float | None, spec: str) -> str:
    if x is not None and np.isposinf(x):
        return "∞"
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def write_table(curves: Sequence[dict], path, *, anchor_key: str | None, targets: Mapping[str, float],
                kid_key: str, fd_key: str, notes: Sequence[str] = (), header: str = "") -> pathlib.Path:
    """table.md: one row per curve (BD-rate vs the anchor, bpp at fixed targets), then every point."""
    from gencomp_jax.metrics import HIGHER_IS_BETTER

    anchor = next((c for c in curves if c["key"] == anchor_key), None)
    tgt = {("kid" if k == "kid" else k): float(v) for k, v in targets.items()}
    cols = [("psnr-rgb", "PSNR", "dB", ".3g"), ("lpips-alex", "LPIPS", "", ".3g"), (kid_key, "KID", "", ".3g")]
    lines = [header] if header else []
    head = ["method", "points", "bpp range", f"BD-rate vs {anchor['name'] if anchor else 'anchor'} (PSNR)"]
    for key, label, unit, _ in cols:
        t = tgt.get("kid" if key == kid_key else key)
        if t is not None:
            head.append(f"bpp @ {label} {'≥' if HIGHER_IS_BETTER.get(key, True) else '≤'} {t:g}{(' ' + unit) if unit else ''}")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in curves:
        r = c["results"]
        row = [c["name"], str(len(r["bpp"])), f"{min(r['bpp']):.3f}–{max(r['bpp']):.3f}"]
        if anchor is None:
            row.append("—")
        elif c is anchor:
            row.append("0 % (anchor)")
        else:
            v, why = _bd_rate(anchor, c, "psnr-rgb")
            row.append("—" if v is None else f"{v:+.1f} %" + (f" ({why})" if why else ""))
        for key, label, unit, spec in cols:
            t = tgt.get("kid" if key == kid_key else key)
            if t is None:
                continue
            v = bpp_at(r["bpp"], r[key], t, higher_is_better=HIGHER_IS_BETTER.get(key, True)) if key in r else None
            row.append(_fmt(v, ".3f"))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Every point (means over the images; bpp from the files' bytes, bpp_est from the model):", ""]
    pcols = [("bpp", ".4f"), ("bpp_est", ".4f"), ("psnr-rgb", ".2f"), (results_lib.canonical_key("ms-ssim"), ".4f"), ("lpips-alex", ".4f"),
             (kid_key, ".4f"), (fd_key, ".2f"), ("encoding_time", ".3f"), ("decoding_time", ".3f")]
    pcols = [(k, s) for k, s in pcols if any(k in c["results"] for c in curves)]
    lines += ["| method | run | options | " + " | ".join(k for k, _ in pcols) + " |",
              "|" + "---|" * (3 + len(pcols))]
    for c in curves:
        for i, p in enumerate(c["points"]):
            opts = ", ".join(f"{k}={v}" for k, v in p["options"].items()) or "—"
            cells = [_fmt(c["results"][k][i], s) if k in c["results"] else "—" for k, s in pcols]
            lines.append(f"| {c['name']} | {p['run']} | {opts} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    path = pathlib.Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_figure(curves: Sequence[dict], path, *, kid_key: str, fd_key: str) -> pathlib.Path:
    """rd.png: bpp vs PSNR, vs LPIPS, vs FID (when every curve has it) else KID (eval/plot.plot_rd)."""
    from gencomp_jax.eval import plot

    realism = fd_key if all(fd_key in c["results"] for c in curves) else kid_key
    panels = [m for m in ("psnr-rgb", "lpips-alex", realism) if any(m in c["results"] for c in curves)]
    return plot.plot_rd([{k: c[k] for k in ("name", "description", "results")} for c in curves], path,
                        metrics=panels, title="Every method on the same images, real files")


# ------------------------------------------------------------------------------------------ driver

def machine() -> str:
    cpu = ""
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import jax

    return (f"{platform.node()}: {cpu or platform.processor()}, {os.cpu_count()} CPUs, JAX {jax.__version__} "
            f"on {jax.default_backend()}, load average {load:.1f} at the start")


def run_compare(config, workdir, *, train: bool = True, progress: bool = False, log=print) -> dict:
    """Trains (unless train=False) and evaluates every selected entry; writes the files of the module docstring.

    Returns the summary dict (also written to workdir/summary.json).
    """
    from gencomp_jax.data import write_png

    t_start = time.perf_counter()
    root = pathlib.Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"preset": str(config.get("preset", "")), "machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": {}}
    plan = plan_runs(config, root)
    if train:
        summary["seconds"]["train"] = train_all(plan, log=log)
    images = load_images(config)
    for n, im in images:
        write_png(root / "images" / f"{n}.png", im)
    metrics, notes = _metrics(config, images)
    realism = _realism(config)
    features = realism["features"] if realism else ""
    if realism and realism["features"] != "inception":
        notes.append(f"KID/FD on {realism['features']} features (named {_kid_key(features)}), not the FID "
                     "Inception network: comparable within this table only")
    curves: list[dict] = []
    for name in selected(config):
        entry = config.methods[name]
        t0 = time.perf_counter()
        codecs, extra = _codecs(config, name, plan.get(name))
        notes += extra
        if not codecs:
            curves.append({"name": entry.label, "key": name, "missing": True})
            continue
        log(f"== evaluating {name}: {len(codecs)} codec(s) on {len(images)} images")
        runs = evaluate_entry(config, name, codecs, images, root, metrics=metrics, realism=realism,
                              progress=progress)
        notes += [n for n in _drop_fid(runs, realism) if n not in notes]
        for c in curves_of(config, name, runs):
            path = root / "results" / f"{c['key']}.json"
            results_lib.save_results(c, path)
            c["json"] = str(path.relative_to(root))
            curves.append(c)
        summary["seconds"][f"evaluate/{name}"] = time.perf_counter() - t0
    for c in curves:
        if c.get("missing"):
            notes.append(f"{c['name']}: no row (not run)")
    anchor = str(config.anchor)
    summary.update(curves=[{"name": c["name"], "key": c["key"], "json": c.get("json"), "missing": c.get("missing", False)}
                           for c in curves],
                   images=[n for n, _ in images], notes=notes, table="table.md", figure="rd.png",
                   kid_key=_kid_key(features), fd_key=_fd_key(features),
                   anchor=next((c["key"] for c in curves if c.get("entry") == anchor), None),
                   dataset=f"{len(images)} images of {config.eval.dataset}"
                           f"{f' (centre crops {config.eval.crop}x{config.eval.crop})' if int(config.eval.crop) else ''}")
    summary["seconds"]["total"] = time.perf_counter() - t_start
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_report(config, root)
    log((root / "table.md").read_text())
    return summary


def write_report(config, workdir) -> None:
    """(Re)writes table.md and rd.png from summary.json and results/*.json (no evaluation; `--emit report`)."""
    root = pathlib.Path(workdir)
    summary = json.loads((root / "summary.json").read_text())
    curves = [dict(results_lib.load_results(root / c["json"]), key=c["key"])
              for c in summary["curves"] if not c["missing"]]
    head = f"Comparison `{summary['preset']}`: {summary.get('dataset', '')}; {summary['machine']}; {summary['date']}.\n"
    write_table(curves, root / "table.md", anchor_key=summary["anchor"], targets=_to_dict(config.eval.targets),
                kid_key=summary["kid_key"], fd_key=summary["fd_key"], notes=summary["notes"], header=head)
    write_figure(curves, root / "rd.png", kid_key=summary["kid_key"], fd_key=summary["fd_key"])


# ------------------------------------------------------------------------------------------ emit

def _flatten(d: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _config_path(spec: str) -> str:
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path) if path.endswith(".py") else REPO / "configs" / f"{path}.py"
    return f"{file}:{arg}" if arg else str(file)


def _override_arg(key: str, value) -> str:
    if isinstance(value, (list, tuple)):
        value = "(" + ",".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return f"--config.{key}={value}"


def emit(config, workdir, config_arg: str, *, mode: str = "slurm", python: str = sys.executable,
         slurm_options: str | None = None, log=print) -> pathlib.Path:
    """Writes launch files instead of training: for every trained entry experiments/sweep.py --emit <mode> writes
    <workdir>/runs/<entry>/{commands.txt | sweep.sbatch}; `<workdir>/submit.sh` submits them (HFD after its
    stage 1) and then the evaluation (`experiments/compare.py ... --emit evaluate`). Returns submit.sh's path."""
    root = pathlib.Path(workdir).resolve()
    plan = plan_runs(config, root)
    sweep_py = REPO / "experiments" / "sweep.py"
    lines = ["#!/bin/bash", "# written by experiments/compare.py --emit " + mode, "set -euo pipefail"]
    job_vars = {}
    for name, runs in plan.items():
        entry = config.methods[name]
        overrides = _flatten(_to_dict(config.data), "data.") + _flatten(_to_dict(entry.overrides))
        if entry.stage1_from:
            m1 = plan[entry.stage1_from][0]["config"]
            overrides += [("model.stage1.variant", m1.method), ("model.stage1.N", int(m1.model.N)),
                          ("model.stage1.M", int(m1.model.M))]
        cmd = [python, str(sweep_py), f"--config={_config_path(str(entry.config))}", f"--workdir={root / 'runs' / name}",
               f"--key={runs[0]['key']}", "--values=" + ",".join(str(r["value"]) for r in runs),
               f"--emit={'slurm' if mode == 'slurm' else 'commands'}", f"--python={python}",
               *[_override_arg(k, v) for k, v in overrides]]
        if slurm_options:
            cmd.append(f"--slurm_options={slurm_options}")
        subprocess.run(cmd, check=True, cwd=REPO)
        var = "JOB_" + "".join(c if c.isalnum() else "_" for c in name).upper()
        job_vars[name] = var
        sb = root / "runs" / name / ("sweep.sbatch" if mode == "slurm" else "commands.txt")
        if mode == "slurm":
            dep = f"--dependency=afterok:${{{job_vars[entry.stage1_from]}}} " if entry.stage1_from else ""
            lines.append(f"{var}=$(sbatch --parsable {dep}{shlex.quote(str(sb))})")
        else:
            lines.append(f"bash -e {shlex.quote(str(sb))}  # {name}")
    path, sep, arg = config_arg.partition(":")
    config_arg = f"{pathlib.Path(path).resolve()}{sep}{arg}"   # the jobs may start in another directory
    eval_cmd = shlex.join([python, str(REPO / "experiments" / "compare.py"), f"--config={config_arg}",
                           f"--workdir={root}", "--emit=evaluate"])
    if mode == "slurm":
        deps = ":".join(f"${{{v}}}" for v in job_vars.values())
        lines.append(f"sbatch --dependency=afterok:{deps} --job-name=gencomp-compare-eval "
                     f"{' '.join('--' + o.lstrip('-') for o in (slurm_options or '--gres=gpu:1 --time=24:00:00').split())} "
                     f"--wrap {shlex.quote(eval_cmd)}")
    else:
        lines.append(eval_cmd)
    path = root / "submit.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    log(f"Wrote {path}: run it to {'submit the jobs' if mode == 'slurm' else 'train and evaluate'}.")
    return path
