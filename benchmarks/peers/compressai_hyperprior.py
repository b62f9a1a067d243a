"""Side-by-side timing of the PyTorch peer: CompressAI ``bmshj2018_hyperprior`` (N=128, M=192).

This script is NOT part of gencomp_jax and does not run with the project venv. It needs PyTorch and
CompressAI, which live in a throwaway venv OUTSIDE the repository (see benchmarks/peers/README.md):

    python3 -m venv /tmp/peervenv
    /tmp/peervenv/bin/pip install torch==2.13.0 compressai
    # (on this machine torch 2.13.0 resolves to the local CPU wheel torch-2.13.0+cpu; if pip wants a
    #  different torch for compressai: pin torch==2.13.0 first, then
    #  `pip install --no-deps compressai pytorch-msssim scipy numpy matplotlib torchvision==0.28.0`)

Run from the repository root (a few minutes on a quiet 2-core machine; much longer under load):

    /tmp/peervenv/bin/python benchmarks/peers/compressai_hyperprior.py

Options: --steps (timed training steps, default 40), --warmup (default 5), --images (Kodak images for
the codec timing, default 4), --threads (default 2), --out (default
benchmarks/results/peer_compressai.json).

What is measured (each phase in its own child process, so each peak RSS belongs to one phase):
  train: one step = forward, RateDistortionLoss (lambda=0.0067, CompressAI's MSE lambda for quality 3),
         backward, clip_grad_norm_(1.0), Adam step on the main parameters, then aux_loss() backward and
         an Adam step on the ``.quantiles`` parameters -- i.e. CompressAI's examples/train.py loop.
         64x64 random crops of Kodak images, batch 8, float32 in [0, 1]. Mean/median/std/min over
         --steps steps after --warmup untimed steps.
  codec: net.eval(); net.update(force=True); under torch.no_grad(), seconds for net.compress(x) and
         net.decompress(strings, shape) per Kodak image (padded to a multiple of 64, edge padding),
         after one untimed warm-up round trip. Includes the rANS coder (CompressAI's C++ "ans").
Weights are randomly initialised (speed does not depend on the weight values; see README caveats).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KODAK = REPO / "data" / "kodak"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "peer_compressai.json"
LAMBDA_Q3 = 0.0067


def _import_torch_and_compressai(threads: int):
    """Imports torch + compressai with ``threads`` intra-op threads.

    The PyPI torchvision 0.28.0 wheel (pulled in by compressai) is built against CUDA torch; with the
    CPU torch wheel its ``_C.so`` cannot load (libc10_cuda.so missing), and torchvision's
    ``_meta_registrations`` then fails on ``register_fake("torchvision::nms")``. compressai only needs
    torchvision.transforms, so when ``_C.so`` does not load we define the two op schemas that
    torchvision registers fakes for; nothing here calls them.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    shim = False
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.submodule_search_locations:
        tv_dir = Path(list(spec.submodule_search_locations)[0])
        libs = sorted(tv_dir.glob("_C*.so"))
        try:
            if libs:
                ctypes.CDLL(str(libs[0]))  # registers torchvision ops with torch if it loads
        except OSError:
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for name in ("nms", "qnms"):
                lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _import_torch_and_compressai.keepalive = lib  # type: ignore[attr-defined]
            shim = True
    import compressai
    from compressai.zoo import bmshj2018_hyperprior

    return torch, compressai, bmshj2018_hyperprior, shim


def _load_kodak(n: int):
    import numpy as np
    from PIL import Image

    paths = sorted(KODAK.glob("kodim*.png"))[:n]
    if len(paths) < n:
        raise SystemExit(f"need {n} Kodak images in {KODAK}, found {len(paths)}")
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _stats(xs):
    import numpy as np

    a = np.asarray(xs, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def _make_net(bmshj2018_hyperprior):
    net = bmshj2018_hyperprior(quality=3, pretrained=False)
    assert (net.g_a[0].out_channels, net.g_a[-1].out_channels) == (128, 192), "expected N=128, M=192"
    return net


def phase_train(args) -> dict:
    torch, _, bmshj2018_hyperprior, shim = _import_torch_and_compressai(args.threads)
    import numpy as np
    from compressai.losses import RateDistortionLoss

    torch.manual_seed(0)
    net = _make_net(bmshj2018_hyperprior).train()
    main_params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=1e-4)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    criterion = RateDistortionLoss(lmbda=LAMBDA_Q3)

    images = [img for _, img in _load_kodak(8)]
    rng = np.random.default_rng(0)
    crop, batch = args.crop, args.batch

    def next_batch():
        out = np.empty((batch, crop, crop, 3), np.uint8)
        for i in range(batch):
            img = images[rng.integers(len(images))]
            y = rng.integers(img.shape[0] - crop + 1)
            x = rng.integers(img.shape[1] - crop + 1)
            out[i] = img[y : y + crop, x : x + crop]
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).contiguous()

    def step(x):
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = criterion(net(x), x)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_opt.step()
        return float(out["loss"].detach()), float(aux_loss.detach())

    for _ in range(args.warmup):
        step(next_batch())
    times, cpu_times, losses = [], [], []
    load_start = os.getloadavg()
    for _ in range(args.steps):
        x = next_batch()  # data preparation is not timed
        c0, t0 = time.process_time(), time.perf_counter()
        loss, _ = step(x)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        losses.append(loss)
    load_end = os.getloadavg()
    if not all(np.isfinite(losses)):
        raise SystemExit(f"non-finite training loss: {losses}")
    return {
        "train_step_s": _stats(times),
        "train_step_cpu_s": _stats(cpu_times),
        "loadavg_1_5_15_start_end": [load_start, load_end],
        "train_loss_first_last": [losses[0], losses[-1]],
        "num_params": int(sum(p.numel() for p in net.parameters())),
        "peak_rss_mib": _peak_rss_mib(),
        "torchvision_shim": shim,
    }


def phase_codec(args) -> dict:
    torch, compressai, bmshj2018_hyperprior, shim = _import_torch_and_compressai(args.threads)
    import numpy as np

    torch.manual_seed(0)
    net = _make_net(bmshj2018_hyperprior).eval()
    net.update(force=True)
    images = _load_kodak(args.images)

    def to_tensor(img):
        h, w = img.shape[:2]
        ph, pw = (-h) % 64, (-w) % 64
        padded = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return torch.from_numpy(padded).permute(2, 0, 1)[None].float().div_(255.0).contiguous()

    per_image = []
    load_start = os.getloadavg()
    with torch.no_grad():
        warm = to_tensor(images[0][1])
        enc = net.compress(warm)
        net.decompress(enc["strings"], enc["shape"])
        for name, img in images:
            x = to_tensor(img)
            c0, t0 = time.process_time(), time.perf_counter()
            enc = net.compress(x)
            c1, t1 = time.process_time(), time.perf_counter()
            dec = net.decompress(enc["strings"], enc["shape"])
            c2, t2 = time.process_time(), time.perf_counter()
            if tuple(dec["x_hat"].shape) != tuple(x.shape):
                raise SystemExit(f"decoded shape {tuple(dec['x_hat'].shape)} != {tuple(x.shape)}")
            nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
            per_image.append(
                {
                    "name": name,
                    "shape_hw": [int(img.shape[0]), int(img.shape[1])],
                    "compress_s": t1 - t0,
                    "decompress_s": t2 - t1,
                    "compress_cpu_s": c1 - c0,
                    "decompress_cpu_s": c2 - c1,
                    "bytes_random_weights": int(nbytes),
                }
            )
    return {
        "compress_s": _stats([r["compress_s"] for r in per_image]),
        "decompress_s": _stats([r["decompress_s"] for r in per_image]),
        "compress_cpu_s": _stats([r["compress_cpu_s"] for r in per_image]),
        "decompress_cpu_s": _stats([r["decompress_cpu_s"] for r in per_image]),
        "loadavg_1_5_15_start_end": [load_start, os.getloadavg()],
        "per_image": per_image,
        "entropy_coder": compressai.get_entropy_coder(),
        "peak_rss_mib": _peak_rss_mib(),
        "torchvision_shim": shim,
    }


def _wait_quiet(max_load: float, timeout: float) -> dict:
    """Blocks until the 1-minute load average is below ``max_load`` (or ``timeout`` seconds pass)."""
    t0 = time.monotonic()
    if max_load > 0:
        while os.getloadavg()[0] >= max_load and time.monotonic() - t0 < timeout:
            time.sleep(10)
    load = os.getloadavg()[0]
    return {"waited_s": round(time.monotonic() - t0, 1), "load_1min": load,
            "quiet": max_load <= 0 or load < max_load}


def machine_info(threads: int) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from _machine import machine_info as _machine_info  # the one "which CPU" helper (model, vector extensions)

    return {
        **_machine_info(jax=False),
        "torch": torch.__version__,
        "compressai": importlib.metadata.version("compressai"),
        "torch_num_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp default)"),
        "mkldnn_available": bool(torch.backends.mkldnn.is_available()),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", choices=["all", "train", "codec"], default="all")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--wait_quiet", type=float, default=0.0,
                   help="before each phase, wait until the 1-minute load average is below this (0 = don't wait)")
    p.add_argument("--wait_timeout", type=float, default=1800.0, help="seconds to wait for --wait_quiet at most")
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be >= 2")

    if args.phase != "all":  # child: print one JSON line
        fn = phase_train if args.phase == "train" else phase_codec
        print(json.dumps(fn(args)))
        return

    common = [f"--{k}={getattr(args, k)}" for k in ("steps", "warmup", "batch", "crop", "images", "threads")]
    results = {}
    waited = {}
    for phase in ("train", "codec"):
        waited[phase] = _wait_quiet(args.wait_quiet, args.wait_timeout)
        proc = subprocess.run(
            [sys.executable, __file__, f"--phase={phase}", *common],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        results[phase] = json.loads(proc.stdout.strip().splitlines()[-1])

    _import_torch_and_compressai(args.threads)
    report = {
        "benchmark": "peer_compressai_bmshj2018_hyperprior",
        "model": {"name": "bmshj2018_hyperprior", "quality": 3, "N": 128, "M": 192,
                  "weights": "random init (torch.manual_seed(0))",
                  "num_params": results["train"]["num_params"]},
        "settings": {"train_batch": args.batch, "train_crop": args.crop, "timed_steps": args.steps,
                     "warmup_steps": args.warmup, "lambda": LAMBDA_Q3, "optimizers": "Adam 1e-4 main, Adam 1e-3 aux",
                     "grad_clip": 1.0, "kodak_images": args.images, "pad_multiple": 64},
        "machine": machine_info(args.threads),
        "load_note": ("the machine is shared; wall times scale with other processes' load. "
                      "loadavg_1_5_15_start_end per phase and the process CPU seconds are recorded"),
        "waited_for_quiet": waited,
        "train": results["train"],
        "codec": results["codec"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    t, c = results["train"], results["codec"]
    print(f"CompressAI bmshj2018_hyperprior (N=128, M=192), torch {report['machine']['torch']}, "
          f"{args.threads} threads, {report['machine']['cpu_model']}")
    print(f"{'metric':<42}{'mean':>10}{'median':>10}{'std':>10}")
    rows = [
        (f"train step, {args.batch}x{args.crop}x{args.crop} + aux (ms)", t["train_step_s"], 1e3),
        ("compress per Kodak image (s)", c["compress_s"], 1.0),
        ("decompress per Kodak image (s)", c["decompress_s"], 1.0),
    ]
    for name, s, k in rows:
        print(f"{name:<42}{s['mean'] * k:>10.3f}{s['median'] * k:>10.3f}{s['std'] * k:>10.3f}")
    cpu_rows = [("  cpu s/step", t["train_step_cpu_s"]), ("  cpu s/compress", c["compress_cpu_s"]),
                ("  cpu s/decompress", c["decompress_cpu_s"])]
    for name, s in cpu_rows:
        print(f"{name:<42}{s['mean']:>10.3f}{s['median']:>10.3f}{s['std']:>10.3f}")
    print(f"load avg (1 min) train start/end {t['loadavg_1_5_15_start_end'][0][0]:.1f}/"
          f"{t['loadavg_1_5_15_start_end'][1][0]:.1f}, codec start/end "
          f"{c['loadavg_1_5_15_start_end'][0][0]:.1f}/{c['loadavg_1_5_15_start_end'][1][0]:.1f}")
    print(f"{'peak RSS train / codec (MiB)':<42}{t['peak_rss_mib']:>10.0f}{c['peak_rss_mib']:>10.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
