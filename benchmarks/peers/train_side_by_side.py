"""Side-by-side training: our scale hyperprior and CompressAI's, same crops, steps, optimizer, λ; Kodak RD.

    nice -n 10 .venv/bin/python benchmarks/peers/train_side_by_side.py --steps 2000 \
        --lmbdas 0.0067,0.025 [--N 64 --M 96] [--init same|independent] [--workdir /tmp/side_by_side]

1. The crop stream, written once to `<workdir>/crops_s<seed>_<n>x<crop>.npy` (uint8 [steps * batch,
   crop, crop, 3]): random crops of the 200 BSDS500 train photos (../shared/data/bsds500/train), half
   mirrored, numpy seed --seed. Step i of both sides trains on crops[i * batch:(i + 1) * batch].
2. Per λ, back to back on this machine: CompressAI (benchmarks/peers/compressai_train.py in the peer venv
   --peer_python: ScaleHyperprior(N, M), its examples/train.py loop) then ours (NTC "hyperprior" with
   model.compat = "compressai": CompressAI's convolution geometry, [0, 1] images inside the transforms,
   its 4-layer entropy bottleneck with stored medians). The loop is the same on both sides: loss
   bpp + λ 255² MSE, global-norm clipping at --clip, Adam(--lr) on every parameter but the medians,
   Adam(--aux_lr) on the medians with CompressAI's aux loss (benchmarks/_ntc_steps.train_step).
   --init same (default): ours starts from CompressAI's initial state dict, converted
   (eval/pretrained.convert_compressai_state); --init independent: our own init (seed --seed).
   The training noise (U(-1/2, 1/2) on y and z) is drawn independently on each side, or, with --common_noise,
   read by both sides from one file (`<workdir>/noise_s<seed>_...npy`, float32 [steps * batch, y + z elements]
   in our NHWC order; CompressAI's side permutes it to its NCHW / EntropyBottleneck layouts): common random
   numbers, so the two runs differ only by the implementations (and float rounding), not by the noise draw
   whose spread (1.1 dB for CompressAI at 2,000 steps) hid any gap the size of the must-hold.
3. Kodak (24 images): CompressAI codes with its own compress/decompress (rANS bitstreams, bytes of the
   y and z strings); ours through eval/evaluate.evaluate_codec (real container files, header included).
   PSNR of the 8-bit reconstruction on both sides.
4. BD-PSNR of ours against CompressAI over the overlapping bpp range (gencomp_jax/eval/bd.bd_quality,
   PCHIP: with two λ the straight line in log bpp), the per-λ differences, and each side's steps/s with
   the load averages.

Writes `benchmarks/results/side_by_side.json` (--out) and prints a table; `--summarize JSON` prints the
table (and recomputes the BD-PSNR) of a finished run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402

from _machine import machine_info  # noqa: E402
from _ntc_steps import random_crops, train_step  # noqa: E402

from gencomp_jax.codecs import ntc  # noqa: E402
from gencomp_jax.data.images import read_image  # noqa: E402
from gencomp_jax.data.sources import load_kodak  # noqa: E402
from gencomp_jax.eval import bd, pretrained  # noqa: E402
from gencomp_jax.eval.evaluate import evaluate_codec  # noqa: E402
from gencomp_jax.metrics.inception import load_torch_checkpoint  # noqa: E402
from gencomp_jax.train import optim  # noqa: E402

BSDS_TRAIN = REPO.parent / "shared" / "data" / "bsds500" / "train"
PEER_PYTHON = REPO.parent / "peers" / ".venv_cai" / "bin" / "python"


def write_crops(path: pathlib.Path, num: int, crop: int, seed: int) -> pathlib.Path:
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (num, crop, crop, 3):
            return path
    files = sorted(BSDS_TRAIN.glob("*.jpg"))
    if len(files) != 200:
        raise SystemExit(f"{BSDS_TRAIN}: expected the 200 BSDS500 train photos, found {len(files)}.")
    images = [read_image(f) for f in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, random_crops(images, np.random.default_rng(seed), num, crop, flip=True))
    tmp.rename(path)
    return path


def noise_shapes(crop: int, n: int, m: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(y, z) shapes of one crop's latents, NHWC without the batch axis: y at 1/16, z at 1/64 resolution."""
    return (crop // 16, crop // 16, m), (crop // 64, crop // 64, n)


def write_noise(path: pathlib.Path, num: int, crop: int, n: int, m: int, seed: int) -> pathlib.Path:
    """U(-1/2, 1/2) float32 [num, y + z elements] (numpy PCG64, seed): the training noise of --common_noise."""
    (ys, zs) = noise_shapes(crop, n, m)
    width = int(np.prod(ys) + np.prod(zs))
    if path.exists() and np.load(path, mmap_mode="r").shape == (num, width):
        return path
    rng = np.random.default_rng([seed, 7919])
    arr = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(num, width))
    for i in range(0, num, 4096):
        k = min(4096, num - i)
        arr[i:i + k] = rng.random((k, width), dtype=np.float32) - np.float32(0.5)
    arr.flush()
    del arr
    path.with_suffix(".tmp.npy").rename(path)
    return path


class _CommonNoiseJax:
    """Stands in for `jax` inside gencomp_jax/models/hyperprior.py while --common_noise trains ours: the model's
    `rng` is the pair (u_y, u_z) of this step's noise, `jax.random.split` hands them out as (ky, kz) and
    `jax.random.uniform(k, shape, ...)` returns k (its shape checked). Everything else is jax's."""

    def __init__(self):
        import types

        def uniform(k, shape, dtype=None, minval=None, maxval=None):
            if tuple(k.shape) != tuple(shape):
                raise AssertionError(f"common noise of shape {k.shape} where the model draws {shape}")
            return k

        self.random = types.SimpleNamespace(split=lambda r: (r[0], r[1]), uniform=uniform)

    def __getattr__(self, name):
        return getattr(jax, name)


def run_compressai(args, crops_path, lmbda, tag) -> dict:
    cmd = [str(args.peer_python), str(REPO / "benchmarks" / "peers" / "compressai_train.py"),
           f"--crops={crops_path}", f"--lmbda={lmbda}", f"--steps={args.steps}", f"--batch={args.batch}",
           f"--N={args.N}", f"--M={args.M}", f"--lr={args.lr}", f"--aux_lr={args.aux_lr}", f"--clip={args.clip}",
           f"--seed={args.seed}", f"--threads={args.threads}", f"--kodak={args.kodak}",
           f"--out_dir={args.workdir}", f"--tag={tag}", f"--crop={args.crop}"]
    if args.noise_path is not None:
        cmd.append(f"--noise_file={args.noise_path}")
    subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads((args.workdir / f"{tag}_compressai.json").read_text())


def _noise_suffix(args) -> str:
    if args.noise_path is not None:
        return "_common"
    return "" if args.noise_seed is None else f"_noise{args.noise_seed}"


def _config(args, lmbda):
    c = pretrained.compressai_config("hyperprior", args.N, args.M)
    c.model.lmbda = float(lmbda)
    return c


def run_ours(args, crops_path, lmbda, tag) -> dict:
    config = _config(args, lmbda)
    method = ntc.make_method(config)
    crops = np.load(crops_path, mmap_mode="r")
    b = args.batch

    def batch(i):
        return jnp.asarray(crops[i * b:(i + 1) * b], jnp.float32) / 127.5 - 1.0  # data/images "edge" grid

    if args.init == "same":
        _, n, m, params = pretrained.convert_compressai_state(
            load_torch_checkpoint(str(args.workdir / f"{tag}_init.pth")))
        assert (n, m) == (args.N, args.M)
        params = jax.tree_util.tree_map(jnp.asarray, params)
    else:
        params = method.init(jax.random.PRNGKey(args.seed), {"image": batch(0)})
    optim_cfg = ml_collections.ConfigDict(dict(learning_rate=args.lr, warmup_steps=0, decay="constant",
                                               end_factor=1.0, weight_decay=0.0, b1=0.9, b2=0.999,
                                               clip_norm=args.clip, optimizer="adam"))
    tx, _ = optim.make_optimizer(optim_cfg, args.steps)  # the library's optimizer (clip + Adam)
    key = jax.random.PRNGKey(args.seed + 1 if args.noise_seed is None else args.noise_seed)
    if args.noise_path is not None:
        from gencomp_jax.models import hyperprior

        hyperprior.jax = _CommonNoiseJax()  # this process trains nothing else
        noise = np.load(args.noise_path, mmap_mode="r")
        ys, zs = noise_shapes(args.crop, args.N, args.M)

        def noise_of(i):
            u = jnp.asarray(noise[i * b:(i + 1) * b])
            return u[:, :int(np.prod(ys))].reshape(b, *ys), u[:, int(np.prod(ys)):].reshape(b, *zs)
    else:
        def noise_of(i):
            return jax.random.fold_in(key, i)
    init, step = train_step(method, tx, aux_tx=optax.adam(args.aux_lr))
    opt = init(params)
    t0 = time.perf_counter()
    params, opt, m0 = step(params, opt, batch(0), noise_of(0))  # includes the compile
    jax.block_until_ready(params)
    compile_s = time.perf_counter() - t0
    curve = [{"step": 0, **{k: float(v) for k, v in m0.items() if k in ("loss", "bpp", "mse", "aux")}}]
    wall, cpu = [], []
    load0 = os.getloadavg()
    for i in range(1, args.steps):
        x = batch(i)
        t, c = time.perf_counter(), time.process_time()
        params, opt, met = step(params, opt, x, noise_of(i))
        jax.block_until_ready(met["loss"])
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if i % args.log_every == 0 or i == args.steps - 1:
            row = {"step": i, **{k: float(v) for k, v in met.items() if k in ("loss", "bpp", "mse", "aux")}}
            if not np.isfinite(row["loss"]):
                raise SystemExit(f"our loss is not finite at step {i}: {row}")
            curve.append(row)
            print(f"ours step {i}: {row} ({np.sum(wall):.0f} s)", file=sys.stderr, flush=True)
    train = {"curve": curve, "steps_per_s": len(wall) / float(np.sum(wall)), "median_step_s": float(np.median(wall)),
             "cpu_s_per_step": float(np.mean(cpu)), "compile_and_first_step_s": compile_s,
             "loadavg_start_end": [load0, os.getloadavg()]}
    params = jax.device_get(params)
    codec = ntc.make_codec(config, params)
    res = evaluate_codec(codec, load_kodak(limit=args.kodak), name=f"ours-{tag}", metrics=("psnr-rgb",),
                         out_json=args.workdir / f"{tag}_ours{_noise_suffix(args)}.json", progress=False)
    per_image = [{"name": r["image"], "bpp": r["bpp"], "psnr": r["psnr-rgb"]}
                 for r in res["per_image"]]
    return {"side": "ours", "jax": jax.__version__, "train": train,
            "kodak": {"per_image": per_image, "bpp": float(np.mean([r["bpp"] for r in per_image])),
                      "psnr": float(np.mean([r["psnr"] for r in per_image]))}}


def summarize(report: dict) -> None:
    """Adds the BD-PSNR (ours vs CompressAI, dB) to `report` and prints the per-λ table."""
    pts = report["points"]
    side = {k: ([q[k]["kodak"]["bpp"] for q in pts], [q[k]["kodak"]["psnr"] for q in pts])
            for k in ("compressai", "ours")}
    if len(pts) >= 2:
        try:
            report["bd_psnr_ours_vs_compressai_db"] = bd.bd_quality(*side["compressai"], *side["ours"])
        except ValueError as e:  # e.g. curves that do not overlap in bpp: say so, keep the table
            report["bd_psnr_error"] = str(e)
            print(f"BD-PSNR undefined: {e}")
    print(f"{'λ':>8} {'CAI bpp':>8} {'CAI dB':>8} {'our bpp':>8} {'our dB':>8} {'CAI st/s':>9} {'our st/s':>9}")
    for q in pts:
        c, o = q["compressai"], q["ours"]
        print(f"{q['lmbda']:>8g} {c['kodak']['bpp']:>8.4f} {c['kodak']['psnr']:>8.3f} {o['kodak']['bpp']:>8.4f} "
              f"{o['kodak']['psnr']:>8.3f} {c['train']['steps_per_s']:>9.2f} {o['train']['steps_per_s']:>9.2f}")
    if "bd_psnr_ours_vs_compressai_db" in report:
        print(f"BD-PSNR ours vs CompressAI: {report['bd_psnr_ours_vs_compressai_db']:+.3f} dB")


def cross_evaluate(args, lmbda, tag) -> dict:
    """CompressAI's trained state dict, converted, coded by our codec: separates the evaluation pipelines
    (which should agree: tests/eval/test_pretrained_compressai.py) from the two trainings."""
    _, _, _, params = pretrained.convert_compressai_state(
        load_torch_checkpoint(str(args.workdir / f"{tag}_trained.pth")))
    codec = ntc.make_codec(_config(args, lmbda), params)
    res = evaluate_codec(codec, load_kodak(limit=args.kodak), name=f"compressai-weights-{tag}",
                         metrics=("psnr-rgb",), progress=False)
    return {"bpp": float(res["results"]["bpp"][0]), "psnr": float(res["results"]["psnr-rgb"][0])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lmbdas", default="0.0067,0.025")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--lr", type=float, default=3e-4,
                   help="Adam lr of the main parameters (CompressAI examples/train.py's -lr; its default 1e-4 "
                        "is for long runs, 3e-4 is the recipe of ../shared/reference/compressai's model)")
    p.add_argument("--aux_lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise_seed", type=int, default=None,
                   help="seed of our training noise (default seed + 1); with --sides ours, a second draw of ours "
                        "against the same CompressAI run measures the run-to-run spread")
    p.add_argument("--common_noise", action="store_true",
                   help="both sides read their training noise from one file (common random numbers; docstring)")
    p.add_argument("--sides", choices=("both", "ours"), default="both",
                   help="ours: reuse the CompressAI results already in --workdir (same tag)")
    p.add_argument("--init", choices=("same", "independent"), default="same")
    p.add_argument("--threads", type=int, default=2, help="torch threads (XLA uses the process's cores)")
    p.add_argument("--kodak", type=int, default=24)
    p.add_argument("--log_every", type=int, default=100)
    p.add_argument("--peer_python", type=pathlib.Path, default=PEER_PYTHON)
    p.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/side_by_side"))
    p.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "side_by_side.json")
    p.add_argument("--summarize", type=pathlib.Path, default=None, help="print the table of a finished run's JSON")
    args = p.parse_args()
    if args.summarize is not None:
        summarize(json.loads(args.summarize.read_text()))
        return
    if not args.peer_python.exists():
        raise SystemExit(f"{args.peer_python}: no peer venv (torch 2.13 CPU + compressai 1.2.8); see "
                         "../shared/reference/PEERS.md, or pass --peer_python.")
    lmbdas = [float(v) for v in args.lmbdas.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    n = args.steps * args.batch
    crops_path = write_crops(args.workdir / f"crops_s{args.seed}_{n}x{args.crop}.npy", n, args.crop, args.seed)
    args.noise_path = None
    if args.common_noise and args.init != "same":
        raise SystemExit("--common_noise needs --init same (the patched noise also stands in for init's rng).")
    if args.common_noise:
        nseed = args.seed + 1 if args.noise_seed is None else args.noise_seed
        args.noise_path = write_noise(args.workdir / f"noise_s{nseed}_{n}x{args.crop}_N{args.N}M{args.M}.npy", n,
                                      args.crop, args.N, args.M, nseed)
    report = {"benchmark": "side_by_side_training_hyperprior", "command": " ".join(sys.argv),
              "machine": {**machine_info(), "load_avg_at_start": os.getloadavg()},
              "settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
              "crops": {"path": str(crops_path), "source": "BSDS500 train (200 photos), random crops, half mirrored"},
              "points": []}
    for lmbda in lmbdas:
        tag = f"l{lmbda:g}_s{args.steps}_N{args.N}M{args.M}" + ("_common" if args.common_noise else "")
        if args.sides == "both":
            cai = run_compressai(args, crops_path, lmbda, tag)
        else:
            cai = json.loads((args.workdir / f"{tag}_compressai.json").read_text())
        ours = run_ours(args, crops_path, lmbda, tag)
        cross = cross_evaluate(args, lmbda, tag)
        report["points"].append({"lmbda": lmbda, "compressai": cai, "ours": ours,
                                 "compressai_weights_our_codec": cross})
        print(f"λ={lmbda}: CompressAI {cai['kodak']['bpp']:.4f} bpp {cai['kodak']['psnr']:.3f} dB "
              f"{cai['train']['steps_per_s']:.2f} steps/s | ours {ours['kodak']['bpp']:.4f} bpp "
              f"{ours['kodak']['psnr']:.3f} dB {ours['train']['steps_per_s']:.2f} steps/s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # partial results survive a kill
    summarize(report)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
