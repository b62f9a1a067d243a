"""LPIPS: identity, golden values from the official PyTorch implementation, JPEG monotonicity."""

import hashlib
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from gencomp_jax.metrics.lpips import lpips_distance

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "lpips_golden.json"


def _kodak(name="kodim01.png"):
    return np.asarray(Image.open(REPO / "data" / "kodak" / name).convert("RGB"))


def _golden_pair():
    # identical construction to tests/golden/make_lpips_golden.py:golden_pair (sha256 checked below)
    x = np.ascontiguousarray(_kodak()[100:164, 200:296])
    noise = np.random.default_rng(0).normal(0.0, 12.0, size=x.shape)
    y = np.clip(np.round(x.astype(np.float64) + noise), 0, 255).astype(np.uint8)
    z = np.ascontiguousarray(_kodak("kodim02.png")[100:164, 200:296])
    return x, y, z


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identity_zero_and_golden(net):
    g = json.loads(GOLDEN.read_text())
    x, y, z = _golden_pair()
    for a, key in ((x, "sha256_x"), (y, "sha256_y"), (z, "sha256_z")):
        assert hashlib.sha256(a.tobytes()).hexdigest() == g[key], "golden input pair changed"
    d = lpips_distance(np.stack([x, x, x]), np.stack([x, y, z]), net=net)
    assert d.shape == (3,) and d.dtype == np.float32
    assert d[0] == 0.0
    # official PyTorch lpips 0.1.4 (see make_lpips_golden.py): float32 on different backends -> 1e-5 rel
    np.testing.assert_allclose(d[1], g[f"{net}_x_y"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d[2], g[f"{net}_x_z"], rtol=1e-4, atol=1e-6)
    # HWC input -> python float, same value; symmetric
    s = lpips_distance(y, x, net=net)
    assert isinstance(s, float)
    np.testing.assert_allclose(s, d[1], rtol=1e-5)


def test_one_pixel_change_is_small_positive():
    x, _, _ = _golden_pair()
    y = x.copy()
    y[10, 10] = 255 - y[10, 10]
    d = lpips_distance(x, y)
    assert 0.0 < d < 0.01


def test_monotone_in_jpeg_quality():
    x = np.ascontiguousarray(_kodak("kodim23.png")[200:264, 300:396])
    recs = []
    for q in (5, 15, 35, 60, 90):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=q)
        recs.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    d = lpips_distance(np.stack([x] * len(recs)), np.stack(recs), net="alex", batch_size=3)
    assert np.all(np.diff(d) < 0), d  # strictly better with higher quality
    assert d[-1] > 0


def test_bad_inputs_raise_clear_errors():
    x = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        lpips_distance(x.astype(np.float32), x)
    with pytest.raises(ValueError, match="shapes differ"):
        lpips_distance(x, x[:32])
    with pytest.raises(ValueError, match="net must be"):
        lpips_distance(x, x, net="squeeze")
    with pytest.raises(ValueError, match="at least 32"):
        lpips_distance(x[:16, :16], x[:16, :16])
    with pytest.raises(ValueError, match="3 channels"):
        lpips_distance(x[..., :1], x[..., :1])


def test_missing_weights_is_a_file_not_found_error(monkeypatch, tmp_path):
    """The CLI reports missing weights by catching FileNotFoundError (no class-name tricks)."""
    from gencomp_jax.metrics import lpips

    monkeypatch.setattr(lpips, "_weights_path", lambda net_type: str(tmp_path / f"{net_type}.ckpt"))
    lpips._load.cache_clear()
    try:
        x = np.zeros((32, 32, 3), np.uint8)
        with pytest.raises(FileNotFoundError, match="reinstall"):
            lpips_distance(x, x, net="vgg")
    finally:
        lpips._load.cache_clear()


def test_first_use_inside_a_traced_loss_leaks_no_tracer():
    """CDC's loss (rho > 0) is often the first user of the LPIPS weights, inside a jit trace: the cached
    weights must be concrete arrays, so that a later evaluation outside the trace works."""
    import jax
    import jax.numpy as jnp

    from gencomp_jax.metrics import lpips

    lpips._load.cache_clear()
    try:
        x = jnp.zeros((1, 32, 32, 3))

        @jax.jit
        def loss(y):
            apply, params = lpips.differentiable("alex")
            return jnp.sum(apply(params, x, y))
        g = jax.grad(loss)(x + 0.1)
        assert np.all(np.isfinite(np.asarray(g)))
        im = np.zeros((32, 32, 3), np.uint8)
        assert float(np.asarray(lpips_distance(im, im, net="alex")).reshape(-1)[0]) == 0.0
        assert not isinstance(lpips.differentiable("alex")[1]["params"], jax.core.Tracer)
    finally:
        lpips._load.cache_clear()
