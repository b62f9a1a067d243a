"""Rate-distortion-perception plots from results files.

`plot_rd(results, out_path)` draws one panel per metric present in any of the results (psnr-rgb,
ms-ssim, lpips-*, fid, kid, ...), bpp on the x axis, one line per method with the same colour and
marker in every panel. `reference="balle2018"` overlays published figures (PSNR panel only), drawn
dashed and labelled as published.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

from gencomp_jax.eval import results as results_lib

# Published figures, not measured by this project: Ballé, Minnen, Singh, Hwang & Johnston 2018,
# "Variational image compression with a scale hyperprior" (MSE-optimised), Kodak, as tabulated in
# DESIGN.md (bpp -> PSNR dB).
BALLE2018_KODAK = {
    "name": "Ballé et al. 2018 hyperprior (MSE), published",
    "description": "Published Kodak results of Ballé et al. 2018 (ICLR), not measured by gencomp_jax.",
    "results": {
        "bpp": [0.1152, 0.1857, 0.3018, 0.4690, 0.6864, 0.9669, 1.3074, 1.7275],
        "psnr-rgb": [27.11, 28.68, 30.62, 32.55, 34.58, 36.72, 38.81, 40.79],
    },
}
REFERENCES = {"balle2018": BALLE2018_KODAK}

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LABELS = {"psnr-rgb": "PSNR (RGB) [dB]", "ms-ssim": "MS-SSIM", "lpips-alex": "LPIPS (Alex) ↓",
          "lpips-vgg": "LPIPS (VGG) ↓", "fid": "FID ↓", "kid": "KID ↓"}


def plot_rd(results: Sequence[Mapping[str, Any]], out_path, *, metrics: Sequence[str] | None = None,
            reference: str | None = None, title: str | None = None) -> pathlib.Path:
    """Writes an RD(P) figure with one panel per metric; returns the path.

    results: results dicts (results.load_results); several dicts with the same name are one method.
    metrics: panels to draw (default: every quality/realism metric present, see results.metric_keys).
    reference: None or a key of REFERENCES (e.g. "balle2018").
    """
    # A bare Figure (no pyplot state, no backend switch): safe in scripts, servers and notebooks.
    import matplotlib
    from matplotlib.figure import Figure

    results = [results_lib.validate_results(r) for r in results]
    if not results:
        raise ValueError("plot_rd needs at least one results file")
    if reference is not None and reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; available: {sorted(REFERENCES)}")
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
    styles = {name: (colors[i % len(colors)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(curves)}

    ncols = min(len(panels), 3)
    nrows = (len(panels) + ncols - 1) // ncols
    fig = Figure(figsize=(5.0 * ncols, 4.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, metric in zip(axes.flat, panels):
        for name, res in curves.items():
            if metric not in res["results"]:
                continue
            color, marker = styles[name]
            pts = sorted(zip(res["results"]["bpp"], res["results"][metric]))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=name)
        ref = REFERENCES.get(reference) if reference else None
        if ref is not None and metric in ref["results"]:
            ax.plot(ref["results"]["bpp"], ref["results"][metric], linestyle="--", marker="x", color="0.4",
                    label=ref["name"])
        ax.set_xlabel("bpp")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    return out_path
