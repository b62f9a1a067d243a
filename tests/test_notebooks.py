"""Executes notebooks/quickstart.ipynb in a fresh kernel on its smallest setting and checks what it wrote.

The cell tagged "parameters" is replaced by SMALL (a few training steps of a tiny hyperprior, two
192x192 Kodak crops: 192 is a multiple of the codec's stride 64 and above MS-SSIM's 161 px minimum).
The kernel is the interpreter running the tests (a kernelspec written to a temporary JUPYTER_PATH),
so this works on a fresh machine where only `pip install -e .[test]` ran. The kernel inherits
JAX_COMPILATION_CACHE_DIR (the Makefile's, or the repository's .jax_cache like tests/conftest.py),
and JAX_THREEFRY_PARTITIONABLE=0: on XLA:CPU the partitionable threefry (JAX's default) makes the
compile of parameter init ~5x slower (4.2 s vs 0.8 s CPU for g_a alone); it only changes which random
bits initialise the tiny model, which nothing here depends on. Cold cache: ~29 s of kernel CPU
instead of ~41 s; warm cache: ~7 s.

What is checked, all from files the notebook wrote (no JAX in this process):
  - the .gcz file exists, its container header says codec "hyperprior" and the image's shape, and
    its size is exactly the reported bytes; bpp = bytes * 8 / (H * W) > 0;
  - the reconstruction PNG has the original's shape, and PSNR recomputed here from the two PNGs
    equals the reported PSNR (so the figure's title and summary describe the decoded file);
  - the results JSON is CompressAI-style, its bpp is the mean of the per-image CSV's file bytes,
    and one row per evaluated image; the RD plot is a real PNG; the side-by-side figure and the RD
    plot were displayed (image/png outputs);
  - training ran for the requested number of steps (config.json + metrics.jsonl in the workdir).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import sys

import nbformat
import numpy as np
from nbclient import NotebookClient
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
KERNEL = "gencomp-nbtest"

SMALL_STEPS = 6
SMALL_CROP = 192
SMALL_IMAGES = 2


def small_parameters(out_dir: pathlib.Path) -> str:
    return "\n".join([
        "# injected by tests/test_notebooks.py: smallest setting",
        'CONFIG_ARG = "runlocal"',
        f"NUM_STEPS = {SMALL_STEPS}",
        "N, M = 8, 12",
        "BATCH_SIZE = 2",
        f"CROP = {SMALL_CROP}",
        f"NUM_EVAL_IMAGES = {SMALL_IMAGES}",
        f"OUT_DIR = {str(out_dir)!r}",
    ])


def _write_kernelspec(root: pathlib.Path) -> pathlib.Path:
    """A kernelspec that runs ipykernel with this very interpreter; returns the JUPYTER_PATH entry."""
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gencomp_jax tests", "language": "python"}))
    return root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def test_notebook_has_one_parameters_cell_and_colab_setup():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    for name in ("NUM_STEPS", "N, M", "BATCH_SIZE", "CROP", "NUM_EVAL_IMAGES", "OUT_DIR", "CONFIG_ARG"):
        assert name in tagged[0].source, f"parameters cell lost {name}"
    setup = nb.cells[[c.cell_type for c in nb.cells].index("code")]
    assert '"google.colab" in sys.modules' in setup.source and "REPO_URL" in setup.source
    # committed without outputs (small diffs, nothing stale)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def kernel_environment(tmp_path, monkeypatch) -> None:
    """The environment a test kernel starts in: this interpreter's kernelspec, the compile cache, quiet TF."""
    monkeypatch.setenv("JUPYTER_PATH", str(_write_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", os.environ.get("JAX_COMPILATION_CACHE_DIR",
                                                                   str(REPO / ".jax_cache")))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                       os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    # Speed only (see module docstring): non-partitionable threefry compiles ~5x faster on XLA:CPU.
    monkeypatch.setenv("JAX_THREEFRY_PARTITIONABLE", "0")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows the figures


def test_quickstart_notebook_runs_and_writes_consistent_files(tmp_path, monkeypatch):
    kernel_environment(tmp_path, monkeypatch)

    out_dir = tmp_path / "out"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells[idx].source = small_parameters(out_dir)
    run_dir = tmp_path / "cwd"  # the notebook must not depend on being run from notebooks/
    run_dir.mkdir()
    NotebookClient(nb, kernel_name=KERNEL, timeout=300, allow_errors=False,
                   resources={"metadata": {"path": str(run_dir)}}).execute()

    summary = json.loads((out_dir / "summary.json").read_text())
    h, w = SMALL_CROP, SMALL_CROP
    assert summary["image_shape"] == [h, w, 3]

    # the real file: container header and size
    from gencomp_jax import registry
    from gencomp_jax.codecs import bitstream

    registry.discover()  # the codec table (run alone, nothing else has imported the codecs)
    gcz = pathlib.Path(summary["file"])
    blob = gcz.read_bytes()
    assert gcz.suffix == ".gcz" and len(blob) == summary["file_bytes"] > 0
    header, segments = bitstream.unpack(blob, codec="hyperprior")
    assert tuple(header.image_shape) == (h, w, 3)
    assert [len(s) for s in segments] == summary["segment_bytes"] and len(segments) == 2
    assert summary["bpp"] == len(blob) * 8 / (h * w) > 0
    assert summary["bpp_est"] > 0

    # decoded image: same shape, and the reported PSNR is the PSNR of the decoded file
    x = np.asarray(Image.open(summary["original_png"]))
    x_hat = np.asarray(Image.open(summary["reconstruction_png"]))
    assert x.shape == x_hat.shape == (h, w, 3) and x_hat.dtype == np.uint8
    kodak0 = sorted((REPO / "data" / "kodak").glob("*.png"))[0]
    assert pathlib.Path(summary["original_png"]).name.startswith(kodak0.stem)
    assert abs(_psnr(x, x_hat) - summary["psnr"]) < 1e-3
    assert 0.0 < summary["ms_ssim"] <= 1.0

    # evaluation: CompressAI-style JSON consistent with its per-image CSV (real file bytes)
    res = json.loads(pathlib.Path(summary["results_json"]).read_text())
    assert res["num_images"] == SMALL_IMAGES and len(res["results"]["bpp"]) == 1
    assert "ms-ssim-rgb" in res["results"] and "ms-ssim" not in res["results"]  # CompressAI's key spelling
    with pathlib.Path(summary["results_json"]).with_name("kodak_results_per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == SMALL_IMAGES
    assert math.isclose(res["results"]["bpp"][0], np.mean([int(r["bytes"]) * 8 / (h * w) for r in rows]),
                        rel_tol=1e-9)
    first = next(r for r in rows if r["image"] == summary["image"])
    assert int(first["bytes"]) == summary["file_bytes"]  # deterministic: the same bytes twice
    assert math.isclose(float(first["psnr-rgb"]), summary["psnr"], rel_tol=1e-6)
    with Image.open(summary["rd_png"]) as im:
        assert im.format == "PNG" and min(im.size) > 100

    # training ran for the requested steps in the workdir
    workdir = pathlib.Path(summary["workdir"])
    assert json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == SMALL_STEPS
    assert summary["train_step"] == SMALL_STEPS
    assert summary["model"]["N"] == 8 and summary["model"]["M"] == 12

    # the side-by-side figure and the RD plot were shown
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pngs >= 2
