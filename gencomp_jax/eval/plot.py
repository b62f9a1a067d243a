"""Rate-distortion-perception plots from results files.

`plot_rd(results, out_path)` draws one panel per metric present in any of the results (psnr-rgb,
ms-ssim-rgb, lpips-*, fid, kid, ...), bpp on the x axis, one line per method with the same colour and
marker in every panel. `reference="balle2018"` (or a list of names) overlays published curves bundled
with the package (results.reference_names(): Ballé 2018 and CompressAI on Kodak, the UQDM paper's
ImageNet-64 / CIFAR-10 baselines), dashed, in each panel whose metric they have.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping, Sequence

from gencomp_jax.eval import results as results_lib

REFERENCE_COLORS = ("0.4", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "0.7")  # dashed: published
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LABELS = {"psnr-rgb": "PSNR (RGB) [dB]", "ms-ssim-rgb": "MS-SSIM", "lpips-alex": "LPIPS (Alex) ↓",
          "lpips-vgg": "LPIPS (VGG) ↓", "fid": "FID ↓", "kid": "KID ↓"}


def _set_view(ax, points, margin: float = 0.05) -> None:
    """Axis limits around `points` (finite ones), with a margin; lines beyond them run off the edge."""
    pts = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    for axis, vals in (("x", [x for x, _ in pts]), ("y", [y for _, y in pts])):
        lo, hi = min(vals), max(vals)
        pad = margin * (hi - lo) if hi > lo else max(abs(hi) * margin, 1e-3)
        (ax.set_xlim if axis == "x" else ax.set_ylim)(lo - pad, hi + pad)


def plot_rd(results: Sequence[Mapping[str, Any]], out_path, *, metrics: Sequence[str] | None = None,
            reference: str | Sequence[str] | None = None, title: str | None = None) -> pathlib.Path:
    """Writes an RD(P) figure with one panel per metric; returns the path.

    results: results dicts (results.load_results); several dicts with the same name are one method.
    metrics: panels to draw (default: every quality/realism metric present, see results.metric_keys).
    reference: None, or one name or a list of names of bundled published curves (results.reference_names(),
        e.g. "balle2018", "kodak-compressai-mbt2018-mean", "imagenet64-uqdm-flow").
    """
    # A bare Figure (no pyplot state, no backend switch): safe in scripts, servers and notebooks.
    import matplotlib
    from matplotlib.figure import Figure

    results = [results_lib.validate_results(r) for r in results]
    if not results:
        raise ValueError("plot_rd needs at least one results file")
    names = [reference] if isinstance(reference, str) else list(reference or ())
    references = [results_lib.load_reference(n) for n in names]  # unknown name: ResultsError listing them
    panels = [results_lib.canonical_key(m) for m in metrics] if metrics else results_lib.metric_keys(results)
    missing = [m for m in panels if not any(m in r["results"] for r in results)]
    if missing or not panels:
        raise ValueError(f"no results contain metric(s) {missing or panels}; available: "
                         f"{results_lib.metric_keys(results)}")

    # group by method name (keeps first-seen order) -> one style per method
    methods: dict[str, list] = {}
    for r in results:
        methods.setdefault(r["name"], []).append(r)
    curves = {name: results_lib.merge_results(items) if len(items) > 1 else items[0]
              for name, items in methods.items()}
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(curves) > len(colors):   # every curve its own colour (a comparison has ~20)
        colors = [matplotlib.colormaps["tab20"](i % 20) for i in range(len(curves))]
    styles = {name: (colors[i % len(colors)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(curves)}
    shared_legend = len(curves) + len(references) > 6   # one legend beside the panels instead of one per panel
    rates = [b for res in curves.values() for b in res["results"]["bpp"] if b > 0 and math.isfinite(b)]
    log_rate = bool(rates) and max(rates) / min(rates) > 30   # e.g. progressive codecs up to lossless

    ncols = min(len(panels), 3)
    nrows = (len(panels) + ncols - 1) // ncols
    fig = Figure(figsize=(5.0 * ncols + (3.2 if shared_legend else 0.0), 4.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, metric in zip(axes.flat, panels):
        for name, res in curves.items():
            if metric not in res["results"]:
                continue
            color, marker = styles[name]
            pts = sorted(zip(res["results"]["bpp"], res["results"][metric]))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=name)
        view = [(x, y) for res in curves.values() if metric in res["results"]
                for x, y in zip(res["results"]["bpp"], res["results"][metric])]
        lo, hi = min(x for x, _ in view) / 1.5, max(x for x, _ in view) * 1.5
        for i, ref in enumerate(references):
            if metric not in ref["results"]:
                continue
            pts = list(zip(ref["results"]["bpp"], ref["results"][metric]))
            ax.plot(*zip(*pts), linestyle="--", marker="x", color=REFERENCE_COLORS[i % len(REFERENCE_COLORS)],
                    label=ref["name"])
            view += [(x, y) for x, y in pts if lo <= x <= hi]
        if references:  # published curves span other rates (up to lossless): show the measured rate range
            _set_view(ax, view)
        if log_rate:
            ax.set_xscale("log")
        if metric.startswith(("kid", "fd", "fid")):   # spans decades near 0 and an unbiased KID can be < 0
            vals = [y for _, y in view if math.isfinite(y)]
            if vals and max(abs(v) for v in vals) > 100 * max(min(abs(v) for v in vals), 1e-3):
                ax.set_yscale("symlog", linthresh=1e-3 if metric.startswith("kid") and max(vals) < 1 else 1.0)
        ax.set_xlabel("bpp (log scale)" if log_rate else "bpp")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
        if not shared_legend:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    if shared_legend:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        seen = dict(zip(labels, handles))
        for ax in list(axes.flat)[1:len(panels)]:   # curves missing from the first panel
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        fig.tight_layout(rect=(0, 0, 1 - 3.2 / fig.get_figwidth(), 1))
        fig.legend(list(seen.values()), list(seen), loc="center right", fontsize=7, frameon=False)
    else:
        fig.tight_layout()
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    return out_path
