"""Short runlocal VDM training run: held-out bits/dim over steps (not a test; numbers for BENCHMARKS.md).

    .venv/bin/python benchmarks/diffusion_train_curve.py [--steps 400] [--eval_every 50] [--config vdm]

Trains configs/<config>.py:runlocal with the shared loop (gencomp_jax.train.train_and_evaluate) in a temp
workdir, reads metrics.jsonl and writes benchmarks/results/diffusion_train_curve_<config>.json.
"""

import argparse
import json
import os
import pathlib
from _machine import machine_info  # benchmarks/ is sys.path[0]: the one "which CPU" helper
import tempfile
import time

import jax

from gencomp_jax.train import train_and_evaluate
from gencomp_jax.config_utils import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--eval_every", type=int, default=50)
    ap.add_argument("--config", default="vdm")
    a = ap.parse_args()
    config = load_config(f"{a.config}:runlocal,steps={a.steps}")
    config.train.eval_every = a.eval_every
    config.train.progress_bar = False
    t0 = time.time()
    with tempfile.TemporaryDirectory() as wd:
        final = train_and_evaluate(config, wd)
        lines = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
    curve = [{"step": l["step"], "bits_per_dim": l.get("bits_per_dim"), "fm_loss": l.get("fm_loss")}
             for l in lines if l["split"] == "eval"]
    train = [{"step": l["step"], "bits_per_dim": l.get("bits_per_dim"), "fm_loss": l.get("fm_loss")}
             for l in lines if l["split"] == "train"]
    out = {"config": f"configs/{a.config}.py:runlocal", "steps": a.steps, "wall_s": time.time() - t0,
           "heldout_curve": curve, "train_curve": train, "steps_per_sec": final.get("steps_per_sec"),
           "machine": machine_info()}
    print(f"{'step':>6} {'held-out bpd':>13} {'fm_loss':>9}")
    for c in curve:
        print(f"{c['step']:>6} {c['bits_per_dim'] if c['bits_per_dim'] is not None else float('nan'):>13.4f} "
              f"{c['fm_loss'] if c['fm_loss'] is not None else float('nan'):>9.4f}")
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    path = ROOT / "benchmarks" / "results" / f"diffusion_train_curve_{a.config}.json"
    path.write_text(json.dumps(out, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
