"""Tests for the hyperprior codec (gencomp_jax/codecs/ntc.py) with a tiny model trained in the test."""

import pathlib
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import skimage.data

from gencomp_jax.codecs import bitstream, ntc
from gencomp_jax.codecs.base import Codec, Method

REPO = pathlib.Path(__file__).resolve().parents[2]


def _config(n=32, m=48, lmbda=0.01):
    c = ml_collections.ConfigDict()
    c.method = "hyperprior"
    c.model = ml_collections.ConfigDict({"N": n, "M": m, "lmbda": lmbda})
    return c


def _crops(rng, num, size=64):
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    out = []
    for _ in range(num):
        p = photos[rng.integers(len(photos))]
        i, j = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        out.append(p[i:i + size, j:j + size])
    return np.stack(out)


@pytest.fixture(scope="module")
def trained():
    """A tiny hyperprior trained for 25 jitted Adam steps on 64x64 crops of skimage photos."""
    config = _config()
    method = ntc.make_method(config)
    assert isinstance(method, Method)
    rng = np.random.default_rng(0)
    data = jnp.asarray(_crops(rng, 25 * 8), jnp.float32).reshape(25, 8, 64, 64, 3) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": data[0]})
    tx = optax.adam(2e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch, key):
        (loss, _), g = jax.value_and_grad(method.loss, has_aux=True)(params, {"image": batch}, key, True)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    for i in range(25):
        params, opt, loss = step(params, opt, data[i], jax.random.PRNGKey(i))
    assert np.isfinite(float(loss))
    return config, params, ntc.make_codec(config, params)


def test_method_metrics_consistent(trained):
    config, params, _ = trained
    method = ntc.make_method(config)
    x = jnp.asarray(_crops(np.random.default_rng(1), 2), jnp.float32) / 127.5 - 1
    loss, m = jax.jit(lambda p, x: method.loss(p, {"image": x}, None, False))(params, x)
    np.testing.assert_allclose(loss, m["bpp"] + 0.01 * 255 ** 2 * m["mse"], rtol=1e-5)
    np.testing.assert_allclose(m["psnr"], -10 * np.log10(m["mse"]), rtol=1e-5)


def test_round_trip_symbols_odd_size_and_rate(trained):
    _, params, codec = trained
    assert isinstance(codec, Codec)
    image = skimage.data.astronaut()[:37, 100:153]  # 37 x 53: padded to 64 x 64
    data = codec.compress(image)
    header, z_sym, y_sym = codec.decode_symbols(data)
    assert header.image_shape == (37, 53, 3)
    x = jnp.asarray(ntc._pad(image)[None], jnp.float32) / 127.5 - 1
    y, z = codec._analysis(params, x)
    np.testing.assert_array_equal(y_sym, np.round(np.asarray(y[0])))
    np.testing.assert_array_equal(z_sym, codec._z_symbols(np.asarray(z[0])))
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
    (tmp_path / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(
        jax.tree_util.tree_map(np.asarray, params)))
    (tmp_path / "file.gcz").write_bytes(data)
    script = f"""
import sys, numpy as np, flax.serialization, ml_collections
sys.path.insert(0, {str(REPO)!r})
from gencomp_jax.codecs import ntc
params = flax.serialization.msgpack_restore(open({str(tmp_path / 'params.msgpack')!r}, 'rb').read())
c = ml_collections.ConfigDict({{"method": "hyperprior", "model": {{"N": 32, "M": 48, "lmbda": 0.01}}}})
codec = ntc.make_codec(c, params)
np.save({str(tmp_path / 'rec.npy')!r}, codec.decompress(open({str(tmp_path / 'file.gcz')!r}, 'rb').read()))
open({str(tmp_path / 'again.gcz')!r}, 'wb').write(codec.compress(np.load({str(tmp_path / 'img.npy')!r})))
"""
    np.save(tmp_path / "img.npy", image)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "rec.npy"), codec.decompress(data))
    assert (tmp_path / "again.gcz").read_bytes() == data


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
