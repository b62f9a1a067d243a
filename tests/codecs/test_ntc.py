"""Tests for the NTC codecs (gencomp_jax/codecs/ntc.py): a tiny hyperprior trained in the test, the
golden file written by the code before the latent-codec refactor, and the mean-scale variant."""

import pathlib
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import skimage.data

from gencomp_jax import registry
from tests.codecs import generative_helpers
from tests.entropy import float64_references
from gencomp_jax.codecs import bitstream, ntc
from gencomp_jax.codecs.base import Codec, codec_id
from gencomp_jax.data import pad_to_multiple, read_image, to_model

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


def _config(n=32, m=48, lmbda=0.01, method="hyperprior"):
    c = ml_collections.ConfigDict()
    c.method = method
    c.model = ml_collections.ConfigDict({"N": n, "M": m, "lmbda": lmbda})
    return c


@pytest.fixture(scope="module")
def trained():
    """A tiny hyperprior trained for 25 jitted Adam steps on 64x64 crops of skimage photos."""
    return generative_helpers.trained_codec(ntc, _config())


def test_method_loss_equals_an_independent_float64_formula(trained):
    """loss = bpp + lmbda 255^2 MSE with the Gaussian-CDF bin probabilities of y, the factorized density of z and
    the [0, 1] MSE written here in float64; the model only supplies y, z, the medians, h_s's scales and x_hat."""
    config, params, _ = trained
    method = ntc.make_method(config)
    x = jnp.asarray(generative_helpers.crops(np.random.default_rng(1), 2), jnp.float32) / 127.5 - 1
    loss, m = jax.jit(lambda p, x: method.loss(p, {"image": x}, None, False))(params, x)

    def parts(mdl, x):
        y = mdl.analysis(x)
        z = mdl.latent.hyper_analysis(y)
        z_hat = jnp.round(z - mdl.latent.z_medians()) + mdl.latent.z_medians()
        return jnp.round(y), z_hat, mdl.latent.h_s(z_hat), mdl.synthesis(jnp.round(y))

    parts = jax.jit(lambda p, x: method.model.apply(p, x, method=parts))(params, x)
    y_hat, z_hat, raw_scale, x_hat = (np.asarray(a, np.float64) for a in parts)
    s = np.maximum(raw_scale, 0.11)  # CompressAI's scale bound
    p_y = np.maximum(np.exp(float64_references.gaussian_log_bin(y_hat, s)), 1e-9)
    p_z = np.maximum(np.exp(float64_references.factorized_log_likelihood(params["params"]["prior"], z_hat)), 1e-9)
    num_pixels = 2 * 64 * 64
    bpp_y, bpp_z = -np.log2(p_y).sum() / num_pixels, -np.log2(p_z).sum() / num_pixels
    x01, x_hat01 = (np.asarray(x, np.float64) + 1) / 2, (np.clip(x_hat, -1, 1) + 1) / 2
    mse = np.mean((x_hat01 - x01) ** 2)
    assert 0.05 < bpp_y < 5 and 0.001 < bpp_z < 1 and 1e-4 < mse < 0.1  # a trained model, not a degenerate one
    np.testing.assert_allclose([m["bpp_y"], m["bpp_z"], m["mse"]], [bpp_y, bpp_z, mse], rtol=2e-4)
    np.testing.assert_allclose(loss, bpp_y + bpp_z + 0.01 * 255 ** 2 * mse, rtol=2e-4)
    np.testing.assert_allclose(m["psnr"], 10 * np.log10(1 / mse), atol=1e-3)


def test_round_trip_symbols_odd_size_and_rate(trained):
    _, params, codec = trained
    assert isinstance(codec, Codec)
    image = skimage.data.astronaut()[:37, 100:153]  # 37 x 53: padded to 64 x 64
    data = codec.compress(image)
    header, segments = bitstream.unpack(data)
    assert header.image_shape == (37, 53, 3) and codec.stride == 64
    assert codec.latent_shape(header.image_shape) == (4, 4, 48)
    z_sym, y_sym, mean = codec.latent.decode_symbols(segments, (4, 4, 48))
    y = codec._analysis(params, to_model(pad_to_multiple(image, 64)[None]))
    z = codec.latent._hyper_analysis(codec.latent.variables, y)
    np.testing.assert_array_equal(mean, 0.0)  # scale hyperprior: y symbols are round(y)
    np.testing.assert_array_equal(y_sym, np.round(np.asarray(y[0])))
    np.testing.assert_array_equal(z_sym, np.round(np.asarray(z[0]) - codec.latent.z_tables(codec.latent.host_z)["medians"]))
    rec = codec.decompress(data)
    assert rec.shape == image.shape and rec.dtype == np.uint8
    # real file bits (header included) / estimated bits <= 1.01 on a 512x512 photo
    big = skimage.data.astronaut()
    real = 8 * len(codec.compress(big))
    est = codec.estimate_bits(big)
    print(f"real/estimated bits = {real / est:.4f} ({real} / {est:.0f})")
    assert real / est <= 1.01, (real, est)
    assert real / est >= 0.97, (real, est)  # the estimate is not a loose over-estimate either


def test_batch_size_invariance(trained):
    _, _, codec = trained
    photos = [skimage.data.coffee()[:64, :128], skimage.data.chelsea()[:64, :128]]
    files = codec.compress_batch(photos)
    single = codec.compress(photos[0])
    assert files[0] == single
    np.testing.assert_array_equal(codec.decompress(files[0]), codec.decompress(single))


def test_decode_identical_in_a_separate_process(trained, tmp_path):
    config, params, codec = trained
    image = skimage.data.chelsea()[:70, :90]
    data = codec.compress(image)
    rec, again = generative_helpers.decode_in_fresh_process(config, params, data, tmp_path, encode=image)
    np.testing.assert_array_equal(rec, codec.decompress(data))
    assert again == data


def test_wrong_model_and_corrupt_files_are_clear_errors(trained):
    config, params, codec = trained
    data = codec.compress(skimage.data.coffee()[:64, :64])
    other = ntc.make_codec(config, jax.tree_util.tree_map(lambda a: a * 1.001, params))
    with pytest.raises(bitstream.BitstreamError, match="model"):
        other.decompress(data)
    with pytest.raises(bitstream.BitstreamError):
        codec.decompress(data[:-3])
    with pytest.raises(ValueError, match="uint8"):
        codec.compress(np.zeros((8, 8, 3), np.float32))


def test_golden_file_from_before_the_latent_codec_decodes_identically():
    """tests/golden/hyperprior_golden.gcz was written by the code of 44b2816 (make_hyperprior_golden.py)."""
    sys.path.insert(0, str(GOLDEN))
    import make_hyperprior_golden as golden

    params = flax.serialization.msgpack_restore(golden.PARAMS.read_bytes())
    codec = registry.make_codec(golden.config(), params)
    data = golden.GCZ.read_bytes()
    assert bitstream.peek(data).image_shape == (97, 151, 3)
    np.testing.assert_array_equal(codec.decompress(data), read_image(golden.DECODED))
    assert bitstream.peek(data).version == 1
    # the float entropy-parameter path writes the same segments, now as format version 2 with checks
    config = golden.config()
    config.model.integer_entropy = False
    float_codec = registry.make_codec(config, params)
    new = float_codec.compress(read_image(golden.SOURCE))
    header, segments = bitstream.unpack(new)
    assert segments == bitstream.unpack(data)[1] and header.version == 2 and len(header.checks) == 2
    np.testing.assert_array_equal(float_codec.decompress(new), read_image(golden.DECODED))
    # the default (integer entropy parameters) file decodes to the same image
    default = codec.compress(read_image(golden.SOURCE))
    assert bitstream.unpack(default)[0].meta == ntc.INTEGER_META == b"\x02"
    np.testing.assert_array_equal(codec.decompress(default), read_image(golden.DECODED))
    # a file of today's format written on the development machine (AMD EPYC, AVX-512) decodes to the same symbols
    # and image wherever the suite runs (the integer path's claim: nothing from the bytes to the indexes is float)
    v2 = (GOLDEN / "hyperprior_golden_integer_v2.gcz").read_bytes()
    assert v2 == default
    np.testing.assert_array_equal(codec.decompress(v2), read_image(golden.DECODED))
    # the first integer files (meta 0x01, jitted z tables; written by 555213a) decode identically
    v1 = (GOLDEN / "hyperprior_golden_integer_v1.gcz").read_bytes()
    assert bitstream.peek(v1).meta == ntc.INTEGER_META_V1
    np.testing.assert_array_equal(codec.decompress(v1), read_image(golden.DECODED))
    assert bitstream.unpack(v1)[1][1] == bitstream.unpack(default)[1][1]     # same y segment for this model


def test_mean_scale_codec_round_trip_and_registration():
    """An untrained mean-scale model (nonzero means from h_s): file codec id 6, decodes to the model's x_hat."""
    config = _config(n=8, m=12, method="mean_scale")
    method = registry.make_method(config)
    assert isinstance(method, ntc.NTCMethod) and codec_id("mean_scale") == 6 and codec_id("hyperprior") == 1
    params = method.init(jax.random.PRNGKey(3), {"image": jnp.zeros((1, 64, 64, 3))})
    assert set(params["params"]) == {"g_a", "g_s", "h_a", "h_s", "prior"}
    codec = registry.make_codec(config, params)
    assert codec.name == "mean_scale" and codec.decode_options == () and codec.rate_points() == [{}]
    image = skimage.data.coffee()[:64, :64]
    data = codec.compress(image)
    assert data[5] == 6  # the container's codec id byte
    _, segments = bitstream.unpack(data)
    _, _, mean = codec.latent.decode_symbols(segments, codec.latent_shape(image.shape))
    assert np.abs(mean).max() > 1e-3  # the means are used
    x = to_model(image[None])
    out = method.model.apply(params, x, train=False)
    expected = np.asarray(jnp.clip(jnp.round((out["x_hat"][0] + 1) * 127.5), 0, 255)).astype(np.uint8)
    assert np.mean(codec.decompress(data) == expected) > 0.999
    hp = _config(n=8, m=12)
    with pytest.raises(bitstream.BitstreamError, match="mean_scale"):
        registry.make_codec(hp, registry.make_method(hp).init(jax.random.PRNGKey(3), {"image": x})).decompress(data)


def test_mean_scale_config_has_the_hyperprior_keys():
    from gencomp_jax.config_utils import load_config

    ms, hp = load_config("mean_scale:runlocal,lmbda=0.02"), load_config("hyperprior:runlocal,lmbda=0.02")
    assert ms.method == "mean_scale" and hp.method == "hyperprior"
    ms.method = hp.method
    assert ms.to_dict() == hp.to_dict()
    assert (load_config("mean_scale:quality=5").model.N, load_config("hyperprior:quality=5").model.N) == (192, 128)
