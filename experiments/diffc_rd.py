"""DiffC progressive RD curve with real files, next to "ideal DiffC" (rate = sum of KLs, exact sampling), and
optionally side by side with UQDM on the same crops.

    python experiments/diffc_rd.py --workdir runs/diffc [--dataset kodak] [--limit 4] [--crop 64]
        [--reconstruction_steps 20] [--diffc num_steps=15 --diffc end=400 ...] [--out_dir experiments/results/diffc_rd]
    python experiments/diffc_rd.py --workdir runs/vdm --uqdm_workdir runs/uqdm \\
        --dataset /work/shared/data/bsds500:val --limit 8 --out_dir experiments/results/diffc_vs_uqdm

Real files: the eval library (one file per image, each rate point decoded from its truncated prefix,
bpp from those bytes), every (segments, reconstruction) point of `codec.rate_points()`. Ideal DiffC: the
same image and seed, a chain that samples every step's q(x_s | x_t, x_0) exactly (no channel simulation)
and costs sum KL bits; evaluated after the same numbers of diffusion steps as the file's segments, with
the same three reconstructions (segments are rate-adaptive, so another image's segment k may hold other
steps: compare the two as RD curves, not point by point). A checkpoint trained as a plain VDM
(configs/vdm.py) is coded with configs/diffc.py's settings for its preset (`--diffc_preset`).
With --uqdm_workdir, the UQDM codec of that checkpoint codes the same crops (every step count and
reconstruction). Writes <out_dir>/diffc_rd.json (curves per method and reconstruction, real and ideal,
encode/decode seconds, machine), the eval library's results files (<out_dir>/diffc-files.json,
uqdm-files.json) and <out_dir>/rd.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _machine import describe, machine_info  # noqa: E402

import numpy as np  # noqa: E402


def _crops(dataset, limit, crop):
    from gencomp_jax.data import load_eval_set

    out = []
    for name, img in load_eval_set(dataset, limit=limit):
        h, w = img.shape[:2]
        out.append((name, np.ascontiguousarray(img[h // 2 - crop // 2: h // 2 + crop // 2,
                                                   w // 2 - crop // 2: w // 2 + crop // 2])))
    return out


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _load_diffc(workdir, preset, overrides):
    from gencomp_jax import registry
    from gencomp_jax.config_utils import load_config, parse_value
    from gencomp_jax.train import checkpoint

    config, params = checkpoint.load_params(pathlib.Path(workdir), ema=True)
    if config.method != "diffc":   # a plain VDM: DiffC's codec settings of the matching configs/diffc.py preset
        config.method = "diffc"
        config.model.diffc = load_config(f"diffc:{preset}").model.diffc
    for k, v in (o.split("=", 1) for o in overrides):
        config.model.diffc[k] = parse_value(v)
    return registry.make_codec(config, params)


def _curves(res, name):
    """eval results -> {reconstruction: {"steps", "bpp", "bpp_est", "psnr-rgb", "encoding_time", "decoding_time"}}"""
    curves = {}
    for i, p in enumerate(res["rate_points"]):
        c = curves.setdefault(p.get("reconstruction", "denoise"), {k: [] for k in (
            "steps", "bpp", "bpp_est", "psnr-rgb", "encoding_time", "decoding_time")})
        c["steps"].append(p["steps"])
        for k in ("bpp", "bpp_est", "psnr-rgb", "encoding_time", "decoding_time"):
            c[k].append(res["results"][k][i])
    return {f"{name} {rec}": c for rec, c in curves.items()}


def _ideal(codec, crops, reconstruction_steps):
    """Ideal DiffC at the diffusion-step counts of the first image's segments, mean over the crops."""
    data = codec.compress(crops[0][1])
    nseg = codec.num_segments(codec.full_meta())
    counts = [codec.steps_received(data, steps=k)[0] for k in range(nseg + 1)]
    ideal = {rec: {"diffusion_steps": counts, "bpp": [0.0] * len(counts), "psnr-rgb": [0.0] * len(counts)}
             for rec in ("denoise", "flow", "ancestral")}
    for _, img in crops:
        bits, recs = codec.ideal(img, at_steps=counts, reconstructions=tuple(ideal),
                                 reconstruction_steps=reconstruction_steps)
        for rec, c in ideal.items():
            for j, k in enumerate(counts):
                c["bpp"][j] += sum(bits[:k]) / img.shape[0] / img.shape[1] / len(crops)
                c["psnr-rgb"][j] += _psnr(recs[k][rec], img) / len(crops)
    return ideal


def _plot(curves, ideal, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    styles = {"denoise": "-", "flow": "--", "ancestral": ":"}
    for name, c in curves.items():
        method, rec = name.split(" ", 1)
        ax.plot(c["bpp"], c["psnr-rgb"], linestyle=styles.get(rec, "-"), marker="o" if method == "DiffC" else "s",
                color="C0" if method == "DiffC" else "C1", label=name, ms=3)
    for rec, c in ideal.items():
        ax.plot(c["bpp"], c["psnr-rgb"], styles[rec], color="C2", label=f"ideal DiffC {rec}")
    ax.set_xlabel("bpp (real files; ideal: sum of KLs)")
    ax.set_ylabel("PSNR (dB)")
    # x range of DiffC and ideal DiffC (UQDM's high-rate / lossless points are in the JSON)
    hi = max(max(c["bpp"]) for name, c in list(curves.items()) + [("ideal", c) for c in ideal.values()]
             if not name.startswith("UQDM"))
    ax.set_xlim(0, hi * 1.1)
    ax.set_ylim(5, 40)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="VDM / DiffC checkpoint (configs/vdm.py or configs/diffc.py)")
    ap.add_argument("--uqdm_workdir", default=None, help="UQDM checkpoint coded on the same crops")
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--reconstruction_steps", type=int, default=20)
    ap.add_argument("--diffc_preset", default="runlocal", help="configs/diffc.py preset for a plain VDM checkpoint")
    ap.add_argument("--diffc", action="append", default=[],
                    help="KEY=VALUE override of config.model.diffc (repeatable)")
    ap.add_argument("--out_dir", default=str(REPO / "experiments" / "results" / "diffc_rd"))
    args = ap.parse_args(argv)

    from gencomp_jax import registry
    from gencomp_jax.eval import evaluate
    from gencomp_jax.train import checkpoint

    codec = _load_diffc(args.workdir, args.diffc_preset, args.diffc)
    crops = _crops(args.dataset, args.limit, args.crop)
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]) if argv is None else argv,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": describe(machine_info(jax=False)), "cores": os.cpu_count(),
           "load_average_start": os.getloadavg()[0], "workdir": args.workdir, "uqdm_workdir": args.uqdm_workdir,
           "dataset": args.dataset, "images": [n for n, _ in crops], "crop": args.crop,
           "settings": dict(codec.settings), "reconstruction_steps": args.reconstruction_steps}
    t0 = time.perf_counter()
    res = evaluate.evaluate_codec(
        codec, crops, name="diffc", description=f"DiffC, {args.workdir}, {args.dataset} centre {args.crop}px crops",
        metrics=("psnr-rgb",), options={"reconstruction_steps": [args.reconstruction_steps]},
        out_json=out_dir / "diffc-files.json", progress=False, warmup=False)
    out["diffc_evaluate_seconds"] = time.perf_counter() - t0
    curves = _curves(res, "DiffC")
    if args.uqdm_workdir:
        config, params = checkpoint.load_params(pathlib.Path(args.uqdm_workdir), ema=True)
        uqdm = registry.make_codec(config, params)
        t0 = time.perf_counter()
        ures = evaluate.evaluate_codec(
            uqdm, crops, name="uqdm", description=f"UQDM, {args.uqdm_workdir}, {args.dataset} centre crops",
            metrics=("psnr-rgb",), out_json=out_dir / "uqdm-files.json", progress=False, warmup=False)
        out["uqdm_evaluate_seconds"] = time.perf_counter() - t0
        curves.update(_curves(ures, "UQDM"))
    ideal = _ideal(codec, crops, args.reconstruction_steps)
    out.update(files=curves, ideal=ideal, load_average_end=os.getloadavg()[0])
    (out_dir / "diffc_rd.json").write_text(json.dumps(out, indent=1))
    _plot(curves, ideal, out_dir / "rd.png")
    for name, c in curves.items():
        print(name, "files:", [f"{b:.3f}->{p:.2f}" for b, p in zip(c["bpp"], c["psnr-rgb"])],
              f"enc {np.mean(c['encoding_time']):.2f} s, dec {np.mean(c['decoding_time']):.2f} s")
    for rec, c in ideal.items():
        print("ideal DiffC", rec, [f"{b:.3f}->{p:.2f}" for b, p in zip(c["bpp"], c["psnr-rgb"])])
    print("wrote", out_dir / "diffc_rd.json", out_dir / "rd.png")


if __name__ == "__main__":
    main()
