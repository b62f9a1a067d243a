"""Conditional diffusion decoders (CDC, HFD) against the NTC they build on: quality with real files, decode time
versus sampling steps, preview time, training speed.

    .venv/bin/python benchmarks/generative_decoders.py --ntc runs/ntc --hfd runs/hfd --cdc runs/cdc \
        [--crop 128] [--images 24] [--steps 1,5,20] [--skip_quality] [--out benchmarks/results/generative_decoders.json]

Quality: the centre crop (--crop) of each Kodak image (--images of them), evaluated with
gencomp_jax.eval.evaluate_codec (real files: bpp from the bytes, bpp_est from the model), at realism
0, 0.5, 1 for CDC and HFD; PSNR, LPIPS-alex, and KID/FD on VGG16 features (the Inception weights of
FID need a download; these are named kid-vgg16 / fd-vgg16) over the crops' 64-px patches (grid + shifted grid).
Timing: one full Kodak image (kodim01, 512x768) decoded at realism 1 with each number of sampling steps
(jit compilation excluded: one untimed decode first), the HFD preview (stage 1 only), and the NTC decoder.
Training speed: the steps/s the training loop logged in each workdir (metrics.jsonl).
Writes the JSON (with the CPU model and the load average: on a shared machine compare only back to back).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402

from _machine import machine_info  # noqa: E402
from gencomp_jax.eval.evaluate import evaluate_codec  # noqa: E402
from gencomp_jax.eval.loading import load_codec, load_eval_set  # noqa: E402


def _centre_crop(image, size):
    h, w, _ = image.shape
    i, j = (h - size) // 2, (w - size) // 2
    return image[i:i + size, j:j + size]


def _train_speed(workdir) -> dict:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split", "train") == "train" and "steps_per_sec" in r]
    if not rows:
        return {}
    sps = [r["steps_per_sec"] for r in rows[1:]] or [rows[0]["steps_per_sec"]]
    return {"steps_per_sec_median": float(np.median(sps)), "last_step": int(rows[-1]["step"]),
            "last_train_metrics": {k: v for k, v in rows[-1].items() if isinstance(v, float)}}


def _time(fn, repeats=1) -> float:
    fn()  # compile / warm
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ntc", required=True)
    ap.add_argument("--hfd", default="")
    ap.add_argument("--cdc", default="")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--steps", default="1,5,20")
    ap.add_argument("--skip_quality", action="store_true")
    ap.add_argument("--skip_timing", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "generative_decoders.json"))
    args = ap.parse_args()

    codecs = {"ntc": load_codec(args.ntc)}
    if args.hfd:
        codecs["hfd"] = load_codec(args.hfd)
    if args.cdc:
        codecs["cdc"] = load_codec(args.cdc)
    workdirs = {"ntc": args.ntc, "hfd": args.hfd, "cdc": args.cdc}
    out = {"machine": machine_info(), "load_average": os.getloadavg(), "workdirs": workdirs,
           "train": {k: _train_speed(v) for k, v in workdirs.items() if v}, "quality": {}, "timing": {}}

    kodak = load_eval_set("kodak", limit=args.images)
    if not args.skip_quality:
        crops = [(n, _centre_crop(im, args.crop)) for n, im in kodak]
        realism = {"features": "vgg16", "patch_size": args.crop // 2}
        for name, codec in codecs.items():
            opts = None if name == "ntc" else {"realism": [0.0, 0.5, 1.0]}
            res = evaluate_codec(codec, crops, name=f"{name}-runlocal", metrics=("psnr-rgb", "lpips-alex"),
                                 realism=realism, options=opts, progress=False)
            out["quality"][name] = {"rate_points": res["rate_points"],
                                    **{k: v for k, v in res["results"].items()}}
            print(name, json.dumps(out["quality"][name]), flush=True)

    if not args.skip_timing:
        name, image = kodak[0]
        for cname, codec in codecs.items():
            data = codec.compress(image)
            t = {"image": name, "shape": list(image.shape), "bytes": len(data)}
            if cname == "ntc":
                t["decode_s"] = _time(lambda: codec.decompress(data))
            else:
                if cname == "hfd":
                    t["preview_s"] = _time(lambda: codec.decompress(data, preview=True))
                t["realism0_s"] = _time(lambda: codec.decompress(data, realism=0.0))
                t["decode_s_by_steps"] = {}
                for k in (int(s) for s in args.steps.split(",")):
                    t["decode_s_by_steps"][k] = _time(lambda: codec.decompress(data, realism=1.0, sampling_steps=k))
                    print(cname, k, t["decode_s_by_steps"][k], flush=True)
            t["encode_s"] = _time(lambda: codec.compress(image))
            out["timing"][cname] = t
            print(cname, json.dumps(t), flush=True)

    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
