"""The "vdm" / "flow" objectives: protocol, finite bits/dim, the values of the code they replaced, samples."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.codecs.base import Method
from gencomp_jax.config_utils import load_config
from gencomp_jax.objectives.flow import FlowMatching
from gencomp_jax.objectives.vdm import VDM, ELBOTerms
from gencomp_jax.registry import get, make_method

from .make_golden import batch, perturbed_params, tiny_config, values

HERE = pathlib.Path(__file__).resolve().parent


def _config(name, arg="runlocal"):
    return load_config(f"{name}:{arg}")


@pytest.mark.parametrize("name", ["vdm", "flow"])
def test_method_loss_gradients_and_samples(name):
    """The runlocal config's Method with its network cut to one 8-channel level (the multi-level UNet is tested in
    test_unet.py), 8x8 images: protocol, finite bits/dim and gradients (train=True), samples for the PNG grid.
    Loss, metrics and gradients come from one jitted function (compiles dominate this test)."""
    cfg = tiny_config(name)
    cfg.model.num_samples = 2
    cfg.model.sample_steps = 2
    cfg.model.sampler = "ode_euler"   # one network call per step (the samplers are tested in tests/diffusion)
    m = make_method(cfg)
    assert isinstance(m, Method) and isinstance(m, {"vdm": VDM, "flow": FlowMatching}[name])
    b = batch()
    p = jax.jit(m.init)(jax.random.PRNGKey(0), b)

    @jax.jit
    def run(p, k):
        loss, met = m.loss(p, b, k, False)
        g = jax.grad(lambda p: m.loss(p, b, k, True)[0])(p)
        return loss, met, g

    loss, met, g = run(p, jax.random.PRNGKey(1))
    assert np.isfinite(float(loss)) and 0 < float(met["bits_per_dim"]) < 30
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))
    imgs = m.eval_samples(p, jax.random.PRNGKey(2))
    assert imgs.dtype == np.uint8 and imgs.shape == (2, 8, 8, 3) and imgs.std() > 0


@pytest.mark.parametrize("name", ["vdm", "flow"])
def test_reproduces_the_values_of_models_vdm(name):
    """Golden values written by make_golden.py with the Methods of gencomp_jax/models/vdm.py (commit 44b2816):
    the same parameter tree (old checkpoints load), losses and metrics to float32 rounding, the same samples up
    to a few 8-bit roundings (the float->uint8 conversion is now data.to_uint8)."""
    gold = json.loads((HERE / "golden_vdm_flow.json").read_text())[name]
    new = values(make_method, name)
    assert new["param_paths"] == gold["param_paths"]
    for mode in ("train=False", "train=True"):
        assert set(gold[mode]) <= set(new[mode])
        for k, v in gold[mode].items():
            assert new[mode][k] == pytest.approx(v, rel=1e-6, abs=1e-7), (mode, k)
    assert abs(new["sample_sum"] - gold["sample_sum"]) <= 2


def test_elbo_terms_are_per_example_and_sum_to_the_loss():
    """ELBOTerms hold [B] terms; the loss is the batch mean of their sum; an example's bits/dim depend on that
    example only (the same image twice in a batch gets the same recon and prior terms)."""
    m = make_method(tiny_config("vdm"))
    b = batch()
    b2 = {"image": jnp.concatenate([b["image"][:1]] * 2)}
    p = perturbed_params(m, b)
    terms = jax.jit(lambda p, k: m.elbo(p, b2, k))(p, jax.random.PRNGKey(1))
    assert isinstance(terms, ELBOTerms) and terms.recon.shape == (2,)
    np.testing.assert_allclose(terms.prior[0], terms.prior[1], rtol=1e-6)
    loss, met = m.loss(p, b2, jax.random.PRNGKey(1), False)
    assert float(loss) == pytest.approx(float(jnp.mean(terms.bits_per_dim)), rel=1e-6)


def test_unconditional_objective_refuses_a_cond_entry():
    m = make_method(tiny_config("flow"))
    b = batch()
    p = m.init(jax.random.PRNGKey(0), b)
    with pytest.raises(ValueError, match="unconditional"):
        m.loss(p, {**b, "cond": b["image"]}, jax.random.PRNGKey(1), True)


def test_registered_next_to_their_classes():
    assert get("vdm").module == "gencomp_jax.objectives.vdm" and not get("vdm").is_codec
    assert get("flow").module == "gencomp_jax.objectives.flow" and not get("flow").is_codec


def test_config_presets():
    assert _config("vdm", "uqdm_small").model.net["arch"] == "vdm_unet"
    assert _config("vdm", "cifar10").data.name == "cifar10"
    flow = _config("flow", "imagenet64")
    assert flow.data.name == "imagenet_resized/64x64" and flow.method == "flow"
    assert flow.model.sampler == "ode_euler" and flow.model.schedule == "linear"
    assert _config("flow", "uqdm_tiny").model.net["residual_input"] is False
    with pytest.raises(ValueError, match="Unknown config preset"):
        _config("vdm", "runlocl")
