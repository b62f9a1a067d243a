"""Data-parallel scaling of the one training loop: steps/s and examples/s vs device count.

Each device count runs in its own subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=N
(on CPU: N virtual devices sharing the same cores, so this measures overhead, not speed-up). With
--platform gpu the subprocesses use the first N real GPUs instead (CUDA_VISIBLE_DEVICES).

  python benchmarks/scaling.py                       # CPU: 1, 2, 4, 8 forced devices
  python benchmarks/scaling.py --platform gpu --counts 1,2,4,8 --batch 64 --crop 256 --method hyperprior

Writes benchmarks/results/scaling.json.
"""

import argparse
import json
import os
import pathlib
from _machine import machine_info  # benchmarks/ is sys.path[0]: the one "which CPU" helper
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, pathlib
sys.path.insert(0, {tests!r}); sys.path.insert(0, {repo!r})
import jax, numpy as np
import toymethod
from gencomp_jax.train import train_and_evaluate
from gencomp_jax.train.logging import read_metrics
args = json.loads(sys.argv[1])
if args["method"] == "toy":
    method = toymethod.ToyAutoencoder(ch=32)
    c = toymethod.toy_config()
else:
    from gencomp_jax import registry
    from gencomp_jax.config_utils import load_config
    c = load_config(args["method"] + ":" + (args["preset"] or "")); method = None
c.data.batch_size, c.data.crop_size = args["batch"], args["crop"]
c.train.num_steps, c.train.log_every, c.train.checkpoint_every = args["warmup"] + args["steps"], args["warmup"], 0
c.train.progress_bar, c.data.eval_source = False, ""
if method is None:
    method = registry.make_method(c)
    class LossOnly:
        def __init__(s, m): s.init, s.loss = m.init, m.loss
    method = LossOnly(method)
it = toymethod.ToyIterator(batch_size=c.data.batch_size, crop=c.data.crop_size)
train_and_evaluate(c, args["workdir"], method=method, train_iterator=it)
row = read_metrics(args["workdir"], split="train")[-1]   # window after the warm-up (compile) steps
print("RESULT " + json.dumps({{"devices": jax.device_count(), "platform": jax.devices()[0].platform,
      "device_kind": jax.devices()[0].device_kind, "steps_per_sec": row["steps_per_sec"],
      "examples_per_sec": row["examples_per_sec"]}}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,2,4,8")
    ap.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--method", default="toy", help="toy (tests/train/toymethod.py) or a configs/<name>.py")
    ap.add_argument("--preset", default="runlocal")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    a = ap.parse_args()
    code = CHILD.format(tests=str(REPO / "tests" / "train"), repo=str(REPO))
    rows = []
    for n in [int(x) for x in a.counts.split(",")]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if a.platform == "cpu":
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        else:
            env.update(CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(n)))
        with tempfile.TemporaryDirectory() as wd:
            args = dict(vars(a), workdir=wd)
            out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env,
                                 capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"device count {n} failed")
        row = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
        rows.append(row)
        print(f"{row['devices']:>3} {row['platform']} devices: {row['steps_per_sec']:8.2f} steps/s "
              f"{row['examples_per_sec']:10.1f} examples/s")
    result = {"benchmark": "scaling", "method": a.method, "preset": a.preset, "global_batch": a.batch,
              "crop": a.crop, "timed_steps": a.steps, "platform": a.platform, "rows": rows,
              "machine": machine_info(jax=False),
              "note": ("forced host devices share the same CPU cores: the curve measures the "
                       "sharding/collective overhead of the loop, not a speed-up" if a.platform == "cpu" else "")}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
