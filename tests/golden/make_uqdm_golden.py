"""One-off script that wrote the UQDM golden files tests/golden/uqdm_* with the code of commit 44b2816.

The golden files pin the UQDM file format and its decoder: tests/codecs/test_uqdm.py decodes
`uqdm_golden.gcz` with today's code and asserts the same images (and that compress writes the same
bytes). Re-running this script with later code overwrites the files: do that only on purpose, when the
file format changes (then bump FORMAT_VERSION and keep the old decoder path).

Files written (all small):
  uqdm_config.json     the config the codec was built from, with the key names of 44b2816
                       (model.num_steps = diffusion steps T, model.unet = the network): loading it
                       exercises the old->new config-key migration (models/uqdm.py).
  uqdm_params.msgpack  flax msgpack of the parameters: the `runlocal` tiny net shrunk to
                       embedding_dim 16 (norm_groups 4) to stay < 200 KB, initialised with seed 0 and
                       perturbed by 0.02 N(0, 1) (seed 7) so predictions depend on the input.
  uqdm_image.png       a smooth random 40x24 (HxW) image (numpy seed 0): odd-sized, 3x2 tiles of 16
                       with padding, and 6 tiles over chunks of tile_batch 4 (the last chunk padded).
  uqdm_golden.gcz      compress(image) (lossless: T = 4 step segments + the X_0 segment).
  uqdm_steps{k}_{r}.png decompress(gcz, steps=k, reconstruction=r) for the (k, r) in DECODES.

Run from the repository root:  .venv/bin/python tests/golden/make_uqdm_golden.py
"""

from __future__ import annotations

import json
import pathlib
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from gencomp_jax.config_utils import load_config  # noqa: E402
from gencomp_jax.data.images import write_png  # noqa: E402

# (steps, reconstruction) decodes stored as PNGs; steps 5 = every segment (lossless, == the image)
DECODES = ((0, "denoise"), (1, "denoise"), (2, "flow"), (2, "ancestral"), (4, "denoise"), (5, "denoise"))


def golden_config():
    """runlocal UQDM with a smaller network and tiles (keys as of commit 44b2816)."""
    cfg = load_config("uqdm:runlocal")
    cfg.model.unet = {"arch": "vdm_unet", "preset": "tiny", "embedding_dim": 16, "norm_groups": 4}
    cfg.model.tile_size = 16
    cfg.model.tile_batch = 4
    return cfg


def golden_params(cfg):
    from gencomp_jax.models import uqdm as M

    params = jax.jit(M.UQDM(cfg.model).init)({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 16, 16, 3)),
                                             jax.random.PRNGKey(1))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    leaves = [a + 0.02 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def golden_image():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (5, 3, 3)).astype(np.float64)
    img = np.kron(base, np.ones((8, 8, 1)))
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def main():
    from gencomp_jax.codecs import uqdm as C

    cfg = golden_config()
    params = golden_params(cfg)
    img = golden_image()
    assert img.shape == (40, 24, 3)
    codec = C.make_codec(cfg, params)
    data = codec.compress(img)
    (HERE / "uqdm_config.json").write_text(json.dumps(json.loads(cfg.to_json()), indent=1, sort_keys=True))
    (HERE / "uqdm_params.msgpack").write_bytes(flax.serialization.to_bytes(params))
    write_png(HERE / "uqdm_image.png", img)
    (HERE / "uqdm_golden.gcz").write_bytes(data)
    for k, r in DECODES:
        write_png(HERE / f"uqdm_steps{k}_{r}.png", codec.decompress(data, steps=k, reconstruction=r))
    print(f"wrote {len(data)} bytes of .gcz, params {len((HERE / 'uqdm_params.msgpack').read_bytes())} bytes")


if __name__ == "__main__":
    main()
