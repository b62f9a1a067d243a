"""CompressAI's own weights give CompressAI's numbers here (issue 11).

Golden values: tests/golden/compressai_* written by tests/golden/make_compressai_golden.py with
CompressAI 1.2.8 (PyTorch) itself. The trained model is read from $GENCOMP_COMPRESSAI_BSDS4K or
../shared/reference/compressai/ (not in the repository) and those tests skip, saying so, if absent.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax import registry
from gencomp_jax.data import images, read_image
from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy.factorized import quantize_around
from gencomp_jax.eval import pretrained
from gencomp_jax.models.hyperprior import NTCModel

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
FWD = np.load(GOLDEN / "compressai_forward_golden.npz")
KODAK = json.loads((GOLDEN / "compressai_bsds4k_kodak.json").read_text())
TRAINED = pathlib.Path(os.environ.get(
    "GENCOMP_COMPRESSAI_BSDS4K",
    REPO.parent / "shared" / "reference" / "compressai" / "bmshj2018-hyperprior-N128-M192-bsds4k.pth"))
ARCHS = {"bmshj2018": "hyperprior", "mbt2018mean": "mean_scale"}
TOL = 1e-4

needs_trained = pytest.mark.skipif(
    not TRAINED.is_file(),
    reason=f"{TRAINED} not found: it is the ScaleHyperprior(128, 192) described in "
           "../shared/reference/compressai/README.md; set GENCOMP_COMPRESSAI_BSDS4K to its path.")


def _pieces(model, variables, x_u8, noise=None):
    """Our NTCModel's intermediate tensors, named as the golden file names CompressAI's."""
    x = images.to_model(jnp.asarray(x_u8), grid="edge")

    def f(v, x):
        m = model.bind(v)
        y = m.analysis(x)
        z = m.latent.hyper_analysis(y)
        z_hat = quantize_around(z, m.latent.z_medians())[1] if noise is None else z + noise[1]
        mean, scale = m.latent.entropy_parameters(z_hat)
        y_hat = jnp.round(y - mean) + mean if noise is None else y + noise[0]
        out = dict(y=y, z=z, z_hat=z_hat, scales=scale, y_hat=y_hat,
                   y_likelihoods=gc.likelihood(y_hat, scale, mean), z_likelihoods=m.latent.prior(z_hat),
                   x_hat=(m.synthesis(y_hat) + 1.0) / 2.0)  # CompressAI's x_hat is on [0, 1]
        if m.latent.mean_scale:
            out["means"] = mean
        return out

    return jax.jit(f)(variables, x)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("noisy", [False, True])
def test_converted_forward_equals_compressai(arch, noisy):
    config, variables = pretrained.load_compressai(GOLDEN / f"compressai_{arch}_N8M12.pth")
    assert config.method == ARCHS[arch] and config.model.compat == "compressai"
    model = NTCModel(config.model.N, config.model.M, config.method, compat="compressai")
    key = f"{arch}_noisy_" if noisy else f"{arch}_"
    noise = (FWD[f"{arch}_noise_y"], FWD[f"{arch}_noise_z"]) if noisy else None
    ours = _pieces(model, variables, FWD["x"], noise)
    for name, value in ours.items():
        ref = FWD[key + name]
        assert value.shape == ref.shape, (name, value.shape, ref.shape)
        if name.endswith("likelihoods"):  # compare rates: relative error of probabilities
            np.testing.assert_allclose(np.log2(value), np.log2(ref), atol=TOL, err_msg=name)
        else:
            np.testing.assert_allclose(value, ref, atol=TOL, err_msg=name)
    # the likelihoods are not all trivial (else the rate check above would be empty)
    assert np.mean(-np.log2(FWD[key + "z_likelihoods"])) > 1.0


def test_native_geometry_is_not_compressai():
    """The same converted weights in this library's own ("same") geometry give another function."""
    config, variables = pretrained.load_compressai(GOLDEN / "compressai_bmshj2018_N8M12.pth")
    model = NTCModel(config.model.N, config.model.M, config.method, compat="compressai")
    x = images.to_model(jnp.asarray(FWD["x"]), grid="edge")
    y_torch = model.apply(variables, x, method=NTCModel.analysis)
    from gencomp_jax.models.transforms import AnalysisTransform
    y_same = AnalysisTransform(config.model.N, M=config.model.M).apply(
        {"params": variables["params"]["g_a"]}, (x + 1.0) / 2.0)
    np.testing.assert_allclose(y_torch, FWD["bmshj2018_y"], atol=TOL)
    assert float(jnp.max(jnp.abs(y_same - FWD["bmshj2018_y"]))) > 1e-2


def test_not_a_compressai_state_dict_is_a_clear_error():
    with pytest.raises(pretrained.PretrainedError, match="bmshj2018-hyperprior"):
        pretrained.convert_compressai_state({"conv.weight": np.zeros((1, 1, 1, 1))})


@needs_trained
@pytest.mark.parametrize("name", ["kodim07", "kodim23"])
def test_trained_model_kodak_psnr_and_bytes_match_compressai(name):
    """PSNR of the 8-bit reconstruction within 0.05 dB and file size within 1% of CompressAI's own
    compress/decompress (all 24 images: benchmarks/peers/compressai_kodak.py)."""
    config, variables = pretrained.load(TRAINED)
    codec = registry.make_codec(config, variables)
    gold = {r["image"]: r for r in KODAK["images"]}[name]
    x = read_image(REPO / "data" / "kodak" / f"{name}.png")
    data = codec.compress(x)
    rec = codec.decompress(data)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((rec.astype(np.float64) - x) ** 2))
    assert abs(psnr - gold["psnr_uint8"]) < 0.05, (psnr, gold["psnr_uint8"])
    assert abs(len(data) / gold["bytes"] - 1.0) < 0.01, (len(data), gold["bytes"])
