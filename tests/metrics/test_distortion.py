"""PSNR closed forms and MS-SSIM against golden values from pytorch_msssim (tests/golden/)."""

import json
import pathlib

import numpy as np
import pytest

from gencomp_jax import metrics
from tests.golden import make_msssim_golden as golden

GOLDEN = json.loads((pathlib.Path(golden.__file__).parent / "msssim_golden.json").read_text())
# float32 JAX vs float64 torch: differences measured <= 6.2e-6 (kodim01 vs kodim02), <= 5.5e-7 otherwise; 2e-5 absolute leaves margin for XLA reordering
# while still catching any definitional change (a different window, pooling or weight moves >1e-3).
MSSSIM_ATOL = 2e-5


@pytest.fixture(scope="module")
def pairs():
    p = golden.make_pairs()
    assert golden.decoded_sha256(p["kodim01_jpeg_q20"][1]) == GOLDEN["jpeg_decoded_sha256"], (
        "Pillow decoded tests/golden/kodim01_q20.jpg to different pixels than when the golden values were "
        "made; the golden comparison is meaningless with a different JPEG decoder")
    return p


def test_psnr_closed_form():
    x = np.full((4, 5, 3), 100, np.uint8)
    y = x.copy()
    y[0, 0, 0] = 110  # MSE = 100 / 60
    assert metrics.psnr(x, y) == pytest.approx(10 * np.log10(255 ** 2 * 60 / 100), abs=1e-12)
    assert metrics.psnr(x, x) == float("inf")
    # batch: one value per image, same as individually
    xb, yb = np.stack([x, x]), np.stack([y, x])
    np.testing.assert_array_equal(metrics.psnr(xb, yb), [metrics.psnr(x, y), np.inf])
    # no uint8 wrap-around: 0 vs 255 everywhere is 0 dB
    assert metrics.psnr(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)) == 0.0


def test_input_validation():
    x = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        metrics.psnr(x.astype(np.float32), x)
    with pytest.raises(ValueError, match="same shape"):
        metrics.ms_ssim(x, x[:199])
    with pytest.raises(ValueError, match="at least 161x161"):
        metrics.ms_ssim(x[:160], x[:160])
    with pytest.raises(ValueError, match="Unknown per-image metric"):
        metrics.compute_per_image("ssim", x, x)


def test_ms_ssim_matches_pytorch_msssim(pairs):
    for name, (x, y) in pairs.items():
        ours = metrics.ms_ssim(x, y)
        assert ours == pytest.approx(GOLDEN["values"][name], abs=MSSSIM_ATOL), name
    # batched evaluation gives the same per-image values (small crops: one more compile, not a 512x768 one)
    crop = lambda a: a[:161, 100:303]
    xb = np.stack([crop(pairs[n][0]) for n in ("kodim01_jpeg_q20", "kodim01_hash_noise12")])
    yb = np.stack([crop(pairs[n][1]) for n in ("kodim01_jpeg_q20", "kodim01_hash_noise12")])
    np.testing.assert_allclose(metrics.ms_ssim(xb, yb), [metrics.ms_ssim(a, b) for a, b in zip(xb, yb)], atol=1e-6)


def test_ms_ssim_properties(pairs):
    x, y = pairs["kodim01_crop161x203_jpeg_q20"]
    assert metrics.ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ms_ssim(x, y) == pytest.approx(metrics.ms_ssim(y, x), abs=1e-6)
    assert metrics.compute_per_image("ms-ssim-rgb", x, y) == pytest.approx(GOLDEN["values"][
        "kodim01_crop161x203_jpeg_q20"], abs=MSSSIM_ATOL)
    assert metrics.compute_per_image("psnr-rgb", x, y) == metrics.psnr(x, y)
    # more noise -> lower MS-SSIM
    noisy = [np.clip(x.astype(np.int64) + golden.hash_noise(x.shape, a), 0, 255).astype(np.uint8) for a in (4, 16)]
    assert metrics.ms_ssim(x, noisy[0]) > metrics.ms_ssim(x, noisy[1])
