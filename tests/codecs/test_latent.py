"""Tests for the reusable stage-1 latent codec (gencomp_jax/codecs/latent.py) and the latent modules.

The latent modules are trained for a few seconds on a synthetic latent source whose mean and scale
are constant on the 4x4 blocks that one z position sees: y = m + s * N(0, 1), m in {-6, +6} per
block (all channels), s log-uniform in [0.5, 3] per block and channel. A scale-only hyperprior can only widen its Gaussians
to cover both signs; the mean-scale hyperprior can send the sign in z and pay about the conditional
entropy.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gencomp_jax.codecs.latent import LatentCodec
from gencomp_jax.models.hyperprior import HyperpriorLatent, MeanScaleLatent
from gencomp_jax.nn.layers import StridedConv, SubpixelConv

M = 8


def _source(rng, batch, size):
    blocks = (batch, size // 4, size // 4, 1)
    mean = np.where(rng.random(blocks) < 0.5, -6.0, 6.0)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(3.0), blocks[:3] + (M,)))
    up = lambda a: np.repeat(np.repeat(a, 4, axis=1), 4, axis=2)  # noqa: E731
    return (up(mean) + up(scale) * rng.standard_normal((batch, size, size, M))).astype(np.float32)


def _train(latent, steps=200, seed=0):
    rng = np.random.default_rng(seed)
    data = jnp.asarray(_source(rng, 8 * steps, 16)).reshape(steps, 8, 16, 16, M)
    variables = latent.init(jax.random.PRNGKey(seed), data[0], train=True, rng=jax.random.PRNGKey(1))
    # start with wide scales (channels [:M] of h_s's last layer are the scales in both variants):
    # today's likelihood floor has no gradient, so elements far outside a narrow initial Gaussian
    # would never pull it wider
    bias = variables["params"]["h_s"]["conv2"]["bias"]
    variables["params"]["h_s"]["conv2"]["bias"] = bias.at[:M].set(4.0)
    tx = optax.adam(1e-2)
    opt = tx.init(variables)

    @jax.jit
    def step(v, opt, y, key):
        def rate(v):
            out = latent.apply(v, y, train=True, rng=key)
            return jnp.mean(out["y_bits"] + out["z_bits"])
        g = jax.grad(rate)(v)
        upd, opt = tx.update(g, opt, v)
        return optax.apply_updates(v, upd), opt

    for i in range(steps):
        variables, opt = step(variables, opt, data[i], jax.random.PRNGKey(100 + i))
    return variables


@pytest.fixture(scope="module")
def codecs():
    return {name: LatentCodec(latent, _train(latent))
            for name, latent in [("hyperprior", HyperpriorLatent(N=8, M=M)),
                                 ("mean_scale", MeanScaleLatent(N=8, M=M))]}


@pytest.fixture(scope="module")
def test_latent():
    return _source(np.random.default_rng(7), 1, 32)[0]  # [32, 32, 8]: 8192 symbols


@pytest.mark.parametrize("name", ["hyperprior", "mean_scale"])
def test_round_trip_is_rounding_around_the_mean_and_real_bits_match_the_estimate(codecs, test_latent, name):
    codec = codecs[name]
    y = test_latent
    segments = codec.encode(y)
    assert len(segments) == 2 and all(isinstance(s, bytes) for s in segments)
    y_hat = codec.decode(segments, y.shape)
    assert y_hat.dtype == np.float32 and y_hat.shape == y.shape
    # the model's own test-time quantization (batched forward, not the codec's batch-1 path)
    model_y_hat = np.asarray(codec.latent.apply(codec.variables, y[None], train=False)["y_hat"][0])
    np.testing.assert_allclose(y_hat, model_y_hat, atol=1e-5)
    assert np.all(np.abs(y_hat - y) <= 0.5 + 1e-5)
    _, y_sym, mean = codec.decode_symbols(segments, y.shape)
    if name == "hyperprior":
        np.testing.assert_array_equal(y_hat, np.round(y))
    else:
        assert np.abs(mean).mean() > 1.0  # the means carry the block signs
    real = 8 * sum(len(s) for s in segments)
    est = codec.bits(y)
    print(f"{name}: real {real} bits, estimated {est:.0f}, ratio {real / est:.4f}")
    assert 0.99 <= real / est <= 1.01, (real, est)


def test_mean_scale_codes_a_source_with_means_in_fewer_bits(codecs, test_latent):
    hp = 8 * sum(len(s) for s in codecs["hyperprior"].encode(test_latent))
    ms = 8 * sum(len(s) for s in codecs["mean_scale"].encode(test_latent))
    print(f"bits per element: hyperprior {hp / test_latent.size:.3f}, mean-scale {ms / test_latent.size:.3f}")
    assert ms < 0.8 * hp, (ms, hp)


def test_batched_encoding_gives_the_same_bytes_and_shapes_are_checked(codecs, test_latent):
    codec = codecs["mean_scale"]
    ys = np.stack([test_latent, test_latent[::-1]])
    assert codec.encode_batch(ys) == [codec.encode(ys[0]), codec.encode(ys[1])]
    np.testing.assert_allclose(codec.bits_batch(ys), [codec.bits(ys[0]), codec.bits(ys[1])], rtol=1e-5)
    with pytest.raises(ValueError, match="multiples of 4"):
        codec.encode(test_latent[:30])
    with pytest.raises(ValueError, match=r"\(h, w, 8\)"):
        codec.decode(codec.encode(test_latent), (32, 32, 9))
    with pytest.raises(ValueError, match="2 segments"):
        codec.decode(codec.encode(test_latent)[:1], test_latent.shape)


class _CDCLike(nn.Module):
    """Another analysis transform (stride 4, M=12) with a nested mean-scale latent module, as CDC uses it."""

    @nn.compact
    def __call__(self, x, *, train, rng=None):
        y = StridedConv(12, 5, 2, name="enc1")(nn.relu(StridedConv(16, 5, 2, name="enc0")(x)))
        out = MeanScaleLatent(N=6, M=12, name="entropy")(y, train=train, rng=rng)
        return y, out, SubpixelConv(3, name="dec")(SubpixelConv(16, name="dec0")(out["y_hat"]))


def test_latent_codec_behind_another_analysis_transform():
    model = _CDCLike()
    x = jax.random.uniform(jax.random.PRNGKey(0), (1, 32, 32, 3), minval=-1, maxval=1)
    params = model.init(jax.random.PRNGKey(1), x, train=False)
    params = jax.tree_util.tree_map(lambda a: a, params)  # spread y so that there is something to code
    params["params"]["enc1"]["kernel"] = params["params"]["enc1"]["kernel"] * 20.0
    y, out, _ = model.apply(params, x, train=False)
    codec = LatentCodec(MeanScaleLatent(N=6, M=12), {"params": params["params"]["entropy"]})
    assert codec.stride == 4 and y.shape == (1, 8, 8, 12)
    y_hat = codec.decode(codec.encode(y[0]), (8, 8, 12))
    np.testing.assert_allclose(y_hat, np.asarray(out["y_hat"][0]), atol=1e-5)
    assert len(np.unique(np.round(y_hat))) > 5
    np.testing.assert_allclose(codec.bits(y[0]), float(out["y_bits"][0] + out["z_bits"][0]), rtol=1e-5)
