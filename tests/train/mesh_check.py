"""Subprocess script for test_mesh.py: run with XLA_FLAGS=--xla_force_host_platform_device_count=8.

Trains the same steps on several meshes and prints JSON {name: {mesh: {"loss", "max_abs_diff", "max_ref"}}},
differences taken against the 1-device mesh. Usage: mesh_check.py WORKDIR NAME [NAME...]
(NAME: "toy" or a registered method whose configs/<name>.py exists).
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(HERE.parents[1] / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from gencomp_jax.train import load_params, train_and_evaluate  # noqa: E402
import toymethod  # noqa: E402

MESHES = {"1dev": ((1,), ("data",), 0), "8dev": ((-1,), ("data",), 0),
          "4x2fsdp": ((4, 2), ("data", "fsdp"), 16)}


CROPS = {"hyperprior": 64, "vdm": 16}  # smallest crops the architectures accept
TINY = {"hyperprior": {"N": 8, "M": 8}, "vdm": {"net.ch": 8, "net.norm_groups": 4, "net.num_res_blocks": 1}}


class LossOnly:
    """The method without its eval_artifacts hook (sampling is not what this check is about)."""

    def __init__(self, method):
        self.init, self.loss = method.init, method.loss


def method_and_config(name):
    if name == "toy":
        c = toymethod.toy_config(**{"train.num_steps": 2, "train.checkpoint_every": 0,
                                    "train.log_every": 1, "optim.warmup_steps": 0})
        return toymethod.ToyAutoencoder(), c
    from gencomp_jax import registry
    from gencomp_jax.codecs.base import RegistryError
    from gencomp_jax.config_utils import load_config
    cfg_file = HERE.parents[1] / "configs" / f"{name}.py"
    try:
        registry.get(name)
    except RegistryError:
        return None, None
    if not cfg_file.exists():
        return None, None
    c = load_config(f"{cfg_file}:runlocal")
    c.data.batch_size, c.data.crop_size = 8, CROPS.get(name, 32)
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = 1, 0, 1
    c.train.progress_bar, c.optim.warmup_steps = False, 0
    c.data.eval_source = ""
    for k, v in TINY.get(name, {}).items():
        node = c.model
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        if last in node:
            node[last] = v
    # SGD: the update is linear in the gradient, so the comparison measures the sharded gradient.
    # (Adam's first step is lr * g / (|g| + eps): entries with |g| ~ eps flip sign on float noise.)
    c.optim.optimizer, c.optim.learning_rate, c.optim.clip_norm = "sgd", 1e-2, 0.0
    return LossOnly(registry.make_method(c)), c


def main():
    workdir, names = pathlib.Path(sys.argv[1]), sys.argv[2:]
    assert jax.device_count() == 8, jax.devices()
    out = {}
    for name in names:
        method, config = method_and_config(name)
        if method is None:
            out[name] = "missing"
            continue
        res, ref = {}, None
        meshes = MESHES if name == "toy" else {k: MESHES[k] for k in ("1dev", "8dev")}
        for mesh_name, (shape, axes, fsdp) in meshes.items():
            c = config.copy_and_resolve_references()
            c.mesh.shape, c.mesh.axes, c.mesh.fsdp_min_size = shape, axes, fsdp
            it = toymethod.ToyIterator(batch_size=c.data.batch_size, crop=c.data.crop_size, seed=3)
            final = train_and_evaluate(c, workdir / f"{name}_{mesh_name}", method=method, train_iterator=it)
            params = load_params(workdir / f"{name}_{mesh_name}", ema=False)[1]
            leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
            if ref is None:
                ref = leaves
            res[mesh_name] = {
                "loss": final["loss"], "grad_norm": final["grad_norm"],
                "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(leaves, ref)),
                "max_ref": max(float(np.max(np.abs(b))) for b in ref)}
        out[name] = res
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
