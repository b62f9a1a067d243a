"""HFD codec (gencomp_jax/codecs/hfd.py): an NTC stage 1 + a conditional diffusion decoder, with real files.

A tiny model (stage 1 N=32/M=48, an 8-channel 2-level UNet) is trained for a few jitted steps in the test:
enough for the stage-1 rate estimate to be calibrated; the decoder's image quality is not what is tested.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import skimage.data

from gencomp_jax.codecs import bitstream, conditional, hfd, ntc
from gencomp_jax.codecs.base import Codec, OptionError
from tests.codecs.generative_helpers import check_file_errors, crops, decode_in_fresh_process, trained_codec

NET = dict(arch="unet", ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), mid_attention=False, norm_groups=4)


def _config(decoder="diffusion"):
    c = ml_collections.ConfigDict()
    c.method = "hfd"
    c.data = ml_collections.ConfigDict({"crop_size": 64})
    c.model = ml_collections.ConfigDict(dict(
        stage1=dict(variant="hyperprior", N=32, M=48, lmbda=0.01, workdir=""), decoder=decoder, residual=True,
        net=NET, prediction="x0", max_snr=5.0, gamma_min=-13.3, gamma_max=5.0, logsnr_shift=2.0,
        sampler="ddim" if decoder == "diffusion" else "ode_euler", sample_steps=3, noise_scale=1.0, realism=1.0,
        num_samples=1, sample_size=0))
    return c


@pytest.fixture(scope="module")
def trained():
    """A tiny HFD (stage 1 trained in the same run) after 25 jitted Adam steps on 64x64 crops."""
    return trained_codec(hfd, _config())


def _ntc(config, params, integer=True):
    """An NTC codec of the stage-1 parameters (integer entropy parameters, as HFD's stage 1 writes by default)."""
    c = ml_collections.ConfigDict({"method": "hyperprior",
                                   "model": {"N": 32, "M": 48, "lmbda": 0.01, "integer_entropy": integer}})
    return ntc.make_codec(c, params["stage1"])


def test_file_is_the_stage1_file_plus_settings_and_preview_is_its_reconstruction(trained):
    config, params, codec = trained
    assert isinstance(codec, Codec)
    image = skimage.data.coffee()[30:100, 200:290]                      # 70 x 90: padded to 128 x 128
    data = codec.compress(image)
    stage1 = _ntc(config, params)
    ntc_file = stage1.compress(image)
    _, segs = bitstream.unpack(data)
    _, ntc_segs = bitstream.unpack(ntc_file)
    assert segs == ntc_segs                                             # same stage-1 bytes
    header = bitstream.peek(data)
    assert header.codec == "hfd" and header.seed != 0 and header.image_shape == (70, 90, 3)
    assert bitstream.peek(ntc_file).meta == ntc.INTEGER_META and header.meta[0] == 2   # integer stage 1, recorded
    assert conditional.DecoderSettings.from_meta(header.meta, "hfd").stage1_integer
    assert len(data) - len(ntc_file) == 8 + len(header.meta) - len(ntc.INTEGER_META)   # seed + the other meta
    preview = codec.decompress(data, preview=True)
    np.testing.assert_array_equal(preview, stage1.decompress(ntc_file))
    np.testing.assert_array_equal(codec.decompress(data, realism=0.0), preview)   # X* = the MSE reconstruction


def test_float_stage1_files_still_decode(trained):
    """Files whose stage 1 used the float entropy path (all HFD files before meta version 2, and
    model.stage1.integer_entropy=False) carry version-1 meta and decode on the float path."""
    config, params, codec = trained
    float_config = _config()
    float_config.model.stage1.integer_entropy = False
    float_codec = hfd.make_codec(float_config, params)
    image = skimage.data.coffee()[:48, :80]
    data = float_codec.compress(image)
    header, segs = bitstream.unpack(data)
    assert header.meta[0] == 1 and not conditional.DecoderSettings.from_meta(header.meta, "hfd").stage1_integer
    float_ntc = _ntc(config, params, integer=False)
    assert segs == bitstream.unpack(float_ntc.compress(image))[1]
    np.testing.assert_array_equal(codec.decompress(data, preview=True), float_ntc.decompress(float_ntc.compress(image)))
    # the same segments read as integer-path segments would be refused, never a wrong image
    flipped = bitstream.pack(dataclasses.replace(header, meta=dataclasses.replace(
        conditional.DecoderSettings.from_meta(header.meta, "hfd"), stage1_integer=True).to_meta()), segs)
    try:
        out = codec.decompress(flipped, preview=True)
    except bitstream.BitstreamError:
        pass
    else:
        np.testing.assert_array_equal(out, codec.decompress(data, preview=True))


def test_realism_knob_interpolates_mmse_and_sample(trained):
    _, _, codec = trained
    image = skimage.data.astronaut()[:64, :128]
    data = codec.compress(image)
    x0 = codec.decompress(data, realism=0.0).astype(np.float64)
    x1 = codec.decompress(data, realism=1.0).astype(np.float64)
    xh = codec.decompress(data, realism=0.5).astype(np.float64)
    assert np.abs(x1 - x0).mean() > 1.0                                # the decoder does change the image
    assert np.abs(xh - 0.5 * (x0 + x1)).max() <= 1.0                    # uint8 rounding of each end only
    assert codec.rate_points() == [{"realism": 0.0}, {"realism": 0.5}, {"realism": 1.0}]


def test_decoding_is_reproducible_from_the_header_seed(trained, tmp_path):
    config, params, codec = trained
    image = skimage.data.chelsea()[:70, :90]
    data = codec.compress(image)
    assert codec.compress(image) == data                                # seed derived from the image
    rec = codec.decompress(data)
    np.testing.assert_array_equal(rec, codec.decompress(data))
    other_seed = codec.compress(image, seed=12345)
    assert bitstream.peek(other_seed).seed == 12345
    assert np.abs(codec.decompress(other_seed).astype(int) - rec).max() > 0   # the seed drives the noise
    assert np.abs(codec.decompress(data, sampling_steps=2).astype(int) - rec).max() > 0
    # defaults written into the file are what an option-less decode uses
    custom = codec.compress(image, settings=conditional.DecoderSettings(steps=2, realism=0.25))
    np.testing.assert_array_equal(codec.decompress(custom), codec.decompress(data, sampling_steps=2, realism=0.25))
    # the same file decodes to the same image in a fresh process
    np.testing.assert_array_equal(decode_in_fresh_process(config, params, data, tmp_path), rec)


def test_real_bits_match_the_estimate(trained):
    _, _, codec = trained
    big = skimage.data.astronaut()
    real = 8 * len(codec.compress(big))
    est = codec.estimate_bits(big, realism=1.0)
    print(f"real/estimated bits = {real / est:.4f} ({real} / {est:.0f})")
    assert 0.97 <= real / est <= 1.01, (real, est)


def test_wrong_codec_truncated_corrupt_and_bad_options_are_clear_errors(trained):
    config, params, codec = trained
    image = skimage.data.coffee()[:64, :64]
    data = codec.compress(image)
    stage1 = _ntc(config, params)
    with pytest.raises(bitstream.BitstreamError, match="hfd|codec"):
        stage1.decompress(data)                                         # an HFD file given to the NTC codec
    with pytest.raises(bitstream.BitstreamError, match="hyperprior|codec"):
        codec.decompress(stage1.compress(image))                        # an NTC file given to HFD
    check_file_errors(hfd, config, params, codec, data, flip=0x40)
    header, segs = bitstream.unpack(data)
    broken_meta = bitstream.pack(bitstream.Header(codec="hfd", params_hash=header.params_hash,
                                                  image_shape=header.image_shape, seed=header.seed,
                                                  meta=b"\x07\x01"), segs)
    with pytest.raises(bitstream.BitstreamError, match="decoder settings"):
        codec.decompress(broken_meta)
    hostile = bitstream.pack(bitstream.Header(codec="hfd", params_hash=header.params_hash, seed=header.seed,
                                              image_shape=header.image_shape, checks=header.checks,
                                              meta=b"\x01\x90\x4e\x00"), segs)   # 10,000 steps
    with pytest.raises(bitstream.BitstreamError, match="10000 sampler steps"):   # fuzz regression: bounded work
        codec.decompress(hostile)
    with pytest.raises(OptionError, match="realism"):
        codec.decompress(data, realism=1.5)
    with pytest.raises(OptionError, match="steps"):
        codec.decompress(data, steps=2)


def test_stage1_gets_no_gradient_from_the_decoder_and_none_when_frozen(trained):
    """Joint mode: the stage-1 gradient of the HFD loss is exactly the NTC loss's (stage 2 sees sg(Y)).
    Frozen mode (stage 1 from a workdir): no stage-1 gradient at all, so Adam leaves it unchanged."""
    config, params, _ = trained
    x = jnp.asarray(crops(np.random.default_rng(3), 2), jnp.float32) / 127.5 - 1
    method = hfd.make_method(config)
    key = jax.random.PRNGKey(7)
    g_hfd = jax.jit(jax.grad(lambda p: method.loss(p, {"image": x}, key, True)[0]))(params)["stage1"]
    r1, _ = jax.random.split(key)
    g_ntc = jax.jit(jax.grad(lambda p: method.stage1_method.loss(p, {"image": x}, r1, True)[0]))(params["stage1"])
    for a, b in zip(jax.tree_util.tree_leaves(g_hfd), jax.tree_util.tree_leaves(g_ntc)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    frozen = hfd.HFDMethod(config, stage1_params=params["stage1"])     # as if loaded from an NTC workdir
    assert frozen.frozen and not method.frozen
    p0 = frozen.init(jax.random.PRNGKey(1), {"image": x})
    for a, b in zip(jax.tree_util.tree_leaves(p0["stage1"]), jax.tree_util.tree_leaves(params["stage1"])):
        np.testing.assert_array_equal(a, b)
    g = jax.jit(jax.grad(lambda p: frozen.loss(p, {"image": x}, key, True)[0]))(p0)
    assert all(float(jnp.max(jnp.abs(v))) == 0.0 for v in jax.tree_util.tree_leaves(g["stage1"]))
    assert any(float(jnp.max(jnp.abs(v))) > 0.0 for v in jax.tree_util.tree_leaves(g["decoder"]))
    missing = _config()
    missing.model.stage1.workdir = "/nonexistent-ntc-run"
    with pytest.raises(FileNotFoundError):
        hfd.make_method(missing)


def test_flow_decoder_round_trip():
    config = _config("flow")
    params = jax.jit(hfd.make_method(config).init)(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 64, 64, 3))})
    codec = hfd.make_codec(config, params)
    image = skimage.data.astronaut()[:64, :64]
    data = codec.compress(image)
    rec = codec.decompress(data, sampling_steps=2)
    assert rec.shape == image.shape and rec.dtype == np.uint8
    np.testing.assert_array_equal(rec, codec.decompress(data, sampling_steps=2))
    assert np.abs(rec.astype(int) - codec.decompress(data, preview=True)).max() > 0
