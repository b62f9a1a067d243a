"""Makes tests/golden/msssim_golden.json: MS-SSIM of fixed image pairs by an independent implementation.

Reference: pytorch_msssim.ms_ssim (data_range=255, default window/weights) on torch 2.13.0 CPU, run
ONCE in a throwaway venv outside the repo (torch is not a dependency of gencomp_jax):

    python3 -m venv /tmp/goldvenv
    /tmp/goldvenv/bin/pip install torch==2.13.0 pytorch-msssim pillow numpy
    /tmp/goldvenv/bin/python tests/golden/make_msssim_golden.py

The image pairs are built by `make_pairs()` below, which tests/metrics/test_distortion.py imports so
that both sides use identical pixels: Kodak kodim01 against its JPEG quality-20 re-encoding (the JPEG
bytes are kept in tests/golden/kodim01_q20.jpg and the sha256 of the decoded pixels is recorded),
against a deterministic integer-hash noise perturbation, an odd-sized 161x203 crop (exercises the
zero-padded pooling), and kodim01 against the unrelated kodim02.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
JPEG_PATH = HERE / "kodim01_q20.jpg"
GOLDEN_PATH = HERE / "msssim_golden.json"


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def hash_noise(shape, amplitude: int = 12) -> np.ndarray:
    """Deterministic integer noise in [-amplitude, amplitude] (no RNG: same on every numpy version)."""
    idx = np.arange(int(np.prod(shape)), dtype=np.uint64)
    v = (idx * np.uint64(2654435761) + np.uint64(12345)) & np.uint64(0xFFFFFFFF)
    v = (v ^ (v >> np.uint64(13))) * np.uint64(1274126177) & np.uint64(0xFFFFFFFF)
    v = v ^ (v >> np.uint64(16))
    return (v % np.uint64(2 * amplitude + 1)).astype(np.int64).reshape(shape) - amplitude


def decoded_sha256(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def make_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (x uint8 HWC, y uint8 HWC)."""
    x = _read(REPO / "data" / "kodak" / "kodim01.png")
    if not JPEG_PATH.exists():
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=20)
        JPEG_PATH.write_bytes(buf.getvalue())
    jpeg = _read(JPEG_PATH)
    noisy = np.clip(x.astype(np.int64) + hash_noise(x.shape), 0, 255).astype(np.uint8)
    other = _read(REPO / "data" / "kodak" / "kodim02.png")
    if other.shape != x.shape:
        other = np.ascontiguousarray(np.transpose(other, (1, 0, 2)))
    return {
        "kodim01_jpeg_q20": (x, jpeg),
        "kodim01_hash_noise12": (x, noisy),
        "kodim01_crop161x203_jpeg_q20": (x[:161, :203], jpeg[:161, :203]),
        "kodim01_vs_kodim02": (x, other),
    }


def main():
    import pytorch_msssim
    import torch

    pairs = make_pairs()
    out = {
        "reference": f"pytorch_msssim.ms_ssim(data_range=255) {getattr(pytorch_msssim, '__version__', '1.0.0')}, "
                     f"torch {torch.__version__}, float64 and float32",
        "jpeg_decoded_sha256": decoded_sha256(pairs["kodim01_jpeg_q20"][1]),
        "values": {},
        "values_float32": {},
    }
    for name, (x, y) in pairs.items():
        for key, dtype in (("values", torch.float64), ("values_float32", torch.float32)):
            tx = torch.from_numpy(x.copy()).permute(2, 0, 1)[None].to(dtype)
            ty = torch.from_numpy(y.copy()).permute(2, 0, 1)[None].to(dtype)
            out[key][name] = float(pytorch_msssim.ms_ssim(tx, ty, data_range=255, size_average=True))
        print(f"{name:32s} {out['values'][name]:.8f} (float32 {out['values_float32'][name]:.8f})")
    GOLDEN_PATH.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", GOLDEN_PATH)


if __name__ == "__main__":
    main()
