"""Results files and Bjøntegaard deltas against hand-computed cases."""

import json
import math

import numpy as np
import pytest

from gencomp_jax.eval import results as R


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_hand_computed(method):
    # log R_A = 0.2 p - 7, log R_B = 0.18 p - 6.5 (both exactly linear: both interpolants reproduce them).
    pa = np.array([30.0, 32.0, 34.0, 36.0])
    pb = pa + 1.0  # B spans [31, 37]; overlap [31, 36], midpoint 33.5
    ra, rb = np.exp(0.2 * pa - 7), np.exp(0.18 * pb - 6.5)
    # mean over p in [31,36] of (0.18p - 6.5) - (0.2p - 7) = -0.02 * 33.5 + 0.5 = -0.17
    expected = (math.exp(-0.17) - 1) * 100  # -15.6318...
    assert R.bd_rate(ra, pa, rb, pb, method=method) == pytest.approx(expected, abs=1e-9)
    # a constant rate factor is exactly that factor, in percent, for any interpolant
    curved = np.array([27.0, 29.5, 31.0, 31.8])
    assert R.bd_rate(ra, curved, 0.9 * ra, curved, method=method) == pytest.approx(-10.0, abs=1e-9)
    # anchor vs itself is 0; swapping is the inverse factor
    assert R.bd_rate(ra, pa, ra, pa, method=method) == pytest.approx(0.0, abs=1e-12)
    inv = R.bd_rate(rb, pb, ra, pa, method=method)
    assert (1 + inv / 100) * (1 + expected / 100) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_psnr_hand_computed(method):
    # p_A = 4 ln R + 40, p_B = 5 ln R + 41; ln R_A in {-2,-1.5,-1,-0.5}, ln R_B in {-1.75,...,-0.25}
    la = np.array([-2.0, -1.5, -1.0, -0.5])
    lb = la + 0.25
    pa, pb = 4 * la + 40, 5 * lb + 41
    # overlap [-1.75, -0.5], midpoint -1.125: mean diff = (5-4)(-1.125) + 1 = -0.125 dB
    assert R.bd_psnr(np.exp(la), pa, np.exp(lb), pb, method=method) == pytest.approx(-0.125, abs=1e-9)
    # a constant +0.5 dB shift
    assert R.bd_psnr(np.exp(la), pa, np.exp(la), pa + 0.5, method=method) == pytest.approx(0.5, abs=1e-9)


def test_bd_errors():
    with pytest.raises(ValueError, match="do not overlap"):
        R.bd_rate([0.1, 0.2], [30, 31], [0.3, 0.4], [32, 33])
    with pytest.raises(ValueError, match="at least 4 points"):
        R.bd_rate([0.1, 0.2], [30, 31], [0.1, 0.2], [30, 31], method="cubic")
    with pytest.raises(ValueError, match="repeated"):
        R.bd_rate([0.1, 0.2], [30, 30], [0.1, 0.2], [30, 31])


def _res(name, bpp, psnr, ms):
    return {"name": name, "description": "d", "results": {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim": ms,
                                                          "encoding_time": [0.1] * len(bpp)}}


def test_load_merge_and_bd_from_results(tmp_path):
    a1, a2 = _res("A", [0.5], [32.0], [0.97]), _res("A", [0.2, 1.0], [29.0, 35.0], [0.93, 0.985])
    a2["results"]["lpips-alex"] = [0.2, 0.05]
    merged = R.merge_results([a1, a2])
    assert merged["results"]["bpp"] == [0.2, 0.5, 1.0]
    assert merged["results"]["psnr-rgb"] == [29.0, 32.0, 35.0]
    assert "lpips-alex" not in merged["results"]  # not in every item
    path = tmp_path / "a.json"
    R.save_results(merged, path)
    assert R.load_results(path)["results"] == merged["results"]
    b = _res("B", [0.18, 0.45, 0.9], [29.0, 32.0, 35.0], [0.93, 0.97, 0.985])
    bd = R.bd_from_results(merged, b)
    assert bd["bd_rate"] == pytest.approx(-10.0, abs=1e-9)
    assert bd["bd_quality"] > 0
    bd_ms = R.bd_from_results(merged, b, metric="ms-ssim")
    assert bd_ms["bd_rate"] == pytest.approx(-10.0, abs=1e-9)
    assert R.metric_keys([merged, a2]) == ["psnr-rgb", "ms-ssim-rgb", "lpips-alex"]


def test_load_errors(tmp_path):
    with pytest.raises(R.ResultsError, match="does not exist"):
        R.load_results(tmp_path / "missing.json")
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(R.ResultsError, match="not valid JSON"):
        R.load_results(p)
    p.write_text(json.dumps({"results": {"bpp": [1, 2], "psnr-rgb": [3]}}))
    with pytest.raises(R.ResultsError, match="different lengths"):
        R.load_results(p)
    p.write_text(json.dumps([1, 2]))
    with pytest.raises(R.ResultsError, match="not a results file"):
        R.load_results(p)


def test_plot_rd(tmp_path):
    from gencomp_jax.eval import plot

    a = _res("A", [0.2, 0.5, 1.0], [29.0, 32.0, 35.0], [0.93, 0.97, 0.985])
    a["results"]["lpips-alex"] = [0.3, 0.2, 0.1]
    a["results"]["fid"] = [20.0, 10.0, 5.0]
    a["results"]["kid_std"] = [0.1, 0.1, 0.1]
    b = _res("B", [0.3], [30.0], [0.95])
    b2 = _res("B", [0.6], [33.0], [0.975])  # same method, another file: one curve
    out = plot.plot_rd([a, b, b2], tmp_path / "rd.png", reference="balle2018")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert R.metric_keys([a, b]) == ["psnr-rgb", "ms-ssim-rgb", "lpips-alex", "fid"]  # one panel each
    with pytest.raises(ValueError, match="no results contain"):
        plot.plot_rd([a], tmp_path / "x.png", metrics=["kid"])
    with pytest.raises(ValueError, match="unknown reference"):
        plot.plot_rd([a], tmp_path / "x.png", reference="balle2017")
    # the published reference is the DESIGN.md table (bundled file, more digits), labelled as published
    ref = R.load_reference("balle2018")
    assert "published" in ref["name"] and ref["results"]["psnr-rgb"][3] == pytest.approx(32.55, abs=6e-3)


# The first three points of CompressAI's own results file
# results/image/kodak/compressai-bmshj2018-hyperprior_mse_cpu.json (its older key spelling).
COMPRESSAI_OLD = {"name": "bmshj2018-hyperprior", "description": "Inference (ans)",
                  "results": {"psnr": [27.58153679333392, 29.19669412138477, 30.972168705499175],
                              "ms-ssim": [0.9173671156167984, 0.9420618464549383, 0.9610564212004343],
                              "bpp": [0.13129340277777776, 0.20889282226562503, 0.3198581271701389],
                              "encoding_time": [0.697, 0.681, 0.693], "decoding_time": [0.911, 0.885, 0.895]}}


def test_compressai_files_load_with_every_key_spelling(tmp_path):
    from gencomp_jax.eval import plot

    r = COMPRESSAI_OLD["results"]
    current = {"name": "new", "results": {"bpp": r["bpp"], "psnr-rgb": r["psnr"], "ms-ssim-rgb": r["ms-ssim"]}}
    db_only = {"name": "db", "results": {"bpp": r["bpp"], "psnr-rgb": r["psnr"],
                                         "ms-ssim-db-rgb": list(-10 * np.log10(1 - np.array(r["ms-ssim"])))}}
    loaded = []
    for i, res in enumerate((COMPRESSAI_OLD, current, db_only)):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(res))
        loaded.append(R.load_results(path))
        got = loaded[-1]["results"]
        assert list(got)[:1] == ["psnr-rgb" if i == 0 else "bpp"] and "ms-ssim" not in got
        assert got["psnr-rgb"] == r["psnr"] and got["ms-ssim-rgb"] == pytest.approx(r["ms-ssim"], abs=1e-12)
        assert R.metric_keys([loaded[-1]]) == ["psnr-rgb", "ms-ssim-rgb"]
    # a key under the library's own name wins over its alias
    both = R.validate_results({"results": {"bpp": [1.0], "psnr": [1.0], "psnr-rgb": [2.0]}})
    assert both["results"] == {"bpp": [1.0], "psnr-rgb": [2.0]}
    # BD between a CompressAI file and a shifted copy of it, by either spelling of the metric
    ours = {"name": "ours", "results": {"bpp": [0.9 * b for b in r["bpp"]], "psnr-rgb": r["psnr"],
                                        "ms-ssim": r["ms-ssim"]}}
    for metric in ("psnr", "ms-ssim-rgb"):
        assert R.bd_from_results(loaded[0], ours, metric=metric)["bd_rate"] == pytest.approx(-10.0, abs=1e-9)
    out = plot.plot_rd([*loaded, ours], tmp_path / "rd.png", metrics=["psnr", "ms-ssim-rgb"])
    assert out.read_bytes()[:4] == b"\x89PNG"
