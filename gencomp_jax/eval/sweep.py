"""Evaluates a rate sweep (several trained workdirs of one method, e.g. one per λ) into one RD curve.

    out = evaluate_sweep(["runs/lmbda0.003", "runs/lmbda0.01"], out_json="rd/hyperprior.json",
                         name="hyperprior", dataset="kodak", plot_path="rd/rd.png")

Each workdir is evaluated with real files (evaluate.evaluate_codec) into its own results JSON
`<stem>_<workdir name>.json` (+ per-image CSV) beside `out_json`; the points are then merged into one
curve sorted by bpp (results.merge_results) and written to `out_json`; with `plot_path`, the RD(P)
figure of the merged curve (plus any `compare_with` results files) is written too. This is what
experiments/sweep.py and `gencomp evaluate --checkpoint A --checkpoint B ...` call.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence


def evaluate_sweep(workdirs: Sequence, *, out_json, name: str | None = None, description: str = "",
                   dataset: str = "kodak", images=None, limit: int | None = None,
                   metrics: Sequence[str] = ("psnr-rgb", "ms-ssim"), realism: Mapping[str, Any] | bool | None = None,
                   options: Mapping[str, Any] | None = None, plot_path=None, reference: str | None = None,
                   compare_with: Sequence = (), progress: bool = True) -> dict:
    """Evaluates every workdir, writes per-workdir and merged results (and a plot); returns the merged dict.

    images: preloaded [(name, uint8 HWC)] (default: loading.load_eval_set(dataset, limit=limit)).
    options: decode options to sweep in every workdir (evaluate.rate_points), None = the codec's points.
    compare_with: results JSON paths to draw in the same plot (e.g. a baseline).
    The returned dict has an extra key "runs": {workdir: results dict}.
    """
    from gencomp_jax.eval import evaluate, loading, plot, results

    if not workdirs:
        raise ValueError("evaluate_sweep needs at least one workdir")
    out_json = pathlib.Path(out_json)
    if images is None:
        images = loading.load_eval_set(dataset, limit=limit)
    name = name or out_json.stem
    runs = {}
    for wd in workdirs:
        wd = pathlib.Path(wd)
        codec = loading.load_codec(wd)
        run_json = out_json.with_name(f"{out_json.stem}_{wd.resolve().name}.json")
        res = evaluate.evaluate_codec(codec, images, name=f"{name}/{wd.name}", description=f"{wd} on {dataset}",
                                      metrics=metrics, realism=realism, options=options, out_json=run_json,
                                      progress=progress)
        res.pop("per_image", None)
        runs[str(wd)] = res
    merged = results.merge_results(list(runs.values()), name=name,
                                   description=description or f"{name}: {len(runs)} workdirs on {dataset}")
    results.save_results(merged, out_json)
    if plot_path is not None:
        others = [results.load_results(p) for p in compare_with]
        plot.plot_rd([merged, *others], plot_path, reference=reference)
    merged["runs"] = runs
    return merged
