"""Decode files under other XLA settings than the encoder's and count what happens (issue 16, item 1).

    python experiments/perturb_decode.py --codecs hyperprior,hyperprior_float,mean_scale,uqdm --images 8 --out perturb.json

"hyperprior" writes files with integer entropy parameters (the default, codecs/latent.py);
"hyperprior_float" the same model with the float path (integer=False), for comparison.

The encoder (this process, default settings) writes files of tiny random-init codecs
(gencomp_jax.codecs.fuzz.tiny_codec) for crops of scikit-image photos and decodes them as references.
Each variant then decodes the same files in a fresh process with other settings (thread count, XLA
fast math, default matmul precision, batched device count) and classifies every file:
    same          the reference image, bit for bit
    detected      refused with bitstream.DecodeMismatchError (the segment checks did their job)
    other_error   refused with another library error
    silent_wrong  a different image without an error (what must never happen with checked files)
Variant "ulp_noise" moves every float h_s output (the scales) of the decoder by +-1 ulp at random
(np.nextafter), what another platform's float arithmetic does; the integer path never evaluates it.
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
}


def _codec(name: str, params=None):
    """fuzz.tiny_codec(name); "hyperprior_float": the hyperprior with float entropy parameters."""
    from gencomp_jax.codecs import fuzz, ntc

    if name != "hyperprior_float":
        return fuzz.tiny_codec(name, params=params)
    c = fuzz.tiny_codec("hyperprior", params=params)
    return ntc.NTCCodec(c.model, c.params, integer=False)


def _add_ulp_noise(codec) -> None:
    """Decoder-side +-1 ulp on the float entropy-parameter path's scales (NTC codecs only)."""
    import numpy as np

    latent = getattr(codec, "latent", None)
    if latent is None or not hasattr(latent, "_params_fn"):
        return
    original, rng = latent._params_fn, np.random.default_rng(0)

    def fn(*args):
        mean, scale = original(*args)
        s = np.asarray(scale)
        return mean, np.nextafter(s, np.where(rng.random(s.shape) < 0.5, np.inf, -np.inf)).astype(np.float32)
    latent._params_fn = fn


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


def encode(workdir: str, codecs: list[str], n: int) -> None:
    import flax.serialization
    import numpy as np

    from gencomp_jax.codecs import bitstream

    for name in codecs:
        codec = _codec(name)
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "params.msgpack"), "wb") as fh:
            fh.write(flax.serialization.to_bytes(codec.params))
        for k, im in enumerate(_crops(n, 32 if name == "uqdm" else 64)):
            data = codec.compress(im)
            header, segs = bitstream.unpack(data)
            plain = bitstream.pack(dataclasses.replace(header, checks=()), segs)
            for tag, f in (("checked", data), ("plain", plain)):
                with open(os.path.join(d, f"{k}.{tag}.gcz"), "wb") as fh:
                    fh.write(f)
            np.save(os.path.join(d, f"{k}.ref.npy"), codec.decompress(data))


def decode(workdir: str, codecs: list[str], n: int) -> dict:
    import flax.serialization
    import numpy as np

    from gencomp_jax.codecs import bitstream, fuzz

    result = {}
    for name in codecs:
        d = os.path.join(workdir, name)
        config = fuzz.tiny_config("hyperprior" if name == "hyperprior_float" else name)
        template = fuzz.tiny_params(config)
        with open(os.path.join(d, "params.msgpack"), "rb") as fh:
            params = flax.serialization.from_bytes(template, fh.read())
        codec = _codec(name, params=params)
        if os.environ.get("GENCOMP_PERTURB_ULP"):
            _add_ulp_noise(codec)
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
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="perturb_decode.json")
    p.add_argument("--decode-only", default="", help=argparse.SUPPRESS)  # child mode: the workdir
    args = p.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    if args.decode_only:
        print(json.dumps(decode(args.decode_only, codecs, args.images)))
        return 0
    workdir = tempfile.mkdtemp(prefix="gencomp_perturb_")
    encode(workdir, codecs, args.images)
    report = {"images": args.images, "variants": {}}
    bad = False
    for v in args.variants.split(","):
        env = {**os.environ, **VARIANTS[v]}
        out = subprocess.run([sys.executable, __file__, "--codecs", args.codecs, "--images", str(args.images),
                              "--decode-only", workdir], capture_output=True, text=True, env=env)
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
