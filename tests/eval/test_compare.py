"""The comparison of every method (gencomp_jax/eval/compare.py) end to end on its `tiny` preset, checked from the
files it wrote, and notebooks/compare.ipynb executed on that output.

`experiments/compare.py --config configs/compare.py:tiny` runs once per module in a fresh process (the launcher
as a user runs it; JAX_THREEFRY_PARTITIONABLE=0 as in tests/test_notebooks.py: only which random bits initialise
the tiny models changes, the compiles are faster on XLA:CPU). What is checked, without trusting its numbers:
  - every results JSON's bpp is the mean over the images of (size of the kept file) * 8 / pixels, sizes read here
    with os.stat; .gcz files carry the container header of the entry's method, a progressive point's file is a
    prefix of the image's whole file, a classical point's file is a real JPEG / WebP that Pillow re-encodes here
    to the same bytes;
  - table.md has one row per curve of the summary (and so per method entry that ran), the anchor row says so;
  - rd.png is a PNG with three panels (three axes frames counted in its pixels);
  - the FID of 10 patches is not reported and the table says why.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"   # cache even the many small compiles of 11 methods
    env["JAX_THREEFRY_PARTITIONABLE"] = "0"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("MPLBACKEND", None)
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if os.environ.get("GENCOMP_COMPARE_TINY_OUT"):   # re-check a finished tiny run without running it again
        out = pathlib.Path(os.environ["GENCOMP_COMPARE_TINY_OUT"])
        return out, json.loads((out / "summary.json").read_text())
    out = tmp_path_factory.mktemp("compare") / "tiny"
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "compare.py"),
                           "--config", str(REPO / "configs" / "compare.py") + ":tiny", "--workdir", str(out),
                           "--noprogress"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, json.loads((out / "summary.json").read_text())


def _pixels(root: pathlib.Path) -> dict[str, int]:
    out = {}
    for p in (root / "images").glob("*.png"):
        with Image.open(p) as im:
            out[p.stem] = im.size[0] * im.size[1]
    return out


def test_every_bpp_is_the_size_of_files_written(tiny):
    root, summary = tiny
    from gencomp_jax import registry
    from gencomp_jax.codecs import bitstream

    registry.discover()

    pixels = _pixels(root)
    assert len(pixels) == len(summary["images"]) == 2
    kinds = set()
    for c in summary["curves"]:
        if c["missing"]:
            continue
        res = json.loads((root / c["json"]).read_text())
        kinds.add(res["kind"])
        assert {"bpp", "bpp_est", "psnr-rgb", "lpips-alex", summary["kid_key"], "encoding_time",
                "decoding_time"} <= set(res["results"]), c["name"]
        assert len(res["points"]) == len(res["results"]["bpp"]) >= 1
        for bpp, point in zip(res["results"]["bpp"], res["points"]):
            files = [root / f for f in point["files"]]
            assert len(files) == len(pixels)
            sizes = [f.stat().st_size * 8 / pixels[f.name.split(".")[0]] for f in files]
            assert math.isclose(bpp, float(np.mean(sizes)), rel_tol=1e-12), (c["name"], point, bpp, sizes)
            if res["kind"] == "classical":
                continue
            for f in files:
                header, _ = bitstream.unpack(f.read_bytes(), allow_partial=True)
                assert header.image_shape == (64, 64, 3)
                whole = f.with_name(f.name.split(".")[0] + ".gcz")
                assert whole.read_bytes().startswith(f.read_bytes())   # a progressive prefix, or the file itself
    assert kinds == {"train", "pretrained", "classical"} or kinds == {"train", "classical"}


def test_classical_files_are_real_jpeg_and_webp_of_their_quality(tiny):
    root, summary = tiny
    pixels = _pixels(root)
    seen = set()
    for c in summary["curves"]:
        res = json.loads((root / c["json"]).read_text()) if not c["missing"] else None
        if not res or res["kind"] != "classical":
            continue
        fmt = {"jpeg": "JPEG", "webp": "WEBP"}[res["entry"]]
        for bpp, point in zip(res["results"]["bpp"], res["points"]):
            quality = int(point["run"].split("=")[1])
            for f in point["files"]:
                f = root / f
                image = np.asarray(Image.open(root / "images" / (f.name.split(".")[0] + ".png")).convert("RGB"))
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, format=fmt, quality=quality)
                assert f.read_bytes() == buf.getvalue()
                with Image.open(f) as im:
                    assert im.format == fmt
            assert math.isclose(bpp, np.mean([(root / f).stat().st_size * 8 / pixels[pathlib.Path(f).name.split(".")[0]]
                                              for f in point["files"]]), rel_tol=1e-12)
        seen.add(fmt)
    assert seen == {"JPEG", "WEBP"}


def test_table_has_a_row_per_method_and_the_figure_three_panels(tiny):
    root, summary = tiny
    table = (root / "table.md").read_text()
    main, points = table.split("Every point")
    rows = [l for l in main.splitlines() if l.startswith("| ")]
    names = [c["name"] for c in summary["curves"] if not c["missing"]]
    assert len(names) >= 15
    for name in names:
        assert sum(r.startswith(f"| {name} |") for r in rows) == 1, name
        assert sum(l.startswith(f"| {name} |") for l in points.splitlines()) >= 1, name
    anchor = next(c["name"] for c in summary["curves"] if c["key"] == summary["anchor"])
    assert next(r for r in rows if r.startswith(f"| {anchor} |")).split("|")[4].strip() == "0 % (anchor)"
    assert "fd-alex not reported: 10 patches < 256 feature dimensions" in table
    assert "MS-SSIM not reported" in table

    with Image.open(root / "rd.png") as im:
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB")).astype(int)
    dark = rgb.sum(-1) < 150                        # the axes frames (black spines); grid lines are light
    w = dark.shape[1]
    frames = 0
    for row in dark:
        runs, n = 0, 0
        for v in np.append(row, False):
            if v:
                n += 1
            else:
                runs, n = runs + (n > 0.15 * w), 0
        frames = max(frames, runs)
    assert frames == 3


def test_compare_notebook_runs_on_the_tiny_output(tiny, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from tests.test_notebooks import KERNEL, _write_kernelspec

    root, summary = tiny
    monkeypatch.setenv("JUPYTER_PATH", str(_write_kernelspec(tmp_path / "jupyter")))
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(REPO / "notebooks" / "compare.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    nb.cells[tagged[0]].source = f"RESULTS_DIR = {str(root)!r}"
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    NotebookClient(nb, kernel_name=KERNEL, timeout=300, allow_errors=False,
                   resources={"metadata": {"path": str(run_dir)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    drawn = sum(not c["missing"] for c in summary["curves"])
    assert f"curves drawn: {drawn}" in text
    points = sum(len(json.loads((root / c["json"]).read_text())["points"]) for c in summary["curves"]
                 if not c["missing"])
    assert f"{points} points: bpp equals the files' bytes" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs) >= 1


def test_table_bd_rate_and_bpp_at_targets_on_known_curves(tmp_path):
    """write_table on hand-made curves: half the anchor's rate at every PSNR is a BD-rate of -50 %; the bpp at a
    target is interpolated linearly in log(bpp) between the bracketing points (here their geometric mean), and a
    target outside a curve's range is "—"."""
    from gencomp_jax.eval import compare

    def curve(key, bpp, psnr, lpips):
        return {"name": key.upper(), "key": key, "results": {"bpp": bpp, "psnr-rgb": psnr, "lpips-alex": lpips},
                "points": [{"run": "r", "options": {}} for _ in bpp]}

    anchor = curve("a", [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0], [0.5, 0.3, 0.2, 0.1])
    half = curve("b", [0.05, 0.1, 0.2, 0.4], [25.0, 28.0, 31.0, 34.0], [0.5, 0.3, 0.2, 0.1])
    high = curve("c", [1.0, 2.0], [35.0, 40.0], [0.05, 0.02])
    path = compare.write_table([anchor, half, high], tmp_path / "t.md", anchor_key="a",
                               targets={"psnr-rgb": 29.5, "lpips-alex": 0.25}, kid_key="kid", fd_key="fid")
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in path.read_text().split("Every point")[0].splitlines() if l.startswith("| ")}
    assert rows["A"][2:] == ["0 % (anchor)", f"{math.sqrt(0.2 * 0.4):.3f}", f"{math.sqrt(0.2 * 0.4):.3f}"]
    assert rows["B"][2:] == ["-50.0 %", f"{math.sqrt(0.1 * 0.2):.3f}", f"{math.sqrt(0.1 * 0.2):.3f}"]
    assert rows["C"][2:] == ["—", "—", "—"]      # no PSNR overlap with the anchor; targets below its range


@pytest.mark.parametrize("preset", ["tiny", "runlocal", "imagenet64"])
def test_every_preset_plans_a_run_per_sweep_value(preset, tmp_path):
    """Each preset builds every method's training config (the methods' own config files, the comparison's data,
    the entry's overrides): a renamed key in a method's config fails here, not an hour into a run."""
    from gencomp_jax.config_utils import load_config
    from gencomp_jax.eval import compare

    config = load_config(f"{REPO / 'configs' / 'compare.py'}:{preset}")
    plan = compare.plan_runs(config, tmp_path)
    trained = [n for n in config.order if config.methods[n].kind == "train"]
    assert list(plan) == trained and config.order[0] == config.anchor == "hyperprior"
    for name, runs in plan.items():
        entry = config.methods[name]
        values = list(entry.sweep_values) or [0]
        if entry.stage1_from:
            values = [str(pathlib.Path(r["workdir"]).resolve()) for r in plan[entry.stage1_from]]
            values = values[:entry.stage1_runs or None]
        assert [r["value"] for r in runs] == values, name
        for r in runs:
            cfg = r["config"]
            assert cfg.method == entry.config.split(":")[0]
            assert compare._get(cfg, r["key"]) == r["value"]
            assert cfg.data.source == config.data.source
            assert pathlib.Path(r["workdir"]).is_relative_to(tmp_path / "runs" / name)
