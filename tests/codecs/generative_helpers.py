"""Shared by tests/codecs/test_ntc.py, test_cdc.py and test_hfd.py: training crops, a few jitted Adam steps of a
Method, a trained codec for a module-scoped fixture, and decoding (and re-encoding) a file in a fresh process (the
reproducibility check of decoders driven by a header seed)."""

import json
import pathlib
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import skimage.data

REPO = pathlib.Path(__file__).resolve().parents[2]


def crops(rng, num, size=64, photos=("astronaut", "coffee", "chelsea")):
    """uint8 [num, size, size, 3] random crops of scikit-image photographs (names in skimage.data)."""
    photos = [getattr(skimage.data, name)() for name in photos]
    out = []
    for _ in range(num):
        p = photos[rng.integers(len(photos))]
        i, j = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        out.append(p[i:i + size, j:j + size])
    return np.stack(out)


def adam_step(method, tx):
    """jit(step)(params, opt_state, x, key) -> (params, opt_state, loss): one optimizer step of `method.loss` on a
    model-float batch x (no EMA, no schedule; the plain step that tests and benchmarks/ntc.py time and train)."""

    @jax.jit
    def step(params, opt, x, key):
        (loss, _), g = jax.value_and_grad(method.loss, has_aux=True)(params, {"image": x}, key, True)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    return step


def train(method, steps, *, batch=8, lr=2e-3):
    """params of `method` after `steps` jitted Adam steps on batches of 64x64 crops (seeded)."""
    data = jnp.asarray(crops(np.random.default_rng(0), steps * batch), jnp.float32)
    data = data.reshape(steps, batch, 64, 64, 3) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": data[0]})
    tx = optax.adam(lr)
    opt = tx.init(params)
    step = adam_step(method, tx)
    for i in range(steps):
        params, opt, loss = step(params, opt, data[i], jax.random.PRNGKey(i))
    assert np.isfinite(float(loss))
    return params


def trained_codec(module, config, steps=25):
    """(config, params, codec) of `module`'s method (codecs.ntc, cdc, hfd: make_method / make_codec) after
    `steps` Adam steps of `train`; the method is checked to satisfy the `Method` protocol."""
    from gencomp_jax.codecs.base import Method

    method = module.make_method(config)
    assert isinstance(method, Method)
    params = train(method, steps)
    return config, params, module.make_codec(config, params)


def check_file_errors(module, config, params, codec, data: bytes, *, flip: int):
    """`data` (a file of `codec`) is refused with a BitstreamError by `module.make_codec` with other parameters
    ("model"), when truncated by 3 bytes, and with bit mask `flip` XORed into its second-to-last byte."""
    import pytest

    from gencomp_jax.codecs import bitstream

    other = module.make_codec(config, jax.tree_util.tree_map(lambda a: a * 1.001, params))
    with pytest.raises(bitstream.BitstreamError, match="model"):
        other.decompress(data)
    with pytest.raises(bitstream.BitstreamError):
        codec.decompress(data[:-3])
    bad = bytearray(data)
    bad[-2] ^= flip
    with pytest.raises(bitstream.BitstreamError):
        codec.decompress(bytes(bad))


def decode_in_fresh_process(config, params, data: bytes, tmp_path, *, encode=None):
    """registry.make_codec(config, params).decompress(data) run by a new Python process. With `encode` (a uint8
    image), that process also compresses it: returns (decoded image, the file it wrote)."""
    (tmp_path / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(
        jax.tree_util.tree_map(np.asarray, params)))
    (tmp_path / "file.gcz").write_bytes(data)
    if encode is not None:
        np.save(tmp_path / "img.npy", encode)
    script = f"""
import sys, json, numpy as np, flax.serialization, ml_collections
sys.path.insert(0, {str(REPO)!r})
from gencomp_jax import registry
params = flax.serialization.msgpack_restore(open({str(tmp_path / 'params.msgpack')!r}, 'rb').read())
config = ml_collections.ConfigDict(json.loads({json.dumps(config.to_dict())!r}))
codec = registry.make_codec(config, params)
np.save({str(tmp_path / 'rec.npy')!r}, codec.decompress(open({str(tmp_path / 'file.gcz')!r}, 'rb').read()))
if {encode is not None}:
    open({str(tmp_path / 'again.gcz')!r}, 'wb').write(codec.compress(np.load({str(tmp_path / 'img.npy')!r})))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=600)
    rec = np.load(tmp_path / "rec.npy")
    return rec if encode is None else (rec, (tmp_path / "again.gcz").read_bytes())
