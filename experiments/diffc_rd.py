"""DiffC progressive RD curve with real files, next to "ideal DiffC" (rate = sum of KLs, exact sampling).

    python experiments/diffc_rd.py --workdir runs/diffc [--dataset kodak] [--limit 4] [--crop 64]
        [--reconstruction_steps 20] [--diffc num_steps=15 --diffc end=400 ...] [--out_dir experiments/results/diffc_rd]

Real files: the eval library (one file per image, each rate point decoded from its truncated prefix,
bpp from those bytes), every (segments, reconstruction) point of `codec.rate_points()`. Ideal DiffC: the
same image and seed, a chain that samples every step's q(x_s | x_t, x_0) exactly (no channel simulation)
and costs sum KL bits; evaluated after the same numbers of diffusion steps as the file's segments, with
the same three reconstructions (segments are rate-adaptive, so another image's segment k may hold other
steps: compare the two as RD curves, not point by point). Writes <out_dir>/diffc_rd.json (curves per reconstruction, real and
ideal) and the eval library's results file <out_dir>/diffc-files.json.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--reconstruction_steps", type=int, default=20)
    ap.add_argument("--diffc", action="append", default=[],
                    help="KEY=VALUE override of the workdir's config.model.diffc (repeatable)")
    ap.add_argument("--out_dir", default=str(REPO / "experiments" / "results" / "diffc_rd"))
    args = ap.parse_args(argv)

    from gencomp_jax import registry
    from gencomp_jax.config_utils import parse_value
    from gencomp_jax.eval import evaluate
    from gencomp_jax.train import checkpoint

    config, params = checkpoint.load_params(pathlib.Path(args.workdir), ema=True)
    for k, v in (o.split("=", 1) for o in args.diffc):
        config.model.diffc[k] = parse_value(v)
    codec = registry.make_codec(config, params)
    crops = _crops(args.dataset, args.limit, args.crop)
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = evaluate.evaluate_codec(
        codec, crops, name="diffc", description=f"DiffC, {args.workdir}, {args.dataset} centre {args.crop}px crops",
        metrics=("psnr-rgb",), options={"reconstruction_steps": [args.reconstruction_steps]},
        out_json=out_dir / "diffc-files.json", progress=False, warmup=False)
    seconds = time.perf_counter() - t0
    points, r = res["rate_points"], res["results"]
    curves = {}
    for i, p in enumerate(points):
        c = curves.setdefault(p["reconstruction"], {"segments": [], "bpp": [], "bpp_est": [], "psnr-rgb": []})
        c["segments"].append(p["steps"])
        c["bpp"].append(r["bpp"][i])
        c["bpp_est"].append(r["bpp_est"][i])
        c["psnr-rgb"].append(r["psnr-rgb"][i])
    # ideal DiffC at the diffusion-step counts of the first image's segments
    data = codec.compress(crops[0][1])
    nseg = codec.num_segments(codec.full_meta())
    counts = [codec.steps_received(data, steps=k)[0] for k in range(nseg + 1)]
    ideal = {rec: {"diffusion_steps": counts, "bpp": [0.0] * len(counts), "psnr-rgb": [0.0] * len(counts)}
             for rec in ("denoise", "flow", "ancestral")}
    for _, img in crops:
        bits, recs = codec.ideal(img, at_steps=counts, reconstructions=tuple(ideal),
                                 reconstruction_steps=args.reconstruction_steps)
        for rec, c in ideal.items():
            for j, k in enumerate(counts):
                c["bpp"][j] += sum(bits[:k]) / img.shape[0] / img.shape[1] / len(crops)
                c["psnr-rgb"][j] += _psnr(recs[k][rec], img) / len(crops)
    out = {"workdir": args.workdir, "images": [n for n, _ in crops], "settings": dict(codec.settings),
           "reconstruction_steps": args.reconstruction_steps, "files": curves, "ideal": ideal,
           "encode_time": r.get("encoding_time"), "decode_time": r.get("decoding_time"),
           "evaluate_seconds": seconds}
    (out_dir / "diffc_rd.json").write_text(json.dumps(out, indent=1))
    for rec in curves:
        print(rec, "files:", [f"{b:.3f}->{p:.2f}" for b, p in zip(curves[rec]["bpp"], curves[rec]["psnr-rgb"])])
        print(rec, "ideal:", [f"{b:.3f}->{p:.2f}" for b, p in zip(ideal[rec]["bpp"], ideal[rec]["psnr-rgb"])])
    print("wrote", out_dir / "diffc_rd.json")


if __name__ == "__main__":
    main()
