"""The evaluation path with real files: bpp from file bytes, rate points, JSON/CSV outputs, errors."""

import csv
import json

import numpy as np
import pytest

from gencomp_jax import metrics
from gencomp_jax.codecs import bitstream
from gencomp_jax.eval import evaluate as ev
from gencomp_jax.eval import results as results_lib
from tests.eval.toy_codecs import BitplaneCodec, OnePointCodec


def _images(n=3, h=20, w=28):
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
    return [(f"img{i}", np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)) for i in range(n)]


def test_progressive_codec_one_point_per_option(tmp_path):
    images = _images()
    codec = BitplaneCodec(planes=3)
    out_json = tmp_path / "res" / "toy.json"
    files = tmp_path / "files"
    res = ev.evaluate_codec(codec, images, name="toy", description="bit planes", metrics=("psnr-rgb",),
                            out_json=out_json, workdir_for_files=files, progress=False)
    r = res["results"]
    assert res["rate_points"] == [{"steps": 1}, {"steps": 2}, {"steps": 3}]
    # bpp from the real (truncated) file bytes, computed independently here
    for k in range(3):
        sizes = [len(bitstream.prefix(codec.compress(im), k + 1)) for _, im in images]
        assert r["bpp"][k] == pytest.approx(np.mean([8 * s / (20 * 28) for s in sizes]), rel=1e-12)
        # bpp_est = segment bits only (no header/framing), so strictly below the file bpp
        assert r["bpp_est"][k] < r["bpp"][k]
        recs = [codec.decompress(codec.compress(im), steps=k + 1) for _, im in images]
        expect = np.mean([metrics.psnr(im, rec) for (_, im), rec in zip(images, recs)])
        assert r["psnr-rgb"][k] == pytest.approx(expect, abs=1e-9)
    assert np.all(np.diff(r["bpp"]) > 0) and np.all(np.diff(r["psnr-rgb"]) > 0)
    assert all(t >= 0 for t in r["encoding_time"] + r["decoding_time"])
    # files really exist: the full file and one truncated file per non-final point
    for name, im in images:
        assert (files / f"{name}.gcz").read_bytes() == codec.compress(im)
        assert (files / f"{name}.p0.gcz").stat().st_size < (files / f"{name}.gcz").stat().st_size
        assert not (files / f"{name}.p2.gcz").exists()  # 3 steps = the whole file
    # outputs: the JSON round-trips, the CSV has one row per image and point
    assert results_lib.load_results(out_json)["results"] == r
    saved = json.loads(out_json.read_text())
    assert saved["name"] == "toy" and saved["num_images"] == 3 and "per_image" not in saved
    with open(tmp_path / "res" / "toy_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert {row["options"] for row in rows} == {'{"steps": 1}', '{"steps": 2}', '{"steps": 3}'}
    row = rows[0]
    assert float(row["bpp"]) == pytest.approx(int(row["bytes"]) * 8 / (20 * 28))


def test_plain_codec_single_point():
    images = _images(n=2)
    res = ev.evaluate_codec(OnePointCodec(planes=2), images, name="one", metrics=("psnr-rgb",), progress=False)
    r = res["results"]
    assert res["rate_points"] == [{}] and len(r["bpp"]) == 1
    sizes = [len(OnePointCodec(planes=2).compress(im)) for _, im in images]
    assert r["bpp"][0] == pytest.approx(np.mean(sizes) * 8 / (20 * 28))
    assert set(r) == {"bpp", "bpp_est", "psnr-rgb", "encoding_time", "decoding_time"}


def test_compress_with_bits_gives_bpp_est_without_a_second_pass():
    """A progressive codec's step bits from its one encoding pass give bpp_est of every point (steps=k:
    the first k), equal to what estimate_bits computes; options override the codec's rate points."""
    class WithBits(BitplaneCodec):
        def compress_with_bits(self, image):
            return self.compress(image), [8.0 * len(s) for s in self._segments(image)]

        def bits_at(self, step_bits, *, steps=None):
            return sum(step_bits[:steps])

        def estimate_bits(self, image, **options):
            raise AssertionError("evaluation must use the step bits of compress_with_bits")

    images = _images(n=2)
    kw = dict(name="b", metrics=("psnr-rgb",), options={"steps": [0, 2, 3]}, progress=False)
    res = ev.evaluate_codec(WithBits(planes=3), images, **kw)
    ref = ev.evaluate_codec(BitplaneCodec(planes=3), images, **kw)
    assert res["rate_points"] == [{"steps": 0}, {"steps": 2}, {"steps": 3}]
    assert res["results"]["bpp_est"] == pytest.approx(ref["results"]["bpp_est"], rel=1e-12)
    assert res["results"]["bpp_est"][0] == 0 < res["results"]["bpp_est"][1] < res["results"]["bpp_est"][2]
    assert res["results"]["bpp"] == ref["results"]["bpp"]


def test_realism_plumbing(monkeypatch):
    from gencomp_jax.metrics import fid

    calls = []

    def fake_realism(refs, recs, **kw):
        calls.append(kw)
        # a distance that must decrease with more bit planes
        return {"fid": float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(refs, recs)])),
                "kid": 0.0, "kid_std": 0.0, "num_patches": len(refs)}

    monkeypatch.setattr(fid, "realism_metrics", fake_realism)
    res = ev.evaluate_codec(BitplaneCodec(planes=2), _images(n=2), name="t", metrics=("psnr-rgb",),
                            realism={"features": "vgg16", "patch_size": 16}, progress=False)
    assert calls == [{"features": "vgg16", "patch_size": 16}] * 2
    r = res["results"]
    assert len(r["fid"]) == 2 and r["fid"][1] < r["fid"][0]
    assert results_lib.metric_keys([res]) == ["psnr-rgb", "fid", "kid"]


def test_errors():
    with pytest.raises(ValueError, match="at least 161 px"):
        ev.evaluate_codec(BitplaneCodec(), _images(n=1), name="x", metrics=("psnr-rgb", "ms-ssim"), progress=False)
    with pytest.raises(ValueError, match="Unknown metric 'fid'"):
        ev.evaluate_codec(BitplaneCodec(), _images(n=1), name="x", metrics=("fid",), progress=False)
    with pytest.raises(ValueError, match=r"must be uint8 \[H, W, 3\]"):
        ev.evaluate_codec(BitplaneCodec(), [np.zeros((8, 8, 3), np.float32)], name="x", progress=False)

    class Broken(OnePointCodec):
        def decompress(self, data, **kw):
            return super().decompress(data)[:-1]

    with pytest.raises(ValueError, match="must return uint8 of the input's shape"):
        ev.evaluate_codec(Broken(), _images(n=1), name="x", metrics=("psnr-rgb",), progress=False)


@pytest.fixture(scope="module")
def hyperprior(tmp_path_factory):
    from tests.eval.toy_codecs import tiny_hyperprior_workdir

    workdir = tmp_path_factory.mktemp("hp")
    tiny_hyperprior_workdir(workdir)
    from gencomp_jax.eval import loading

    return loading.load_codec(workdir)


def test_hyperprior_end_to_end(hyperprior, tmp_path):
    """A real codec (random tiny hyperprior from a checkpoint): bpp from the real files, decode from disk."""
    codec = hyperprior
    images = _images(n=2, h=40, w=56)  # not multiples of the stride 64: padded and cropped back
    res = ev.evaluate_codec(codec, images, name="hp", metrics=("psnr-rgb",), workdir_for_files=tmp_path,
                            progress=False)
    r = res["results"]
    files = [(tmp_path / f"{n}.gcz").read_bytes() for n, _ in images]
    assert r["bpp"] == [pytest.approx(np.mean([8 * len(f) / (40 * 56) for f in files]), rel=1e-12)]
    assert r["bpp_est"][0] == pytest.approx(np.mean([codec.estimate_bits(im) / (40 * 56) for _, im in images]))
    recs = [codec.decompress(f) for f in files]
    expect = np.mean([metrics.psnr(im, rec) for (_, im), rec in zip(images, recs)])
    assert r["psnr-rgb"][0] == pytest.approx(expect, abs=1e-9)
    assert bitstream.peek(files[0]).codec == "hyperprior"


def test_ms_ssim_in_evaluation():
    """ms-ssim through evaluate: same value as the metric on the codec's reconstruction (161x203 images)."""
    codec = OnePointCodec(planes=2)
    images = _images(n=1, h=161, w=203)
    res = ev.evaluate_codec(codec, images, name="x", metrics=("ms-ssim",), progress=False)
    rec = codec.decompress(codec.compress(images[0][1]))
    assert res["results"]["ms-ssim-rgb"][0] == pytest.approx(metrics.ms_ssim(images[0][1], rec), abs=1e-12)
    assert 0 < res["results"]["ms-ssim-rgb"][0] < 1
    # CompressAI's spelling of the metric names the same measurement
    again = ev.evaluate_codec(codec, images, name="x", metrics=("ms-ssim", "psnr"), progress=False)  # older spellings
    assert again["results"]["ms-ssim-rgb"] == res["results"]["ms-ssim-rgb"] and "psnr-rgb" in again["results"]
