"""The CompressAI side of benchmarks/peers/train_side_by_side.py: train one ScaleHyperprior on a given
crop stream, then code Kodak with CompressAI's own compress/decompress (real rANS bitstreams).

Runs in the peer venv (torch 2.13 CPU + compressai 1.2.8; ../shared/reference/PEERS.md), never in the
project's venv; train_side_by_side.py starts it as a child process. CompressAI's package __init__ imports
torchvision & co. only to fill registries: tests/golden/reference_stubs.py stands in for them.

    /work/peers/.venv_cai/bin/python benchmarks/peers/compressai_train.py --crops C.npy --lmbda 0.0067 \
        --steps 2000 --N 64 --M 96 --out_dir W --tag l0.0067

The training loop is CompressAI's examples/train.py at the given sizes: RateDistortionLoss(lmbda)
(lmbda * 255^2 * MSE on [0, 1] images + bpp), backward, clip_grad_norm_(clip) over all parameters,
Adam(lr) on every parameter but the entropy bottleneck's quantiles, then aux_loss() backward and
Adam(aux_lr) on the quantiles. Step i trains on crops[i * batch:(i + 1) * batch] of the .npy file
(uint8 [n, crop, crop, 3]; train_side_by_side.py writes it once, both sides read it).

Writes to --out_dir: `<tag>_init.pth` (the state dict before training: the other side may start from it),
`<tag>_trained.pth` (after `update(force=True)`), `<tag>_compressai.json` (timings, loss curve, per-image
Kodak bytes / bpp / PSNR of the 8-bit reconstruction).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]


def _import(threads: int):
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # Spinning OpenMP threads wait for a descheduled partner on a shared machine (peers/README.md,
    # caveats): 10x slower steps under load. Passive waiting costs nothing measurable when quiet.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    import reference_stubs  # noqa: PLC0415  (empty stand-ins for torchvision & co.)

    reference_stubs.install()
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    import compressai  # noqa: PLC0415
    from compressai.losses import RateDistortionLoss  # noqa: PLC0415
    from compressai.models import ScaleHyperprior  # noqa: PLC0415

    return torch, compressai, ScaleHyperprior, RateDistortionLoss


def common_noise(args, torch, net):
    """--noise_file (train_side_by_side.py --common_noise): float32 [steps * batch, y + z elements], our NHWC
    order (y at 1/16, z at 1/64 resolution). Patches EntropyModel.quantize's "noise" mode to add this step's
    noise instead of torch.rand; returns set_step(i)."""
    from compressai.entropy_models import EntropyBottleneck, EntropyModel, GaussianConditional

    noise = np.load(args.noise_file, mmap_mode="r")
    b, hy, hz = args.batch, args.crop // 16, args.crop // 64
    ny = hy * hy * args.M
    if noise.shape != (args.steps * b, ny + hz * hz * args.N):
        raise SystemExit(f"{args.noise_file}: shape {noise.shape} does not fit {args.steps} steps of {b} crops")
    current = {}

    def set_step(i):
        u = torch.from_numpy(np.array(noise[i * b:(i + 1) * b]))
        current["y"] = u[:, :ny].reshape(b, hy, hy, args.M).permute(0, 3, 1, 2).contiguous()      # B, M, h, w
        current["z"] = u[:, ny:].reshape(b, hz, hz, args.N).permute(3, 0, 1, 2).reshape(args.N, 1, -1)  # C, 1, B h w

    original = EntropyModel.quantize

    def quantize(self, inputs, mode, means=None):
        if mode != "noise":
            return original(self, inputs, mode, means)
        u = current["z"] if isinstance(self, EntropyBottleneck) else current["y"]
        assert isinstance(self, (EntropyBottleneck, GaussianConditional)) and u.shape == inputs.shape, (
            type(self).__name__, tuple(u.shape), tuple(inputs.shape))
        return inputs + u

    EntropyModel.quantize = quantize
    return set_step


def train(args, torch, net, RateDistortionLoss) -> dict:
    crops = np.load(args.crops, mmap_mode="r")
    set_noise = common_noise(args, torch, net) if args.noise_file else None
    if crops.shape[0] < args.steps * args.batch:
        raise SystemExit(f"{args.crops} holds {crops.shape[0]} crops; {args.steps} steps of {args.batch} need more.")
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main, lr=args.lr)
    aux_opt = torch.optim.Adam(aux, lr=args.aux_lr)
    criterion = RateDistortionLoss(lmbda=args.lmbda)
    net.train()
    curve, wall, cpu = [], [], []
    load0 = os.getloadavg()
    for i in range(args.steps):
        x = torch.from_numpy(np.array(crops[i * args.batch:(i + 1) * args.batch]))
        x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        if set_noise is not None:
            set_noise(i)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = criterion(net(x), x)
        out["loss"].backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        opt.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_opt.step()
        if i > 0:  # step 0 (lazy initialisation) is not timed, as ours excludes its compile step
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        if i % args.log_every == 0 or i == args.steps - 1:
            row = {"step": i, "loss": float(out["loss"].detach()), "bpp": float(out["bpp_loss"].detach()),
                   "mse": float(out["mse_loss"].detach()), "aux": float(aux_loss.detach())}
            if not np.isfinite(row["loss"]):
                raise SystemExit(f"non-finite loss at step {i}: {row}")
            curve.append(row)
            print(f"compressai step {i}: {row} ({np.sum(wall):.0f} s)", file=sys.stderr, flush=True)
    return {"curve": curve, "steps_per_s": len(wall) / float(np.sum(wall)),
            "median_step_s": float(np.median(wall)), "cpu_s_per_step": float(np.mean(cpu)),
            "loadavg_start_end": [load0, os.getloadavg()]}


def kodak(torch, net, num: int) -> dict:
    net.eval()
    net.update(force=True)
    rows = []
    paths = sorted((REPO / "data" / "kodak").glob("kodim*.png"))[:num]
    with torch.no_grad():
        for p in paths:
            with Image.open(p) as im:
                u8 = np.asarray(im.convert("RGB"), np.uint8)
            h, w = u8.shape[:2]
            if h % 64 or w % 64:
                raise SystemExit(f"{p.name}: {h}x{w} is not a multiple of 64 (Kodak is 768x512)")
            x = torch.from_numpy(u8).permute(2, 0, 1)[None].float().div_(255.0).contiguous()
            t0 = time.perf_counter()
            enc = net.compress(x)
            t1 = time.perf_counter()
            dec = net.decompress(enc["strings"], enc["shape"])
            t2 = time.perf_counter()
            nbytes = sum(len(s[0]) for s in enc["strings"])
            xh = np.clip(np.round(dec["x_hat"][0].permute(1, 2, 0).numpy() * 255.0), 0, 255)
            mse = np.mean((xh - u8.astype(np.float64)) ** 2)
            rows.append({"name": p.stem, "bytes": int(nbytes), "bpp": nbytes * 8.0 / (h * w),
                         "psnr": float(10 * np.log10(255.0 ** 2 / mse)), "compress_s": t1 - t0,
                         "decompress_s": t2 - t1})
    return {"per_image": rows, "bpp": float(np.mean([r["bpp"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crops", required=True)
    p.add_argument("--lmbda", type=float, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--aux_lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kodak", type=int, default=24)
    p.add_argument("--log_every", type=int, default=100)
    p.add_argument("--init_from", default="", help="initial state dict (default: ScaleHyperprior's init, seed --seed)")
    p.add_argument("--noise_seed", type=int, default=None, help="torch seed of the training noise after the init")
    p.add_argument("--noise_file", default="", help="common training noise of both sides (train_side_by_side.py)")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--tag", required=True)
    args = p.parse_args()
    torch, compressai, ScaleHyperprior, RateDistortionLoss = _import(args.threads)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    net = ScaleHyperprior(args.N, args.M)
    if args.init_from:  # a second training from the same initial weights, other noise (--noise_seed)
        net.load_state_dict(torch.load(args.init_from, map_location="cpu"))
    else:
        torch.save(net.state_dict(), out / f"{args.tag}_init.pth")
    if args.noise_seed is not None:
        torch.manual_seed(args.noise_seed)
    res = {"side": "compressai", "torch": torch.__version__, "compressai": compressai.__version__,
           "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "args": vars(args)}
    res["train"] = train(args, torch, net, RateDistortionLoss)
    res["kodak"] = kodak(torch, net, args.kodak)
    torch.save(net.state_dict(), out / f"{args.tag}_trained.pth")
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    (out / f"{args.tag}_compressai.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({"steps_per_s": res["train"]["steps_per_s"], "bpp": res["kodak"]["bpp"],
                      "psnr": res["kodak"]["psnr"]}))


if __name__ == "__main__":
    main()
