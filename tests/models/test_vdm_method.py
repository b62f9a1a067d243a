"""The "vdm" / "flow" Methods: protocol, finite bits/dim, eval artifacts (runlocal configs, tiny shapes)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.codecs.base import Method
from gencomp_jax.registry import make_method
from gencomp_jax.config_utils import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config(name, arg="runlocal"):
    return load_config(f"{name}:{arg}")


@pytest.mark.parametrize("name", ["vdm", "flow"])
def test_method_loss_and_artifacts(name, tmp_path):
    """The runlocal config's Method with its network cut to one 8-channel level (the multi-level UNet is tested in
    test_unet.py), 8x8 images: protocol, finite bits/dim and gradients (train=True), a sample grid. Loss, metrics
    and gradients come from one jitted function (compiles dominate this test)."""
    cfg = _config(name)
    cfg.model.net = dict(cfg.model.net, ch=8, norm_groups=4, ch_mult=(1,), attn_levels=())
    cfg.data.crop_size = 8
    cfg.model.num_samples = 2
    cfg.model.sample_steps = 2
    cfg.model.sampler = "ode_euler"   # one network call per step (the samplers are tested in tests/diffusion)
    m = make_method(cfg)
    assert isinstance(m, Method)
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3))
    batch = {"image": jnp.asarray(img, jnp.float32) / 127.5 - 1.0}
    p = jax.jit(m.init)(jax.random.PRNGKey(0), batch)

    @jax.jit
    def run(p, k):
        loss, met = m.loss(p, batch, k, False)
        g = jax.grad(lambda p: m.loss(p, batch, k, True)[0])(p)
        return loss, met, g

    loss, met, g = run(p, jax.random.PRNGKey(1))
    assert np.isfinite(float(loss)) and 0 < float(met["bits_per_dim"]) < 30
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))
    out = m.eval_artifacts(p, jax.random.PRNGKey(2), str(tmp_path), 7)
    assert (tmp_path / "samples_0000007.png").exists() and out["sample_finite"] == 1.0


def test_config_presets():
    assert _config("vdm", "uqdm_small").model.net["arch"] == "vdm_unet"
    assert _config("vdm", "cifar10").data.name == "cifar10"
    assert _config("flow", "imagenet64").data.name == "imagenet_resized/64x64"
    with pytest.raises(ValueError, match="Unknown config preset"):
        _config("vdm", "runlocl")
