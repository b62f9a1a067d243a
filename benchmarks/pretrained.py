"""The anchors' published weights through this library's codecs, next to the anchors' own numbers.

    python benchmarks/pretrained.py [--out benchmarks/results/pretrained.json] [--kodak_images 24]

1. CompressAI: the trained bmshj2018-hyperprior (../shared/reference/compressai/, see the README there)
   converted by eval/pretrained.py, real files on the Kodak images, image by image next to
   CompressAI 1.2.8's own compress/decompress (tests/golden/compressai_bsds4k_kodak.json): bytes
   (ratio) and PSNR of the 8-bit reconstruction (difference in dB).
2. UQDM: the released uqdm-tiny ("model" weights, what the reference's load_checkpoint uses, and the
   "ema" weights with the trained schedule) on the 24 centre 64x64 crops of Kodak: real lossless files
   in bits per pixel next to the reference's estimates on the same crops
   (tests/golden/uqdm_tiny_reference.json "kodak24": NELBO and inference-mode rate), and encode/decode
   seconds per 64x64 image (the reference's coder builds one CDF table per element in Python).
The CPU model and load are recorded (timings are meaningless on a loaded shared machine).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "golden"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine_info  # noqa: E402

from gencomp_jax import registry  # noqa: E402
from gencomp_jax.data import read_image  # noqa: E402
from gencomp_jax.eval import pretrained  # noqa: E402

REFERENCE = REPO.parent / "shared" / "reference"


def _psnr(a, b) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def compressai_kodak(n_images: int) -> dict:
    path = REFERENCE / "compressai" / "bmshj2018-hyperprior-N128-M192-bsds4k.pth"
    gold = json.loads((REPO / "tests" / "golden" / "compressai_bsds4k_kodak.json").read_text())
    codec = registry.make_codec(*pretrained.load(path))
    rows = []
    for g in gold["images"][:n_images]:
        x = read_image(REPO / "data" / "kodak" / f"{g['image']}.png")
        t0 = time.perf_counter()
        data = codec.compress(x)
        t1 = time.perf_counter()
        rec = codec.decompress(data)
        t2 = time.perf_counter()
        rows.append(dict(image=g["image"], bytes=len(data), compressai_bytes=g["bytes"],
                         bytes_ratio=len(data) / g["bytes"], psnr=_psnr(rec, x),
                         compressai_psnr=g["psnr_uint8"], psnr_diff_db=_psnr(rec, x) - g["psnr_uint8"],
                         encode_s=t1 - t0, decode_s=t2 - t1))
        print(json.dumps(rows[-1]), flush=True)
    return {"images": rows,
            "max_abs_bytes_ratio_minus_1": float(max(abs(r["bytes_ratio"] - 1) for r in rows)),
            "max_abs_psnr_diff_db": float(max(abs(r["psnr_diff_db"]) for r in rows))}


def uqdm_kodak24() -> dict:
    import make_uqdm_reference_golden as ref_golden

    gold = json.loads((REPO / "tests" / "golden" / "uqdm_tiny_reference.json").read_text())
    crops = ref_golden.kodak_center_crops()
    out = {}
    for weights in pretrained.WEIGHTS:
        codec = registry.make_codec(*pretrained.load_uqdm_reference(REFERENCE / "uqdm-tiny", weights=weights))
        codec.decompress(codec.compress(crops[0]))  # compile
        bits, enc, dec = [], [], []
        for x in crops:
            t0 = time.perf_counter()
            data = codec.compress(x)
            t1 = time.perf_counter()
            rec = codec.decompress(data)
            t2 = time.perf_counter()
            if not np.array_equal(rec, x):
                raise AssertionError("UQDM file not lossless")
            bits.append(8 * len(data))
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        px = crops.shape[1] * crops.shape[2]
        out[weights] = {"bpp_file": float(np.mean(bits) / px),
                        "bpp_reference_nelbo": 3 * float(np.mean(gold["kodak24"][weights]["nelbo"])),
                        "bpp_reference_inference": 3 * float(np.mean(gold["kodak24"][weights]["inference"])),
                        "encode_s_median": float(np.median(enc)), "decode_s_median": float(np.median(dec))}
        print(weights, json.dumps(out[weights]), flush=True)
    out["authors_imagenet64_test_bpp"] = {"file": 17.19, "estimate": 17.18}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pretrained.json"))
    ap.add_argument("--kodak_images", type=int, default=24)
    args = ap.parse_args()
    result = {"machine": machine_info(), "uqdm_tiny_kodak24": uqdm_kodak24(),
              "compressai_bsds4k_kodak": compressai_kodak(args.kodak_images)}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
