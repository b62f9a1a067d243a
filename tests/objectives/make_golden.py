"""Writes golden_vdm_flow.json: the "vdm" and "flow" Methods on a fixed tiny batch (parameter tree, loss and
metrics with train=False/True, the sum of a 2-step sample).

The checked-in file was written by this script at commit 44b2816, when the Methods lived in
gencomp_jax/models/vdm.py (`from gencomp_jax.models.vdm import make_method`); test_vdm_flow.py checks that
the objectives of gencomp_jax/objectives reproduce it, so checkpoints of that code still load and train the
same. Usage: .venv/bin/python tests/objectives/make_golden.py > tests/objectives/golden_vdm_flow.json
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.config_utils import load_config


def tiny_config(name):
    cfg = load_config(f"{name}:runlocal")
    cfg.model.net = dict(cfg.model.net, ch=8, norm_groups=4, ch_mult=(1,), attn_levels=())
    cfg.data.crop_size = 8
    return cfg


def batch():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3))
    return {"image": jnp.asarray(img, jnp.float32) / 127.5 - 1.0}


def perturbed_params(m, b):
    """Init params + 0.05 N(0, 1) noise (the zero-initialised output convolution would hide the network)."""
    p = m.init(jax.random.PRNGKey(0), b)
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [l + 0.05 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def values(make_method, name):
    m = make_method(tiny_config(name))
    b = batch()
    p = perturbed_params(m, b)
    paths = sorted(jax.tree_util.keystr(k) + str(tuple(v.shape)) for k, v in jax.tree_util.tree_leaves_with_path(p))
    res = {"param_paths": paths}
    for train in (False, True):
        loss, met = jax.jit(lambda p, k: m.loss(p, b, k, train))(p, jax.random.PRNGKey(1))
        res[f"train={train}"] = {"loss": float(loss), **{k: float(v) for k, v in met.items()}}
    s = m.sample(p, jax.random.PRNGKey(2), 2, sampler="ode_euler", steps=2, shape=(8, 8, 3))
    res["sample_sum"] = int(s.astype(np.int64).sum())
    return res


if __name__ == "__main__":
    from gencomp_jax.registry import make_method
    print(json.dumps({name: values(make_method, name) for name in ("vdm", "flow")}, indent=1))
