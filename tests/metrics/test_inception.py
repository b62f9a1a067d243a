"""FID Inception-v3: standard-format weights files (read without torch), 2048-d pool3 features that match
pytorch-fid (golden from tests/golden/make_inception_golden.py), clear errors."""

import os
import pathlib
import pickle
import sys
import zipfile

import numpy as np
import pytest

from gencomp_jax.metrics import inception as I
from gencomp_jax.metrics.fid import realism_metrics

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from inception_random_weights import golden_inputs, random_state_dict  # noqa: E402


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_reads_files_written_by_torch(fmt):
    d = I.load_torch_state_dict(str(GOLDEN / f"torch_{fmt}_small.pth"))
    assert list(d) == ["a.weight", "a.bias", "b.running_mean", "b.count"]
    np.testing.assert_array_equal(d["a.weight"], np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(d["a.bias"], np.array([1.5, -2.0], np.float32))
    np.testing.assert_array_equal(d["b.running_mean"], np.arange(12.0).reshape(3, 4).T)  # strided view
    assert d["b.running_mean"].dtype == np.float64 and d["b.count"] == 7


def test_random_weights_in_standard_format_give_pytorch_fid_features(tmp_path):
    shapes = I.expected_state_dict_shapes()
    assert len(shapes) == 470 and sum(int(np.prod(s)) for s in shapes.values()) == 21_820_000
    sd = random_state_dict(shapes)
    sd["fc.weight"] = np.zeros((1008, 2048), np.float32)  # present in the real file, ignored
    sd["fc.bias"] = np.zeros((1008,), np.float32)
    path = str(tmp_path / I.FILENAME)
    I.save_torch_state_dict(path, sd)
    assert zipfile.is_zipfile(path)
    ex = I.InceptionFeatureExtractor(path, batch_size=2)
    f = ex(golden_inputs())
    g = np.load(GOLDEN / "inception_golden.npz")["features"]
    assert f.shape == (2, 2048) and f.dtype == np.float32
    # pytorch-fid on the same weights/inputs; float32 on two backends: 1e-5 of the feature scale
    np.testing.assert_allclose(f, g, rtol=0, atol=1e-5 * np.abs(g).max())
    # .npz conversion gives the same variables
    npz = str(tmp_path / "w.npz")
    I._main(["convert", path, npz])
    v = I.state_dict_to_variables(I.load_weights_file(npz))
    k = v["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"]
    np.testing.assert_array_equal(np.asarray(k), sd["Mixed_7c.branch_pool.conv.weight"].transpose(2, 3, 1, 0))


def test_missing_weights_raise_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv(I.ENV_VAR, raising=False)
    monkeypatch.setattr(I, "DEFAULT_PATH", str(tmp_path / "absent.pth"))
    with pytest.raises(I.InceptionWeightsError, match="download"):
        I.resolve_weights_path(None)
    with pytest.raises(I.InceptionWeightsError, match="does not exist"):
        I.resolve_weights_path(str(tmp_path / "nope.pth"))
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(I.InceptionWeightsError, match="fd-vgg16"):
        realism_metrics([img] * 2, [img] * 2, features="inception", patch_size=32)


def test_wrong_or_malicious_files_rejected(tmp_path):
    bad = str(tmp_path / "bad.pth")
    I.save_torch_state_dict(bad, {"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32)})
    with pytest.raises(I.InceptionWeightsError, match="missing keys"):
        I.state_dict_to_variables(I.load_weights_file(bad))
    evil = str(tmp_path / "evil.pth")
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(os.system))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        I.load_torch_state_dict(evil)
