"""Diffusion benchmarks: UNet train steps/s (32x32x3, batch 32) and ODE sampler throughput (images/s, 100 steps).

    .venv/bin/python benchmarks/diffusion.py [--repeats 3]

Networks: the multi-resolution UNet at ~2.5 M parameters (attention only at <= 16x16) and the UQDM reference's
single-resolution VDMUNet presets (tiny 167 K, small 2.24 M) for side-by-side comparison with the PyTorch
reference (2.5 s/step tiny, 6.3 s/step at 2.46 M on this CPU, DESIGN.md). The train step is the full VDM
ELBO loss (bits/dim) with Adam, jitted. Writes benchmarks/results/diffusion.json.
"""

import argparse
import functools
import json
import os
import pathlib
from _machine import machine_info  # benchmarks/ is sys.path[0]: the one "which CPU" helper
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gencomp_jax.data.images import to_model
from gencomp_jax.models.unet import count_params
from gencomp_jax.objectives.vdm import VDM

ROOT = pathlib.Path(__file__).resolve().parents[1]

NETS = {
    "unet_2.5M": dict(arch="unet", ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, attn_levels=(1, 2), norm_groups=8),
    "vdm_unet_tiny": dict(arch="vdm_unet", preset="tiny", double_output=False),
    "vdm_unet_small": dict(arch="vdm_unet", preset="small", double_output=False),
}


def _time(fn, repeats):
    out = fn()
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def bench(name, net, repeats, batch=32, size=32, sample_n=16, sample_steps=100):
    m = VDM(net=net, schedule="learned_linear", gamma_min=-13.3, gamma_max=5.0, prediction="eps", timesteps=0,
            sample_size=size, sampler="ode_euler", sample_steps=sample_steps, num_samples=sample_n)
    x = to_model(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    p = m.init(jax.random.PRNGKey(0), {"image": x})
    tx = optax.adam(1e-4)
    st = tx.init(p)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p, st, x, k):   # the batch is an argument (as in training), not a compile-time constant
        (l, _), g = jax.value_and_grad(lambda p: m.loss(p, {"image": x}, k, True), has_aux=True)(p)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, l

    state = [jax.tree_util.tree_map(jnp.copy, p), st]

    def run():
        state[0], state[1], l = step(state[0], state[1], x, jax.random.PRNGKey(1))
        return l
    dt = _time(run, repeats)
    ds = _time(lambda: m.sample_float(p, jax.random.PRNGKey(2), sample_n), 1)
    return {"net": name, "params": count_params(p["net"]), "train_step_s": dt, "train_steps_per_s": 1 / dt,
            "sample_images_per_s": sample_n / ds, "sample_steps": sample_steps, "sample_batch": sample_n,
            "load_avg_1min": os.getloadavg()[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nets", default=",".join(NETS))
    a = ap.parse_args()
    rows = [bench(n, NETS[n], a.repeats) for n in a.nets.split(",")]
    print(f"{'net':<16}{'params':>10}{'step s':>9}{'steps/s':>9}{'img/s (100 ODE steps)':>24}")
    for r in rows:
        print(f"{r['net']:<16}{r['params']:>10}{r['train_step_s']:>9.3f}{r['train_steps_per_s']:>9.2f}"
              f"{r['sample_images_per_s']:>24.2f}")
    out = {"benchmark": "diffusion", "batch": 32, "image": [32, 32, 3], "results": rows,
           "machine": machine_info()}
    path = ROOT / "benchmarks" / "results" / "diffusion.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
