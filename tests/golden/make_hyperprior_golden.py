"""Makes tests/golden/hyperprior_*: a tiny hyperprior, an image, its .gcz and the decoded PNG.

The files pin the hyperprior file format: tests/codecs/test_ntc.py decodes `hyperprior_golden.gcz`
with today's code and asserts the reconstruction equals `hyperprior_golden_decoded.png` byte for
byte (and that compressing `hyperprior_golden_source.png` gives the same file).

They were written ONCE with the code of commit 44b2816 (before the latent-codec refactor), run from
an exported tree so that the files come from the old code:

    git archive 44b2816 | tar -x -C /tmp/gold44
    PYTHONPATH=/tmp/gold44 .venv/bin/python tests/golden/make_hyperprior_golden.py

Parameters: ScaleHyperprior N=4, M=8 initialised with PRNGKey(0), then 60 Adam steps (lr 1e-2,
lambda 0.5) on 64x64 crops of skimage photos so that y and the scales are not trivial;
saved with flax.serialization msgpack (27 KB). Image: Kodak kodim23[150:247, 250:401] (97x151,
odd-sized: padded to 128x192 inside the codec).
"""

from __future__ import annotations

import pathlib

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import skimage.data

from gencomp_jax.codecs import ntc
from gencomp_jax.data import read_image, write_png

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
PARAMS = HERE / "hyperprior_golden_params.msgpack"
SOURCE = HERE / "hyperprior_golden_source.png"
GCZ = HERE / "hyperprior_golden.gcz"
DECODED = HERE / "hyperprior_golden_decoded.png"
N, M = 4, 8


def config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"method": "hyperprior", "model": {"N": N, "M": M, "lmbda": 0.5}})


def source_image() -> np.ndarray:
    return read_image(REPO / "data" / "kodak" / "kodim23.png")[150:247, 250:401]


def _train_params():
    method = ntc.make_method(config())
    rng = np.random.default_rng(0)
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    crops = []
    for _ in range(60 * 4):
        p = photos[rng.integers(len(photos))]
        i, j = rng.integers(0, p.shape[0] - 64), rng.integers(0, p.shape[1] - 64)
        crops.append(p[i:i + 64, j:j + 64])
    data = jnp.asarray(np.stack(crops), jnp.float32).reshape(60, 4, 64, 64, 3) / 127.5 - 1
    params = method.init(jax.random.PRNGKey(0), {"image": data[0]})
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch, key):
        g = jax.grad(lambda p: method.loss(p, {"image": batch}, key, True)[0])(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt

    for i in range(60):
        params, opt = step(params, opt, data[i], jax.random.PRNGKey(i))
    return jax.tree_util.tree_map(np.asarray, params)


def main():
    params = _train_params()
    PARAMS.write_bytes(flax.serialization.msgpack_serialize(params))
    params = flax.serialization.msgpack_restore(PARAMS.read_bytes())
    image = source_image()
    write_png(SOURCE, image)
    codec = ntc.make_codec(config(), params)
    data = codec.compress(image)
    GCZ.write_bytes(data)
    write_png(DECODED, codec.decompress(data))
    print(f"wrote {PARAMS.name} ({PARAMS.stat().st_size} B), {GCZ.name} ({len(data)} B), "
          f"{SOURCE.name}, {DECODED.name}")


if __name__ == "__main__":
    main()
