"""Seconds per Kodak image for each metric on this machine (CPU); writes benchmarks/results/metrics.json.

    .venv/bin/python benchmarks/metrics.py [--images 4] [--inception_weights PATH]

Reconstructions are JPEG (quality 30) versions of the originals. Each per-image metric is timed after a
warm-up call on the same image size (compile excluded; compile time reported separately).
"inception features" = the FID Inception-v3 over the 8 HiFiC patches (256 px, grid + half-shifted
grid) of one reference AND one reconstruction, i.e. what realism_metrics needs per image pair. Without
the real FID weights file it runs on random weights in the standard format (same FLOPs, same time).
"fid+kid" = the distance computation on 192 x 2048 features per side (full Kodak patch count; 100 KID
subsets), independent of the number of images.
"""

import argparse
import io
import json
import os
import pathlib
from _machine import machine_info  # benchmarks/ is sys.path[0]: the one "which CPU" helper
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencomp_jax.metrics import fid as F  # noqa: E402
from gencomp_jax.metrics import inception as I  # noqa: E402
from gencomp_jax.metrics.lpips import lpips_distance  # noqa: E402


def _kodak(n):
    files = sorted((REPO / "data" / "kodak").glob("kodim*.png"))[:n]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _jpeg(x, q=30):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _time_per_image(fn, refs, recs):
    """(compile+first seconds, mean seconds per image over refs after warm-up per distinct shape)."""
    seen, t_first = set(), 0.0
    for a, b in zip(refs, recs):
        if a.shape not in seen:
            seen.add(a.shape)
            t = time.perf_counter()
            fn(a, b)
            t_first += time.perf_counter() - t
    t = time.perf_counter()
    for a, b in zip(refs, recs):
        fn(a, b)
    return t_first, (time.perf_counter() - t) / len(refs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--inception_weights", default=None)
    args = ap.parse_args()
    refs = _kodak(args.images)
    recs = [_jpeg(x) for x in refs]
    rows = {}

    try:
        from gencomp_jax.metrics import psnr
        rows["psnr-rgb"] = _time_per_image(lambda a, b: float(psnr(a, b)), refs, recs)
    except ImportError:
        pass
    rows["lpips-alex"] = _time_per_image(lambda a, b: lpips_distance(a, b, net="alex"), refs, recs)
    rows["lpips-vgg"] = _time_per_image(lambda a, b: lpips_distance(a, b, net="vgg"), refs, recs)

    weights_note = "real FID weights"
    try:
        path = I.resolve_weights_path(args.inception_weights)
    except I.InceptionWeightsError:
        sys.path.insert(0, str(REPO / "tests" / "golden"))
        from inception_random_weights import random_state_dict
        path = os.path.join(tempfile.mkdtemp(), I.FILENAME)
        I.save_torch_state_dict(path, random_state_dict(I.expected_state_dict_shapes()))
        weights_note = "random weights in the standard format (real file absent; same FLOPs)"
    ex = I.InceptionFeatureExtractor(path, batch_size=8)
    rows["inception features (8 patches x 2)"] = _time_per_image(
        lambda a, b: (ex(F.extract_patches(a)), ex(F.extract_patches(b))), refs, recs)

    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(192, 2048)).astype(np.float32)
    f2 = (f1 + 0.3 * rng.normal(size=f1.shape)).astype(np.float32)
    t = time.perf_counter()
    F.fid_from_features(f1, f2)
    t_fid = time.perf_counter() - t
    t = time.perf_counter()
    F.kid_from_features(f1, f2)
    t_kid = time.perf_counter() - t

    print(f"{'metric':38s} {'s/image':>10s} {'first call (compile) s':>24s}")
    for k, (first, per) in rows.items():
        print(f"{k:38s} {per:10.4f} {first:24.2f}")
    print(f"{'fid (192x2048 per side, once)':38s} {t_fid:10.4f}")
    print(f"{'kid (100 subsets, once)':38s} {t_kid:10.4f}")
    out = {
        "machine": machine_info(),
        "images": len(refs), "image_shapes": sorted({str(x.shape) for x in refs}),
        "seconds_per_image": {k: v[1] for k, v in rows.items()},
        "first_call_seconds": {k: v[0] for k, v in rows.items()},
        "seconds_once": {"fid_192x2048": t_fid, "kid_192x2048_100_subsets": t_kid},
        "inception_weights": weights_note,
    }
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "metrics.json").write_text(json.dumps(out, indent=1))
    print("wrote", res / "metrics.json")


if __name__ == "__main__":
    main()
