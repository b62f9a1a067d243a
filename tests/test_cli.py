"""The `gencomp` CLI: argument plumbing into the library, outputs, and friendly errors (exit 2, no traceback)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gencomp_jax import cli
from gencomp_jax.codecs import bitstream
from gencomp_jax.data import images as data_images
from gencomp_jax.eval import loading
from tests.eval.toy_codecs import BitplaneCodec, bitplane_workdir


@pytest.fixture(scope="module")
def toy_wd(tmp_path_factory):
    """A real workdir (config.json + orbax checkpoint) of the registered toy progressive codec."""
    wd = tmp_path_factory.mktemp("bitplane")
    return str(wd), bitplane_workdir(wd, planes=3)


def _png(path, h=20, w=24):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    data_images.write_png(path, img)
    return img


def test_compress_decompress_info(tmp_path, toy_wd, capsys):
    wd, codec = toy_wd
    img = _png(tmp_path / "in.png")
    gcz, rec_png = tmp_path / "out.gcz", tmp_path / "rec.png"
    assert cli.main(["compress", "--checkpoint", wd, str(tmp_path / "in.png"), str(gcz)]) == 0
    assert gcz.read_bytes() == codec.compress(img)
    assert cli.main(["decompress", "--checkpoint", wd, str(gcz), str(rec_png)]) == 0
    np.testing.assert_array_equal(data_images.read_image(rec_png), codec.decompress(gcz.read_bytes()))
    # --steps K and --option steps=K are passed to decompress as a keyword; K = 0 is allowed
    for argv, k in [(["--steps", "1"], 1), (["--option", "steps=2"], 2), (["--steps", "0"], 0)]:
        assert cli.main(["decompress", "--checkpoint", wd, *argv, str(gcz), str(rec_png)]) == 0
        np.testing.assert_array_equal(data_images.read_image(rec_png), codec.decompress(gcz.read_bytes(), steps=k))
    assert (data_images.read_image(rec_png) == 128).all()  # no planes: the midpoint
    assert cli.main(["info", str(gcz)]) == 0
    out = capsys.readouterr().out
    assert "segments:    3 of 3 complete" in out and "24x20x3" in out
    assert "codec:       bitplane (id 241" in out and "  steps: decode with the first K" in out


def test_evaluate_and_plot(tmp_path, toy_wd, monkeypatch, capsys):
    folder = tmp_path / "set"
    for i in range(2):
        _png(folder / f"{i}.png")
    calls = []
    real = loading.load_eval_set
    monkeypatch.setattr(loading, "load_eval_set", lambda name, limit=None: calls.append((name, limit)) or real(name, limit=limit))
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "--checkpoint", toy_wd[0], "--dataset", str(folder), "--out", str(out),
                     "--metrics", "psnr-rgb", "--limit", "1", "--no-progress"]) == 0
    assert calls == [(str(folder), 1)]
    res = json.loads(out.read_text())
    assert res["name"] == pathlib.Path(toy_wd[0]).name and res["num_images"] == 1
    assert res["rate_points"] == [{"steps": 1}, {"steps": 2}, {"steps": 3}]
    # --option overrides the codec's rate points with the given values
    assert cli.main(["evaluate", "--checkpoint", toy_wd[0], "--dataset", str(folder), "--out", str(out),
                     "--metrics", "psnr-rgb", "--no-progress", "--option", "steps=0,2"]) == 0
    res = json.loads(out.read_text())
    assert res["rate_points"] == [{"steps": 0}, {"steps": 2}] and res["num_images"] == 2
    assert res["results"]["bpp"][0] < res["results"]["bpp"][1]
    assert (tmp_path / "r_per_image.csv").exists()
    png = tmp_path / "rd.png"
    assert cli.main(["plot", str(out), "-o", str(png), "--reference", "balle2018"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()


_TOY_FILE = BitplaneCodec().compress(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("make_file,argv_tail,message", [
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50), ["decompress", "--checkpoint", "W"], "not a gencomp file"),
    (lambda p: p.write_bytes(_TOY_FILE[:10]), ["info"], "truncated"),
    (lambda p: p.write_text("{}"), ["plot", "-o", "x.png"], "not a results file"),
    (lambda p: p.write_bytes(b"not an image"), ["compress", "--checkpoint", "W"], ""),
    # options are checked against the file's codec before any model is loaded (W does not exist)
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W", "--option", "realism=1"],
     "the 'bitplane' codec has no decode option 'realism'. Its options: steps: decode with the first K"),
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W", "--steps", "-1"],
     "option steps=-1: must be >= 0"),
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W", "--option", "steps=two"],
     "option steps='two': expected int"),
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W", "--option", "steps"],
     "write it as NAME=VALUE"),
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W", "--steps", "1", "--option", "steps=2"],
     "give the number of steps once"),
    (lambda p: p.write_bytes(_TOY_FILE), ["decompress", "--checkpoint", "W"], "does not exist"),
])
def test_user_errors_exit_2_without_traceback(tmp_path, capsys, make_file, argv_tail, message):
    f = tmp_path / "f"
    make_file(f)
    argv = argv_tail[:1] + [str(f)] + argv_tail[1:]
    if argv[0] in ("decompress", "compress"):
        argv = [argv_tail[0], *argv_tail[1:], str(f), str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gencomp {argv[0]}: error: ") and message in err and "Traceback" not in err


def test_other_model_message(tmp_path, toy_wd, capsys):
    wd, codec = toy_wd
    gcz = tmp_path / "a.gcz"
    gcz.write_bytes(_TOY_FILE)
    assert cli.main(["decompress", "--checkpoint", wd, str(gcz), str(tmp_path / "r.png")]) == 2
    assert f"made by model 746f79636f646563, you loaded {codec.fingerprint.hex()}" in capsys.readouterr().err


def test_only_library_errors_are_user_errors(tmp_path, monkeypatch, capsys):
    """A bug (not a ValueError/OSError) keeps its traceback: the CLI does not hide it."""
    def broken(workdir):
        raise KeyError("bug")

    monkeypatch.setattr(loading, "load_codec", broken)
    gcz = tmp_path / "a.gcz"
    gcz.write_bytes(_TOY_FILE)
    with pytest.raises(KeyError):
        cli.main(["decompress", "--checkpoint", "W", str(gcz), str(tmp_path / "r.png")])


def test_console_script_missing_checkpoint(tmp_path):
    """A separate process: missing workdir -> one-line message, exit 2 (the real loader, no codec needed)."""
    _png(tmp_path / "in.png")
    p = subprocess.run([sys.executable, "-m", "gencomp_jax.cli", "compress", "--checkpoint", str(tmp_path / "nope"),
                        str(tmp_path / "in.png"), str(tmp_path / "o.gcz")], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "does not exist" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "gencomp_jax.cli", "decompress", "x.gcz"], capture_output=True, text=True)
    assert p.returncode == 2 and "--checkpoint" in p.stderr  # argparse usage error


def test_console_script_info_resolves_built_in_codec_ids(tmp_path):
    """A fresh process imports no codec module: `info` discovers the built-in ones, so id 2 reads as uqdm
    with its declared options."""
    from gencomp_jax import registry

    entry = registry.get("uqdm")
    assert {o.name for o in entry.decode_options} >= {"steps", "reconstruction"}, (
        "uqdm registers no decode options: register(..., codec=<the class>) or pass decode_options=")
    gcz = tmp_path / "u.gcz"
    gcz.write_bytes(bitstream.pack(bitstream.Header(codec="uqdm", params_hash=b"\0" * 8, image_shape=(8, 8, 3),
                                                    seed=5), [b"ab", b"c"]))
    p = subprocess.run([sys.executable, "-m", "gencomp_jax.cli", "info", str(gcz)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert f"codec:       uqdm (id {entry.codec_id}" in p.stdout
    for o in entry.decode_options:
        assert f"  {o.describe()}" in p.stdout


@pytest.fixture(scope="module")
def hp_workdirs(tmp_path_factory):
    from tests.eval.toy_codecs import tiny_hyperprior_workdir

    a, b = tmp_path_factory.mktemp("hp_a"), tmp_path_factory.mktemp("hp_b")
    tiny_hyperprior_workdir(a, seed=0)
    tiny_hyperprior_workdir(b, seed=1)
    return a, b


def test_real_checkpoint_round_trip(hp_workdirs, tmp_path, capsys):
    """compress/decompress/evaluate with a real (tiny, random) hyperprior checkpoint; another model is refused."""
    wd_a, wd_b = hp_workdirs
    img = _png(tmp_path / "set" / "in.png", h=40, w=56)
    gcz, rec = tmp_path / "a.gcz", tmp_path / "rec.png"
    assert cli.main(["compress", "--checkpoint", str(wd_a), str(tmp_path / "set" / "in.png"), str(gcz)]) == 0
    assert cli.main(["decompress", "--checkpoint", str(wd_a), str(gcz), str(rec)]) == 0
    codec = loading.load_codec(wd_a)
    assert gcz.read_bytes() == codec.compress(img)
    np.testing.assert_array_equal(data_images.read_image(rec), codec.decompress(gcz.read_bytes()))
    capsys.readouterr()
    assert cli.main(["decompress", "--checkpoint", str(wd_b), str(gcz), str(rec)]) == 2
    err = capsys.readouterr().err
    assert "this file was made by model" in err and "Traceback" not in err
    assert cli.main(["decompress", "--checkpoint", str(wd_a), "--steps", "2", str(gcz), str(rec)]) == 2
    assert "the 'hyperprior' codec has no decode option 'steps'" in capsys.readouterr().err
    out = tmp_path / "ev.json"
    assert cli.main(["evaluate", "--checkpoint", str(wd_a), "--dataset", str(tmp_path / "set"), "--out", str(out),
                     "--metrics", "psnr-rgb", "--no-progress", "--name", "hp-a"]) == 0
    res = json.loads(out.read_text())
    assert res["name"] == "hp-a" and res["num_images"] == 1
    assert res["results"]["bpp"][0] == pytest.approx(len(gcz.read_bytes()) * 8 / (40 * 56))


def test_sweep_two_checkpoints_one_curve(hp_workdirs, tmp_path):
    wd_a, wd_b = hp_workdirs
    _png(tmp_path / "set" / "x.png", h=40, w=56)
    out, png = tmp_path / "sweep.json", tmp_path / "rd.png"
    assert cli.main(["evaluate", "--checkpoint", str(wd_a), "--checkpoint", str(wd_b), "--dataset",
                     str(tmp_path / "set"), "--out", str(out), "--metrics", "psnr-rgb", "--no-progress",
                     "--name", "hp", "--plot", str(png), "--reference", "balle2018"]) == 0
    merged = json.loads(out.read_text())
    runs = [json.loads((tmp_path / f"sweep_{w.name}.json").read_text()) for w in (wd_a, wd_b)]
    assert merged["name"] == "hp" and len(merged["results"]["bpp"]) == 2
    assert merged["results"]["bpp"] == sorted(r["results"]["bpp"][0] for r in runs)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bd_command(tmp_path, capsys):
    """gencomp bd: BD-rate of a curve at 0.9x the anchor's rates is -10% for any quality metric; reference
    names work in place of files; the anchor against itself is 0."""
    from gencomp_jax.eval import results

    ref = results.load_reference("kodak-compressai-bmshj2018-hyperprior")
    r = ref["results"]
    test = {"name": "ours", "results": {"bpp": [0.9 * b for b in r["bpp"]], "psnr-rgb": r["psnr-rgb"],
                                        "ms-ssim": r["ms-ssim-rgb"]}}  # the older spelling
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(test))
    for method in ("pchip", "akima"):
        for metric in ("psnr-rgb", "ms-ssim-rgb"):
            assert cli.main(["bd", "kodak-compressai-bmshj2018-hyperprior", str(path), "kodak-compressai-bmshj2018-hyperprior",
                             "--metric", metric, "--method", method]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert f"metric {metric}" in lines[0] and method in lines[0]
            assert "BD-rate -10.00 %" in lines[1] and lines[1].startswith("ours (") and "ours.json)" in lines[1]
            assert "BD-rate +0.00 %" in lines[2] and f"BD-{metric} +0.0000 dB" in lines[2]
    assert cli.main(["bd", str(path), str(tmp_path / "missing.json")]) == 2
    assert "not a bundled reference name" in capsys.readouterr().err
    assert cli.main(["bd", str(path), str(path), "--metric", "fid"]) == 2
    assert "have no 'fid'" in capsys.readouterr().err
