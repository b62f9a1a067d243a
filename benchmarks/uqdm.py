"""UQDM benchmark: encode/decode seconds (32x32 and Kodak-sized), train steps/s, peak memory -> JSON.

    python benchmarks/uqdm.py [--config_arg runlocal] [--params PATH.msgpack] [--kodak 1]
    python benchmarks/uqdm.py --checkpoint ../shared/reference/uqdm-tiny --only_checkpoint 1 --out F.json

Times are wall-clock seconds after one warm-up call (jit compilation reported separately), for the
tiny network with learned per-element variance (the reference's `tiny` preset, T = 4, lossless
files). The reference PyTorch coder builds one CDF table per element in a Python loop (minutes per
CIFAR image with learned variance); here coding is vectorised. Writes benchmarks/results/uqdm.json.
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

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from gencomp_jax.config_utils import load_config  # noqa: E402


def _config(arg):
    return load_config(f"uqdm:{arg}")


def _time(fn, repeats):
    out, ts = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def checkpoint_64x64(path, repeats, images=4):
    """Encode / decode seconds (wall and this process's CPU) of lossless 64x64 files with released weights
    (learned variance), per image, after one warm-up call (compilation reported separately)."""
    from gencomp_jax import registry
    from gencomp_jax.data.sources import load_kodak
    from gencomp_jax.eval import pretrained

    codec = registry.make_codec(*pretrained.load(path))
    crops = [im[(im.shape[0] - 64) // 2:(im.shape[0] - 64) // 2 + 64, (im.shape[1] - 64) // 2:(im.shape[1] - 64) // 2 + 64]
             for _, im in load_kodak(limit=images)]
    t0 = time.perf_counter()
    codec.decompress(codec.compress(crops[0]))
    first = time.perf_counter() - t0
    rows = []
    for x in crops:
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            data = codec.compress(x)
            c1, t1 = time.process_time(), time.perf_counter()
            rec = codec.decompress(data)
            c2, t2 = time.process_time(), time.perf_counter()
            assert np.array_equal(rec, x)
            rows.append((t1 - t0, t2 - t1, c1 - c0, c2 - c1, 8 * len(data) / 4096))
    a = np.array(rows)
    return {"checkpoint": str(path), "images": len(crops), "repeats": repeats, "first_call_incl_compile_s": first,
            "encode_s_median": float(np.median(a[:, 0])), "decode_s_median": float(np.median(a[:, 1])),
            "encode_plus_decode_s_median": float(np.median(a[:, 0] + a[:, 1])),
            "encode_plus_decode_s_min": float(np.min(a[:, 0] + a[:, 1])),
            "encode_plus_decode_cpu_s_median": float(np.median(a[:, 2] + a[:, 3])), "bpp_mean": float(a[:, 4].mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config_arg", default="runlocal")
    ap.add_argument("--params", default="", help="flax msgpack of trained params (default: initialisation)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kodak", type=int, default=1, help="time one Kodak image (0 = skip)")
    ap.add_argument("--train_steps", type=int, default=10)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "uqdm.json"))
    ap.add_argument("--checkpoint", default="", help="also time a released UQDM checkpoint (e.g. "
                    "../shared/reference/uqdm-tiny) on 64x64 Kodak centre crops; writes key 'checkpoint_64x64'")
    ap.add_argument("--only_checkpoint", type=int, default=0)
    args = ap.parse_args(argv)
    if args.checkpoint:
        res = {"machine": {**machine_info(), "load_average_at_start": os.getloadavg()},
               "checkpoint_64x64": checkpoint_64x64(args.checkpoint, args.repeats)}
        res["machine"]["load_average_at_end"] = os.getloadavg()
        print(json.dumps(res["checkpoint_64x64"]))
        if args.only_checkpoint:
            out = pathlib.Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2))
            print("wrote", out)
            return res

    from gencomp_jax.codecs import uqdm as C
    from gencomp_jax.data.sources import load_kodak
    from gencomp_jax.models.unet import count_params

    cfg = _config(args.config_arg)
    crop = int(cfg.data.crop_size)
    params = C.initial_params(cfg, params_file=args.params)
    res = {"machine": {**machine_info(), "load_average_at_start": os.getloadavg()},
           "config": args.config_arg, "num_params": count_params(params), "T": int(cfg.model.diffusion_steps),
           "learned_scale": bool(cfg.model.learned_scale), "trained_params": bool(args.params)}
    codec = C.make_codec(cfg, params)
    kodak = load_kodak(limit=1)[0][1]

    rows = []
    images = [("32x32", kodak[200:232, 300:332])]
    if args.kodak:
        images.append((f"kodak {kodak.shape[0]}x{kodak.shape[1]}", kodak))
    for name, img in images:
        t0 = time.perf_counter()
        data = codec.compress(img)
        codec.decompress(data)
        first = time.perf_counter() - t0
        reps = args.repeats if img.size < 100_000 else 1
        data, enc = _time(lambda: codec.compress(img), reps)
        rec, dec = _time(lambda: codec.decompress(data), reps)
        assert np.array_equal(rec, img)
        _, dec1 = _time(lambda: codec.decompress(data, steps=1, reconstruction="denoise"), reps)
        _, dec1f = _time(lambda: codec.decompress(data, steps=1, reconstruction="flow"), reps)
        h, w = img.shape[:2]
        rows.append({"image": name, "bpp_lossless": len(data) * 8 / (h * w), "encode_s": enc, "decode_s": dec,
                     "decode_steps1_denoise_s": dec1, "decode_steps1_flow_s": dec1f,
                     "first_call_incl_compile_s": first})

    # training step (runlocal batch) with the Method loss + Adam
    method = C.make_method(cfg)
    bs = int(cfg.data.batch_size)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (bs, crop, crop, 3)) / 127.5 - 1.0, jnp.float32)
    tx = optax.adam(1e-4)
    opt = tx.init(params)

    @jax.jit
    def step(p, o, k):
        (l, _), g = jax.value_and_grad(method.loss, has_aux=True)(p, {"image": x}, k, True)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, l

    p, o, l = step(params, opt, jax.random.PRNGKey(0))
    jax.block_until_ready(l)
    t0 = time.perf_counter()
    for i in range(args.train_steps):
        p, o, l = step(p, o, jax.random.PRNGKey(i + 1))
    jax.block_until_ready(l)
    sps = args.train_steps / (time.perf_counter() - t0)
    res["train"] = {"batch": bs, "crop": crop, "steps_per_s": sps, "s_per_step": 1.0 / sps}
    res["codec"] = rows
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res["machine"]["load_average_at_end"] = os.getloadavg()

    print(f"UQDM ({res['num_params']} params, T={res['T']}, learned variance) on {res['machine']['devices']}, "
          f"{os.cpu_count()} CPUs, load {res['machine']['load_average_at_start'][0]:.1f}")
    print(f"{'image':22s} {'bpp':>7s} {'enc s':>8s} {'dec s':>8s} {'dec k=1':>8s} {'1st call':>8s}")
    for r in rows:
        print(f"{r['image']:22s} {r['bpp_lossless']:7.3f} {r['encode_s']:8.3f} {r['decode_s']:8.3f} "
              f"{r['decode_steps1_denoise_s']:8.3f} {r['first_call_incl_compile_s']:8.2f}")
    print(f"train: {sps:.2f} steps/s (batch {bs}, {crop}x{crop}); peak RSS {res['peak_rss_mib']:.0f} MiB")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print("wrote", out)
    return res


if __name__ == "__main__":
    main()
