"""Decode files under other XLA settings than the encoder's and count what happens (issue 16, item 1).

    python experiments/perturb_decode.py --codecs hyperprior,hyperprior_float,mean_scale,uqdm --images 8 --out perturb.json

"hyperprior" writes files with integer entropy parameters (the default, codecs/latent.py);
"hyperprior_float" the same model with the float path (integer=False), for comparison.

The encoder (this process, default settings) writes files of tiny random-init codecs
(gencomp_jax.codecs.fuzz.tiny_codec) for crops of scikit-image photos and decodes them as references;
with --checkpoint, of that trained codec (hyperprior/hyperprior_float: the same trained weights on the
integer and the float path), and with --dataset (e.g. kodak), of every image of that set:

    python experiments/perturb_decode.py --codecs hyperprior,hyperprior_float --checkpoint runs/hp \
        --dataset kodak --out perturb_kodak.json

Each variant then decodes the same files in a fresh process with other settings (thread count, XLA
fast math, default matmul precision, batched device count) and classifies every file:
    same          the reference image, bit for bit
    detected      refused with bitstream.DecodeMismatchError (the segment checks did their job)
    other_error   refused with another library error
    silent_wrong  a different image without an error (what must never happen with checked files)
Variant "ulp_noise" moves every float h_s output (the scales) of the decoder by +-1 ulp at random,
what another platform's float arithmetic does ("ulp_noise_64", "ulp_noise_4096": by 64 and 4096 ulps,
~4e-6 and ~2.4e-4 relative, a different h_s kernel's rounding); the integer path never evaluates it.
Variant "weights_ulp" moves every float weight of the decoder's NTC model by +-1 ulp (a float
h_s computes other scales; the integer path converts the weights to 16-bit integers again).
Also decodes the same segments repacked without checks (format version 1), to show what the checks
catch. Writes one JSON object; exits 1 if a checked file was silently wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = {
    "default": {},
    "1_thread": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"},
    "fast_math": {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"},
    "matmul_bf16": {"JAX_DEFAULT_MATMUL_PRECISION": "bfloat16"},
    "matmul_tf32": {"JAX_DEFAULT_MATMUL_PRECISION": "tensorfloat32"},
    "4_devices": {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    "ulp_noise": {"GENCOMP_PERTURB_ULP": "1"},
    "ulp_noise_64": {"GENCOMP_PERTURB_ULP": "64"},
    "ulp_noise_4096": {"GENCOMP_PERTURB_ULP": "4096"},
    "weights_ulp": {"GENCOMP_PERTURB_WEIGHTS_ULP": "1"},
}


def _codec(name: str, params=None, checkpoint: str = ""):
    """fuzz.tiny_codec(name), or the codec of `checkpoint`; "hyperprior_float": the hyperprior with
    float entropy parameters, "hyperprior": with integer ones."""
    from gencomp_jax.codecs import fuzz, ntc
    from gencomp_jax.eval.loading import load_codec

    if checkpoint:
        c = load_codec(checkpoint)
        if name not in ("hyperprior", "hyperprior_float"):
            return c
    elif name != "hyperprior_float":
        return fuzz.tiny_codec(name, params=params)
    else:
        c = fuzz.tiny_codec("hyperprior", params=params)
    return ntc.NTCCodec(c.model, c.params, integer=name == "hyperprior")


def _add_ulp_noise(codec, ulps: int = 1) -> None:
    """Decoder-side +-`ulps` ulp on the float entropy-parameter path's scales (NTC codecs only)."""
    import numpy as np

    latent = getattr(codec, "latent", None)
    if latent is None or not hasattr(latent, "_params_fn"):
        return
    original, rng = latent._params_fn, np.random.default_rng(0)

    def fn(*args):
        mean, scale = original(*args)
        s = np.asarray(scale)
        sign = np.where(rng.random(s.shape) < 0.5, 1.0, -1.0).astype(np.float32)
        return mean, (s + sign * np.float32(ulps) * np.spacing(s)).astype(np.float32)
    latent._params_fn = fn


def _weights_ulp(codec):
    """The NTC codec with every float weight moved +-1 ulp at random (np.nextafter)."""
    import jax
    import numpy as np

    from gencomp_jax.codecs import ntc

    rng = np.random.default_rng(1)

    def move(a):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            return a
        return np.nextafter(a, np.where(rng.random(a.shape) < 0.5, np.inf, -np.inf)).astype(a.dtype)
    return ntc.NTCCodec(codec.model, jax.tree_util.tree_map(move, codec.params), integer=codec.latent.integer)


def _crops(n: int, size: int):
    import numpy as np
    import skimage.data

    rng = np.random.default_rng(0)
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    out = []
    for _ in range(n):
        p = photos[rng.integers(len(photos))]
        i, j = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        out.append(np.ascontiguousarray(p[i:i + size, j:j + size]))
    return out


def _images(name: str, n: int, dataset: str):
    if not dataset:
        return _crops(n, 32 if name == "uqdm" else 64)
    from gencomp_jax.eval.loading import load_eval_set

    return [im for _, im in load_eval_set(dataset, limit=n or None)]


def encode(workdir: str, codecs: list[str], n: int, checkpoint: str = "", dataset: str = "") -> int:
    """Writes the files and reference decodes; returns the number of images."""
    import flax.serialization
    import numpy as np

    from gencomp_jax.codecs import bitstream

    count = 0
    for name in codecs:
        codec = _codec(name, checkpoint=checkpoint)
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        if not checkpoint:   # the decoding processes rebuild tiny codecs from these; a checkpoint they load
            with open(os.path.join(d, "params.msgpack"), "wb") as fh:
                fh.write(flax.serialization.to_bytes(codec.params))
        images = _images(name, n, dataset)
        count = len(images)
        for k, im in enumerate(images):
            data = codec.compress(im)
            header, segs = bitstream.unpack(data)
            plain = bitstream.pack(dataclasses.replace(header, checks=()), segs)
            for tag, f in (("checked", data), ("plain", plain)):
                with open(os.path.join(d, f"{k}.{tag}.gcz"), "wb") as fh:
                    fh.write(f)
            np.save(os.path.join(d, f"{k}.ref.npy"), codec.decompress(data))
    return count


def decode(workdir: str, codecs: list[str], n: int, checkpoint: str = "") -> dict:
    import flax.serialization
    import numpy as np

    from gencomp_jax.codecs import bitstream, fuzz

    result = {}
    for name in codecs:
        d = os.path.join(workdir, name)
        if checkpoint:
            codec = _codec(name, checkpoint=checkpoint)
        else:
            config = fuzz.tiny_config("hyperprior" if name == "hyperprior_float" else name)
            template = fuzz.tiny_params(config)
            with open(os.path.join(d, "params.msgpack"), "rb") as fh:
                params = flax.serialization.from_bytes(template, fh.read())
            codec = _codec(name, params=params)
        if os.environ.get("GENCOMP_PERTURB_WEIGHTS_ULP") and hasattr(codec, "latent"):
            codec = _weights_ulp(codec)
        if os.environ.get("GENCOMP_PERTURB_ULP"):
            _add_ulp_noise(codec, int(os.environ["GENCOMP_PERTURB_ULP"]))
        counts = {tag: {"same": 0, "detected": 0, "other_error": 0, "silent_wrong": 0} for tag in ("checked", "plain")}
        for k in range(n):
            ref = np.load(os.path.join(d, f"{k}.ref.npy"))
            for tag in ("checked", "plain"):
                with open(os.path.join(d, f"{k}.{tag}.gcz"), "rb") as fh:
                    data = fh.read()
                try:
                    out = codec.decompress(data)
                    counts[tag]["same" if np.array_equal(out, ref) else "silent_wrong"] += 1
                except bitstream.DecodeMismatchError:
                    counts[tag]["detected"] += 1
                except ValueError:
                    counts[tag]["other_error"] += 1
        result[name] = counts
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codecs", default="hyperprior,hyperprior_float,mean_scale,uqdm")
    p.add_argument("--images", type=int, default=8, help="number of images (with --dataset: 0 = all)")
    p.add_argument("--checkpoint", default="", help="a trained codec's workdir (default: tiny random-init codecs)")
    p.add_argument("--dataset", default="", help="evaluation set (kodak, a folder, ...) instead of photo crops")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="perturb_decode.json")
    p.add_argument("--decode-only", default="", help=argparse.SUPPRESS)  # child mode: the workdir
    args = p.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    if args.decode_only:
        print(json.dumps(decode(args.decode_only, codecs, args.images, args.checkpoint)))
        return 0
    workdir = tempfile.mkdtemp(prefix="gencomp_perturb_")
    n = encode(workdir, codecs, args.images, args.checkpoint, args.dataset)
    report = {"images": n, "checkpoint": args.checkpoint, "dataset": args.dataset or "skimage crops",
              "variants": {}}
    bad = False
    for v in args.variants.split(","):
        env = {**os.environ, **VARIANTS[v]}
        out = subprocess.run([sys.executable, __file__, "--codecs", args.codecs, "--images", str(n),
                              "--checkpoint", args.checkpoint, "--decode-only", workdir],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            report["variants"][v] = {"error": out.stderr[-2000:]}
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        report["variants"][v] = {"settings": VARIANTS[v], **res}
        bad |= any(c["checked"]["silent_wrong"] for c in res.values())
        print(v, json.dumps(res), flush=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
