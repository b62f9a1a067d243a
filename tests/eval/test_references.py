"""Bundled published curves (gencomp_jax/eval/references/*.json): every file loads and says where it is from;
CompressAI's own Kodak results plot unchanged."""

import json

import numpy as np
import pytest

from gencomp_jax import cli
from gencomp_jax.eval import results as R


def test_every_bundled_reference_loads_with_its_source():
    names = R.reference_names()
    # the UQDM repository's two tables, CompressAI's two Kodak models and the paper figures of Ballé 2018
    for name in ("balle2018", "kodak-compressai-bmshj2018-hyperprior", "kodak-compressai-mbt2018-mean",
                 "imagenet64-uqdm-flow", "imagenet64-cdc-rho0.9", "imagenet64-diffc-ideal-flow", "cifar10-jpeg2000",
                 "imagenet64-balle2018", "imagenet64-bpg", "imagenet64-jpeg"):
        assert name in names
    assert len(names) == 30
    for name in names:
        ref = R.load_reference(name)
        src = ref["source"]
        assert "Published" in ref["description"] and src["repository"] in ref["description"]
        assert src["path"] in ref["description"] and len(src["commit"]) == 40
        r = ref["results"]
        assert "psnr-rgb" in r and len(r["bpp"]) >= 5
        assert np.all(np.diff(r["bpp"]) > 0), name  # one curve, rates rising
        psnr = np.array(r["psnr-rgb"])
        assert np.all(np.diff(psnr[np.isfinite(psnr)]) > 0) and np.all(psnr[np.isfinite(psnr)] > 5), name
        if src["repository"] == "mandt-lab/uqdm":
            assert set(r) == {"bpp", "psnr-rgb", "fid"}
    with pytest.raises(R.ResultsError, match="unknown reference 'balle2017'.*balle2018"):
        R.load_reference("balle2017")


def test_reference_values_against_design_tables():
    """Spot checks against the figures DESIGN.md quotes (typed from the papers / repositories separately)."""
    balle = R.load_reference("balle2018")["results"]
    np.testing.assert_allclose(balle["bpp"], [0.1152, 0.1857, 0.3018, 0.4690, 0.6864, 0.9669, 1.3074, 1.7275], atol=6e-5)
    np.testing.assert_allclose(balle["psnr-rgb"], [27.11, 28.68, 30.62, 32.55, 34.58, 36.72, 38.81, 40.79], atol=6e-3)
    hp = R.load_reference("kodak-compressai-bmshj2018-hyperprior")["results"]
    np.testing.assert_allclose([hp["bpp"][i] for i in (0, 2, 4)], [0.131, 0.320, 0.669], atol=6e-4)
    np.testing.assert_allclose([hp["psnr-rgb"][i] for i in (0, 2, 4)], [27.58, 30.97, 34.53], atol=6e-3)
    uqdm = R.load_reference("imagenet64-uqdm-denoise")["results"]
    np.testing.assert_allclose(uqdm["bpp"][1:], [0.58, 2.17, 7.16, 15.15], atol=6e-3)
    np.testing.assert_allclose(uqdm["psnr-rgb"][1:], [21.57, 30.02, 42.80, 58.97], atol=6e-3)
    cdc = R.load_reference("imagenet64-cdc-rho0")["results"]
    assert (cdc["bpp"][0], cdc["psnr-rgb"][0], cdc["fid"][0]) == pytest.approx((0.412, 24.51, 37.1), abs=6e-2)
    flow = R.load_reference("imagenet64-diffc-ideal-flow")["results"]
    assert (flow["bpp"][3], flow["psnr-rgb"][3], flow["fid"][3]) == pytest.approx((0.380, 21.71, 42.9), abs=6e-2)
    j2k = R.load_reference("cifar10-jpeg2000")["results"]
    assert j2k["psnr-rgb"][-1] == float("inf")  # the lossless point, as the source lists it


# CompressAI's results/image/kodak/compressai-mbt2018-mean_mse_cpu.json as the repository has it (first 3 points;
# its own keys, description and times).
COMPRESSAI_MBT = {"name": "mbt2018-mean", "description": "Inference (ans)", "results": {
    "psnr-rgb": [27.699472968534337, 29.358805876639696, 31.128916719551516],
    "ms-ssim-rgb": [0.9178414369622866, 0.9430568714936575, 0.9614850729703903],
    "bpp": [0.12392171223958336, 0.19798109266493058, 0.3072441948784722],
    "encoding_time": [0.7350994845231374, 0.7473582625389099, 0.7072189052899679],
    "decoding_time": [0.9632014830907186, 0.9380105833212534, 0.9072946906089783]}}


def test_compressai_kodak_json_plots_unchanged(tmp_path, capsys):
    path = tmp_path / "compressai-mbt2018-mean_mse_cpu.json"
    path.write_text(json.dumps(COMPRESSAI_MBT, indent=2))
    before = path.read_bytes()
    png = tmp_path / "rd.png"
    assert cli.main(["plot", str(path), "-o", str(png), "--reference", "balle2018,kodak-compressai-mbt2018-mean",
                     "--reference", "imagenet64-uqdm-flow"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes() == before
    bare = tmp_path / "bare.png"
    assert cli.main(["plot", str(path), "-o", str(bare)]) == 0
    assert bare.read_bytes() != png.read_bytes()  # the references were drawn
    got = R.load_results(path)["results"]
    assert got["ms-ssim-rgb"] == COMPRESSAI_MBT["results"]["ms-ssim-rgb"]
    assert got["psnr-rgb"] == COMPRESSAI_MBT["results"]["psnr-rgb"]
    bundled = R.load_reference("kodak-compressai-mbt2018-mean")["results"]
    assert bundled["bpp"][:3] == got["bpp"] and bundled["psnr-rgb"][:3] == got["psnr-rgb"]
    assert cli.main(["plot", "--list-references"]) == 0
    out = capsys.readouterr().out
    assert "imagenet64-uqdm-flow" in out and "mandt-lab/uqdm eval/imagenet.yml" in out
    assert cli.main(["plot", str(path), "-o", str(png), "--reference", "nope"]) == 2
    assert "unknown reference 'nope'" in capsys.readouterr().err
