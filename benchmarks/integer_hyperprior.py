"""Integer vs float entropy parameters of the scale hyperprior (issue 16): real files on all of Kodak.

    .venv/bin/python benchmarks/integer_hyperprior.py --workdir demo_out/model.lmbda=0.02

Compresses every Kodak image with the float entropy-parameter path (`NTCCodec(..., integer=False)`) and the
integer one (`entropy/integer.py`, the default of new files), decodes both, checks that the reconstructions
are identical, and reports the bpp of both (from the files' bytes), their relative difference (target:
under 0.5%), PSNR and encode seconds. Writes benchmarks/results/integer_hyperprior.json with the machine.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import machine_info  # noqa: E402

from gencomp_jax.codecs import ntc  # noqa: E402
from gencomp_jax.eval.loading import load_codec, load_eval_set  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="training workdir of a hyperprior (e.g. demo_out/model.lmbda=0.02)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "integer_hyperprior.json"))
    args = ap.parse_args(argv)
    codec = load_codec(args.workdir)
    paths = {"float": ntc.NTCCodec(codec.model, codec.params, integer=False),
             "integer": ntc.NTCCodec(codec.model, codec.params, integer=True)}
    rows, seconds = [], {k: 0.0 for k in paths}
    for name, image in load_eval_set("kodak"):
        sizes, recs = {}, {}
        for key, c in paths.items():
            t = time.perf_counter()
            data = c.compress(image)
            seconds[key] += time.perf_counter() - t
            sizes[key], recs[key] = len(data), c.decompress(data)
        if not np.array_equal(recs["float"], recs["integer"]):
            raise SystemExit(f"{name}: the two paths reconstruct different images")
        mse = float(np.mean((recs["float"].astype(np.float64) - image) ** 2))
        px = image.shape[0] * image.shape[1]
        rows.append({"image": name, "bpp_float": sizes["float"] * 8 / px, "bpp_integer": sizes["integer"] * 8 / px,
                     "psnr": 10 * np.log10(255.0 ** 2 / mse)})
    bf, bi = (float(np.mean([r[k] for r in rows])) for k in ("bpp_float", "bpp_integer"))
    rel = [r["bpp_integer"] / r["bpp_float"] - 1 for r in rows]
    result = {"machine": machine_info(), "workdir": args.workdir, "bpp_float": bf, "bpp_integer": bi,
              "relative": bi / bf - 1, "relative_per_image": [min(rel), max(rel)], "target_relative": 0.005,
              "psnr": float(np.mean([r["psnr"] for r in rows])), "identical_reconstructions": True,
              "encode_s": {k: v / len(rows) for k, v in seconds.items()}, "images": rows}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"float {bf:.6f} bpp, integer {bi:.6f} bpp ({100 * (bi / bf - 1):+.4f}%, per image "
          f"{100 * min(rel):+.4f}% .. {100 * max(rel):+.4f}%), PSNR {result['psnr']:.3f} dB, identical images; "
          f"encode s/image float {result['encode_s']['float']:.3f}, integer {result['encode_s']['integer']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
