"""CDC (gencomp_jax/codecs/cdc.py, models/cdc.py): multi-level conditioning of the UNet, the context network,
end-to-end training, and real files (rate, reproducibility, realism knob, clear errors).

A tiny model (N=32/M=48, 8-channel 2-level UNet) is trained for a few jitted steps in the test: enough for
the latent's rate estimate to be calibrated; image quality is not what is tested.
"""

import dataclasses
import math
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import skimage.data

from gencomp_jax.codecs import bitstream, cdc, conditional, fuzz, hfd, ntc
from gencomp_jax.codecs.base import Codec, OptionError
from gencomp_jax.data import images
from gencomp_jax.entropy.varint import write_varint
from gencomp_jax.models.cdc import CDCModel, ContextNetwork
from gencomp_jax.models.unet import UNet
from tests.codecs.generative_helpers import check_file_errors, crops, decode_in_fresh_process, trained_codec

NET = dict(arch="unet", ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), mid_attention=False, norm_groups=4)


def _config(beta=0.02, rho=0.0):
    c = ml_collections.ConfigDict()
    c.method = "cdc"
    c.model = ml_collections.ConfigDict(dict(
        N=32, M=48, context_features=(8, 8, 8, 8), context_norm_groups=4, net=NET, beta=beta, rho=rho, max_snr=5.0,
        gamma_min=-13.3, gamma_max=5.0, sample_steps=3, noise_scale=0.8, realism=1.0))
    return c


@pytest.fixture(scope="module")
def trained():
    """A tiny CDC trained for 25 jitted Adam steps on 64x64 crops of skimage photos."""
    return trained_codec(cdc, _config())


def test_unet_concatenates_one_conditioning_map_per_level():
    net = UNet(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(), mid_attention=False, norm_groups=4)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
    maps = [jax.random.normal(jax.random.PRNGKey(i + 1), (1, 16 // 2 ** i, 16 // 2 ** i, 4)) for i in range(3)]
    t = jnp.array([0.3])
    p = net.init(jax.random.PRNGKey(0), x, t, maps)
    p = jax.tree_util.tree_map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(9), a.shape), p)
    out = net.apply(p, x, t, maps)
    for i in range(3):                                     # every level's map reaches the output
        moved = [m + (1.0 if j == i else 0.0) for j, m in enumerate(maps)]
        assert float(jnp.max(jnp.abs(net.apply(p, x, t, moved) - out))) > 1e-3, i
    with pytest.raises(ValueError, match="map 1"):
        net.apply(p, x, t, [maps[0], maps[0], maps[2]])
    with pytest.raises(ValueError, match="1 to 3"):
        net.apply(p, x, t, maps + maps[:1])


def test_context_network_upsamples_the_latent_to_four_scales():
    ctx = ContextNetwork(features=(4, 6, 8, 10), norm_groups=2)
    y = jnp.ones((2, 3, 5, 7))
    maps = ctx.apply(ctx.init(jax.random.PRNGKey(0), y), y)
    assert [m.shape for m in maps] == [(2, 48, 80, 4), (2, 24, 40, 6), (2, 12, 20, 8), (2, 6, 10, 10)]


def test_encoder_is_trained_end_to_end_by_the_decoder_loss(trained):
    """With beta = 0 the only loss is the conditional denoising term: it must still move g_a (Eq. 22 trains the
    encoder through the decoder), unlike HFD, whose stage 1 gets no decoder gradient (test_hfd.py)."""
    config, params, _ = trained
    method = cdc.make_method(_config(beta=0.0))
    x = jnp.asarray(crops(np.random.default_rng(1), 2), jnp.float32) / 127.5 - 1
    g = jax.jit(jax.grad(lambda p: method.loss(p, {"image": x}, jax.random.PRNGKey(0), True)[0]))(params)
    assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree_util.tree_leaves(g["params"]["g_a"])) > 0
    # the decoder's x0-prediction depends on the latent through the context maps
    fn = method.model_fn(params)
    y_hat = jnp.zeros((1, 4, 4, 48))
    maps0 = method.model.apply(params, y_hat, method=CDCModel.context)
    maps1 = method.model.apply(params, y_hat + 1.0, method=CDCModel.context)
    z, t = jnp.zeros((1, 64, 64, 3)), jnp.array([0.5])
    assert float(jnp.max(jnp.abs(fn(z, t, maps0) - fn(z, t, maps1)))) > 1e-4


def test_round_trip_rate_and_realism_knob(trained):
    config, params, codec = trained
    assert isinstance(codec, Codec)
    image = skimage.data.coffee()[30:100, 200:290]                      # 70 x 90: padded to 128 x 128
    data = codec.compress(image)
    header, segs = bitstream.unpack(data)
    assert header.codec == "cdc" and header.seed != 0 and header.image_shape == (70, 90, 3) and len(segs) == 2
    # the latent decoded from the file is the rounded latent of the image
    y = codec._latent(image)
    _, y_sym, mean = codec.latent.decode_symbols(segs, codec.latent_shape(image.shape))
    np.testing.assert_array_equal(y_sym, np.round(y - mean))            # rounding around the mean
    y_hat = codec.latent.decode(segs, codec.latent_shape(image.shape))
    x_star = codec.decompress(data, realism=0.0)
    x_one = codec.decompress(data, realism=1.0)
    x_half = codec.decompress(data, realism=0.5)
    assert x_one.shape == image.shape and x_one.dtype == np.uint8
    assert np.abs(x_one.astype(int) - x_star).mean() > 0.5
    assert np.abs(x_half - 0.5 * (x_star.astype(float) + x_one)).max() <= 1.0
    # X* is the one-call x0-prediction at t = 1 from the header-seeded noise
    k_init, _ = conditional.decoder_keys(header.seed)
    z = 0.8 * jax.random.normal(k_init, (1, 128, 128, 3))
    maps = codec.method.model.apply(codec.params, jnp.asarray(y_hat[None]), method=CDCModel.context)
    direct = codec.method.model_fn(codec.params)(z, jnp.ones((1,)), maps)
    np.testing.assert_array_equal(x_star, images.to_uint8(jnp.clip(direct, -1, 1))[0, :70, :90])
    # real file bits (header included) vs the model's estimate on a 512x512 photo
    big = skimage.data.astronaut()
    real = 8 * len(codec.compress(big))
    est = codec.estimate_bits(big, realism=0.5)
    print(f"real/estimated bits = {real / est:.4f} ({real} / {est:.0f})")
    assert 0.97 <= real / est <= 1.01, (real, est)


def test_decoding_is_reproducible_from_the_header_seed(trained, tmp_path):
    config, params, codec = trained
    image = skimage.data.chelsea()[:64, :64]
    data = codec.compress(image)
    assert codec.compress(image) == data
    rec = codec.decompress(data)
    np.testing.assert_array_equal(rec, codec.decompress(data))
    assert np.abs(codec.decompress(codec.compress(image, seed=777)).astype(int) - rec).max() > 0
    custom = codec.compress(image, settings=conditional.DecoderSettings(steps=2, realism=0.75))
    np.testing.assert_array_equal(codec.decompress(custom), codec.decompress(data, sampling_steps=2, realism=0.75))
    np.testing.assert_array_equal(decode_in_fresh_process(config, params, data, tmp_path), rec)


def test_wrong_codec_truncated_corrupt_and_bad_options_are_clear_errors(trained):
    config, params, codec = trained
    data = codec.compress(skimage.data.coffee()[:64, :64])
    hfd_like = bitstream.pack(bitstream.Header(codec="hfd", params_hash=bitstream.peek(data).params_hash,
                                               image_shape=(64, 64, 3), seed=5,
                                               meta=conditional.DecoderSettings(3, 1.0).to_meta()),
                              bitstream.unpack(data)[1])
    assert hfd.CODEC_NAME == "hfd"
    with pytest.raises(bitstream.BitstreamError, match="hfd|codec"):
        codec.decompress(hfd_like)                                      # another codec's file
    header, segs = bitstream.unpack(data)
    integer_flag = bitstream.pack(dataclasses.replace(header, meta=conditional.DecoderSettings(
        3, 1.0, stage1_integer=True).to_meta()), segs)                  # a flag only HFD files carry
    with pytest.raises(bitstream.BitstreamError, match="integer stage-1"):
        codec.decompress(integer_flag)
    ntc_config = ml_collections.ConfigDict({"method": "mean_scale", "model": {"N": 32, "M": 48, "lmbda": 0.01}})
    ntc_params = ntc.make_method(ntc_config).init(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 64, 64, 3))})
    with pytest.raises(bitstream.BitstreamError, match="cdc|codec"):
        ntc.make_codec(ntc_config, ntc_params).decompress(data)       # a CDC file given to an NTC checkpoint
    check_file_errors(cdc, config, params, codec, data, flip=0x10)
    with pytest.raises(OptionError, match="preview"):
        codec.decompress(data, preview=True)                            # CDC has no pixel-space preview
    with pytest.raises(OptionError, match="sampling_steps"):
        codec.decompress(data, sampling_steps=0)
    with pytest.raises(ValueError, match="seed"):
        codec.compress(skimage.data.coffee()[:64, :64], seed=0)


def test_work_a_file_can_ask_for_is_bounded(trained):
    """Fuzz regression (issue 16's long run: a header asking for 10,000 sampler steps decoded for > 20 s): a file's
    own default is at most conditional.MAX_FILE_STEPS steps; above that the file is refused before any decoding,
    while a user may still choose up to the option's maximum explicitly."""
    _, _, codec = trained
    f = fuzz.parse_raw(codec.compress(skimage.data.coffee()[:64, :64]))
    for steps in (conditional.MAX_FILE_STEPS + 1, 10_000, 2**32, 2**62):
        f.meta = bytes([1]) + write_varint(steps) + write_varint(1000)
        out = fuzz.run_case(codec.decompress, f"steps={steps}", fuzz.raw_pack(f), timeout_s=20.0)
        assert (out.status, out.error) == ("refused", "BitstreamError"), out
    f.meta = bytes([1]) + write_varint(10_000) + write_varint(1000)
    with pytest.raises(bitstream.BitstreamError, match="asks for 10000 sampler steps, more than the 1000"):
        codec.decompress(fuzz.raw_pack(f))
    with pytest.raises(ValueError, match="1..1000"):
        codec.compress(skimage.data.coffee()[:64, :64], settings=conditional.DecoderSettings(steps=1001, realism=1.0))
    meta = bytes([1]) + write_varint(17) + write_varint(1000)           # the limit is the process's choice
    assert conditional.DecoderSettings.from_meta(meta, "cdc").steps == 17
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(conditional.MAX_FILE_STEPS_ENV, "16")                  # what the fuzzer sets
        with pytest.raises(bitstream.BitstreamError, match="17 sampler steps, more than the 16"):
            conditional.DecoderSettings.from_meta(meta, "cdc")
        with pytest.raises(ValueError, match="1..16"):
            conditional.DecoderSettings(steps=17, realism=1.0)
        mp.setenv(conditional.MAX_FILE_STEPS_ENV, "many")
        with pytest.raises(ValueError, match="GENCOMP_MAX_FILE_STEPS"):
            conditional.DecoderSettings.from_meta(meta, "cdc")
    top = conditional.SAMPLING_STEPS_OPTION.maximum                       # the user's explicit choice may go higher
    assert top == 10_000 and conditional.resolve(conditional.DecoderSettings(3, 1.0), {"sampling_steps": top})[0] == top


def test_loss_weight_min_snr_or_uniform(trained):
    """model.loss_weight: "min_snr" weights each image's x0 error by min(SNR(t), 5), "uniform" by 1; SNR from the
    cosine log-SNR schedule written out here (gamma(t) = 2 log tan(a t + b), a and b such that gamma runs from
    gamma_min to gamma_max). beta = rho = 0, so the loss is the weighted error alone; a bad name is a clear error."""
    _, params, _ = trained
    x = jnp.asarray(crops(np.random.default_rng(2), 3), jnp.float32) / 127.5 - 1
    key = jax.random.PRNGKey(5)
    losses = {}
    for w in ("min_snr", "uniform"):
        c = _config(beta=0.0)
        c.model.loss_weight = w
        method = cdc.make_method(c)
        losses[w] = method.loss(params, {"image": x}, key, True)
    # the per-image errors and times of this draw, from the objective the method calls
    r_lat, r_den, _ = jax.random.split(key, 3)
    method = cdc.make_method(_config(beta=0.0))
    y = method.model.apply(params, x, method=CDCModel.analysis)
    lat = method.model.apply(params, y, train=True, rng=r_lat, method=CDCModel.latent_forward)
    maps = method.model.apply(params, lat["y_hat"], method=CDCModel.context)
    terms = cdc.x0_denoising_terms(method.model_fn(params, train=True, rng=None), x, r_den, gamma_fn=method.gamma,
                                   prediction="x0", y=maps, max_snr=5.0)
    t = np.asarray(terms.t, np.float64)
    b = math.atan(math.exp(0.5 * -13.3))
    a = math.atan(math.exp(0.5 * 5.0)) - b
    snr = np.tan(a * t + b) ** -2.0
    mse = np.asarray(terms.mse, np.float64)
    np.testing.assert_allclose(float(losses["uniform"][0]), mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(losses["min_snr"][0]), (np.minimum(snr, 5.0) * mse).mean(), rtol=1e-4)
    bad = _config()
    bad.model.loss_weight = "snr"
    with pytest.raises(ValueError, match="loss_weight"):
        cdc.make_method(bad)
