"""NTC (scale hyperprior) benchmark: training speed, coding speed, file-size overhead, peak memory.

    .venv/bin/python benchmarks/ntc.py [--steps 30] [--train_steps 300] [--images 24] [--checkpoint W]
        [--method hyperprior|mean_scale]

Measures, for N=128, M=192 on 64x64 crops, batch 8 (CompressAI's bmshj2018-hyperprior setting, or
mbt2018-mean with --method mean_scale):
  * the real training step (gencomp_jax.train.loop.make_train_step: Adam + clipping + EMA, donated
    state), and a plain jit(value_and_grad) + optax.adam step, in ms/step and steps/s;
  * up-sampling variants of one 5x5 stride-2 layer at 8x32x32x128 (fwd+bwd): SubpixelConv versus
    lax.conv_transpose, to show why the former is used;
  * compress / decompress seconds per Kodak image and real bits / estimated bits, for a checkpoint
    (--checkpoint) or else the same model after --train_steps quick steps on skimage photos;
  * peak RSS (resource.getrusage).
Writes benchmarks/results/ntc.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from _machine import machine_info  # benchmarks/ is sys.path[0]: the one "which CPU" helper
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencomp_jax.codecs import ntc  # noqa: E402
from gencomp_jax.nn.layers import SubpixelConv  # noqa: E402
from _ntc_steps import random_crops, train_step  # noqa: E402  (benchmarks' own step and crops)

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _config(method="hyperprior"):
    from gencomp_jax.config_utils import load_config

    c = load_config(method)
    c.data.crop_size, c.data.batch_size = 64, 8
    return c


def _time(fn, n, warmup=2):
    """Median seconds per call (per-call timings; robust to load spikes on a shared machine)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    cpu0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    _time.last_min = min(ts)
    # CPU seconds per call over all threads: on a shared (loaded) machine a proxy for the wall time
    # on an idle one (about cpu / num_cores when the step parallelises well).
    _time.last_cpu = (time.process_time() - cpu0) / n
    return float(np.median(ts))


def _batches(seed, n, crop=64, batch=8):
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in _PHOTOS]
    rng = np.random.default_rng(seed)
    while True:
        yield random_crops(photos, rng, batch, crop)


def bench_train(config, steps):
    method = ntc.make_method(config)
    it = _batches(0, steps)
    res = {}
    # (a) the real training loop's step
    try:
        from gencomp_jax.train import loop, optim
        from gencomp_jax.train import mesh as mesh_lib
        mesh = mesh_lib.make_mesh(config.mesh)
        tx, schedule = optim.make_optimizer(config.optim, int(config.train.num_steps))
        state, shardings = loop.init_state(method, config, mesh, tx=tx)
        step = loop.make_train_step(method, config, mesh, shardings, tx=tx, schedule=schedule)
        batch = {"image": jnp.asarray(next(it))}
        holder = {"state": state}

        def run():
            holder["state"], m = step(holder["state"], batch)
            return m["loss"]

        t0 = time.perf_counter()
        jax.block_until_ready(run())
        res["train_loop_compile_s"] = time.perf_counter() - t0
        res["train_loop_ms_per_step"] = 1e3 * _time(run, steps)
        res["train_loop_ms_per_step_min"] = 1e3 * _time.last_min
        res["train_loop_cpu_ms_per_step"] = 1e3 * _time.last_cpu
        res["train_loop_steps_per_s"] = 1e3 / res["train_loop_ms_per_step"]
        res["load_avg_1min"] = os.getloadavg()[0]
    except Exception as e:  # noqa: BLE001  (report, continue with the plain step)
        res["train_loop_error"] = repr(e)
    # (b) plain jit(value_and_grad) + optax.adam
    tx = optax.adam(1e-4)
    x = jnp.asarray(next(it), jnp.float32) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": x})
    init, plain = train_step(method, tx)
    opt = init(params)
    holder = {"p": params, "o": opt, "i": 0}

    def run_plain():
        holder["i"] += 1
        holder["p"], holder["o"], m = plain(holder["p"], holder["o"], x, jax.random.PRNGKey(holder["i"]))
        return m["loss"]

    res["plain_ms_per_step"] = 1e3 * _time(run_plain, steps)
    res["plain_ms_per_step_min"] = 1e3 * _time.last_min
    res["plain_cpu_ms_per_step"] = 1e3 * _time.last_cpu
    res["plain_steps_per_s"] = 1e3 / res["plain_ms_per_step"]
    res["num_params"] = int(sum(a.size for a in jax.tree_util.tree_leaves(params)))
    return res


def bench_upsampling(n=5, with_transpose=False):
    x = jnp.ones((8, 32, 32, 128))
    key = jax.random.PRNGKey(0)
    sub = SubpixelConv(128)
    p = sub.init(key, x)
    k5 = jax.random.normal(key, (5, 5, 128, 128)) * 0.01

    f_sub = jax.jit(jax.grad(lambda p, x: jnp.sum(sub.apply(p, x) ** 2), argnums=(0, 1)))
    f_tr = jax.jit(jax.grad(lambda k, x: jnp.sum(jax.lax.conv_transpose(
        x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2), argnums=(0, 1)))
    out = {"subpixel_fwd_bwd_ms": 1e3 * _time(lambda: f_sub(p, x), n)}
    if with_transpose:  # slow (about a minute): the reason SubpixelConv exists
        out["conv_transpose_fwd_bwd_ms"] = 1e3 * _time(lambda: f_tr(k5, x), 1, warmup=1)
    return out


def quick_train(config, steps):
    method = ntc.make_method(config)
    tx = optax.adam(1e-3)
    it = _batches(1, steps)
    x = jnp.asarray(next(it), jnp.float32) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": x})
    init, step = train_step(method, tx)
    opt = init(params)
    for i in range(steps):
        x = jnp.asarray(next(it), jnp.float32) / 127.5 - 1
        params, opt, _ = step(params, opt, x, jax.random.PRNGKey(i))
    return params


def bench_codec(config, params, num_images):
    from gencomp_jax.data import load_eval_set

    codec = ntc.make_codec(config, params)
    images = load_eval_set("kodak", limit=num_images)
    codec.decompress(codec.compress(images[0][1]))  # compile both shapes
    codec.decompress(codec.compress(np.ascontiguousarray(np.swapaxes(images[0][1], 0, 1))))
    enc, dec, ratios, bpp, exact = [], [], [], [], True
    enc_cpu, dec_cpu = [], []
    for name, img in images:
        t, c = time.perf_counter(), time.process_time()
        data = codec.compress(img)
        enc.append(time.perf_counter() - t)
        enc_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        rec = codec.decompress(data)
        dec.append(time.perf_counter() - t)
        dec_cpu.append(time.process_time() - c)
        est = codec.estimate_bits(img)
        ratios.append(8 * len(data) / est)
        bpp.append(8 * len(data) / (img.shape[0] * img.shape[1]))
        exact &= rec.shape == img.shape
    return {"images": len(images), "compress_s_mean": float(np.mean(enc)),
            "decompress_s_mean": float(np.mean(dec)), "compress_cpu_s_mean": float(np.mean(enc_cpu)),
            "decompress_cpu_s_mean": float(np.mean(dec_cpu)), "load_avg_1min": os.getloadavg()[0],
            "real_over_est_bits_mean": float(np.mean(ratios)),
            "real_over_est_bits_max": float(np.max(ratios)), "bpp_mean": float(np.mean(bpp))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--train_steps", type=int, default=200, help="quick training before coding")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--compare_transpose", action="store_true",
                    help="also time lax.conv_transpose fwd+bwd (slow on XLA:CPU)")
    ap.add_argument("--skip_codec", action="store_true", help="only the training-speed part")
    ap.add_argument("--checkpoint", default="", help="workdir of a trained hyperprior (optional)")
    ap.add_argument("--method", default="hyperprior", choices=["hyperprior", "mean_scale"])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ntc.json"))
    args = ap.parse_args()

    config = _config(args.method)
    result = {"machine": {**machine_info(), "load_avg_at_start": os.getloadavg(),
                          "jax": jax.__version__},
              "setting": {"method": config.method, "N": config.model.N, "M": config.model.M, "crop": 64, "batch": 8}}
    result["train"] = bench_train(config, args.steps)
    result["upsampling_8x32x32x128"] = bench_upsampling(with_transpose=args.compare_transpose)
    if args.skip_codec:
        print(json.dumps(result, indent=1))
        return
    if args.checkpoint:
        from gencomp_jax.train.checkpoint import load_params
        config, params = load_params(args.checkpoint)
        result["codec_model"] = f"checkpoint {args.checkpoint}"
    else:
        params = quick_train(config, args.train_steps)
        result["codec_model"] = f"{config.method} N=128,M=192 after {args.train_steps} quick Adam steps (lr 1e-3)"
    result["codec"] = bench_codec(config, params, args.images)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["machine"]["load_avg_at_end"] = os.getloadavg()

    tr, co = result["train"], result["codec"]
    print(f"{'metric':40s} value")
    for k, v in [("train loop ms/step median (N=128,M=192)", tr.get("train_loop_ms_per_step")),
                 ("train loop ms/step min", tr.get("train_loop_ms_per_step_min")),
                 ("train loop CPU ms/step (all threads)", tr.get("train_loop_cpu_ms_per_step")),
                 ("plain jit(vg)+adam ms/step", tr["plain_ms_per_step"]),
                 ("SubpixelConv fwd+bwd ms", result["upsampling_8x32x32x128"]["subpixel_fwd_bwd_ms"]),
                 ("conv_transpose fwd+bwd ms",
                  result["upsampling_8x32x32x128"].get("conv_transpose_fwd_bwd_ms")),
                 ("train: load average (1 min)", tr.get("load_avg_1min")),
                 ("compress s / Kodak image", co["compress_s_mean"]),
                 ("decompress s / Kodak image", co["decompress_s_mean"]),
                 ("compress CPU s / Kodak image", co["compress_cpu_s_mean"]),
                 ("decompress CPU s / Kodak image", co["decompress_cpu_s_mean"]),
                 ("codec: load average (1 min)", co["load_avg_1min"]),
                 ("real/estimated bits (mean)", co["real_over_est_bits_mean"]),
                 ("real/estimated bits (max)", co["real_over_est_bits_max"]),
                 ("bpp (mean)", co["bpp_mean"]),
                 ("peak RSS MiB", result["peak_rss_mib"])]:
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
