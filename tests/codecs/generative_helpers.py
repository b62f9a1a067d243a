"""Shared by tests/codecs/test_cdc.py and test_hfd.py: training crops, a few jitted Adam steps of a Method,
and decoding a file in a fresh process (the reproducibility check of decoders driven by a header seed)."""

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


def crops(rng, num, size=64):
    """uint8 [num, size, size, 3] random crops of three scikit-image photographs."""
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    out = []
    for _ in range(num):
        p = photos[rng.integers(len(photos))]
        i, j = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        out.append(p[i:i + size, j:j + size])
    return np.stack(out)


def train(method, steps, *, batch=8, lr=2e-3):
    """params of `method` after `steps` jitted Adam steps on batches of 64x64 crops (seeded)."""
    data = jnp.asarray(crops(np.random.default_rng(0), steps * batch), jnp.float32)
    data = data.reshape(steps, batch, 64, 64, 3) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": data[0]})
    tx = optax.adam(lr)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch, key):
        (loss, _), g = jax.value_and_grad(method.loss, has_aux=True)(params, {"image": batch}, key, True)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    for i in range(steps):
        params, opt, loss = step(params, opt, data[i], jax.random.PRNGKey(i))
    assert np.isfinite(float(loss))
    return params


def decode_in_fresh_process(config, params, data: bytes, tmp_path) -> np.ndarray:
    """registry.make_codec(config, params).decompress(data) run by a new Python process."""
    (tmp_path / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(
        jax.tree_util.tree_map(np.asarray, params)))
    (tmp_path / "file.gcz").write_bytes(data)
    script = f"""
import sys, json, numpy as np, flax.serialization, ml_collections
sys.path.insert(0, {str(REPO)!r})
from gencomp_jax import registry
params = flax.serialization.msgpack_restore(open({str(tmp_path / 'params.msgpack')!r}, 'rb').read())
config = ml_collections.ConfigDict(json.loads({json.dumps(config.to_dict())!r}))
codec = registry.make_codec(config, params)
np.save({str(tmp_path / 'rec.npy')!r}, codec.decompress(open({str(tmp_path / 'file.gcz')!r}, 'rb').read()))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=600)
    return np.load(tmp_path / "rec.npy")
