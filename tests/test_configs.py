"""Every config file loads with each preset it documents, and the run-size helpers that the presets share
(config_utils.cpu_run / gpu_run) give the values the presets promise."""

import pathlib

import pytest

from gencomp_jax.config_utils import load_config

# configs/compare.py is a comparison plan (a list of methods with their own configs), not a training config:
# tests/eval/test_compare.py builds every preset's plan.
CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                 if p.stem != "compare")
PRESETS = {
    "hyperprior": ["runlocal", "gpu", "quality=1", "quality=8", "runlocal,lmbda=0.01,steps=7"],
    "mean_scale": ["runlocal", "gpu", "quality=5", "runlocal,quality=5"],
    "cdc": ["runlocal", "gpu", "imagenet64", "runlocal,beta=0.05,rho=0.9"],
    "hfd": ["runlocal", "gpu", "imagenet64", "runlocal,flow,stage1=runs/hp"],
    "vdm": ["runlocal", "cifar10", "imagenet64", "uqdm_tiny", "uqdm_small"],
    "flow": ["runlocal", "cifar10"],
    "diffc": ["runlocal", "imagenet64", "runlocal,practical"],
    "uqdm": ["runlocal", "cifar10", "imagenet64", "net=small"],
}


def test_every_config_file_has_presets_here():
    assert sorted(PRESETS) == CONFIGS


@pytest.mark.parametrize("spec", [f"{m}:{p}" for m in CONFIGS for p in [""] + PRESETS.get(m, [])])
def test_every_config_loads(spec):
    config = load_config(spec)
    assert config.method
    assert config.train.num_steps > 0 and config.data.crop_size > 0 and config.data.batch_size > 0


def _get(config, dotted):
    for key in dotted.split("."):
        config = config[key]
    return config


@pytest.mark.parametrize("spec, expected", [
    ("hyperprior:runlocal", {"data.source": "skimage", "data.crop_size": 128, "data.batch_size": 2,
                             "optim.learning_rate": 1e-3, "optim.warmup_steps": 50, "train.num_steps": 5000,
                             "train.log_every": 100, "train.checkpoint_every": 1000, "train.ema_decay": 0.99,
                             "model.N": 64, "model.M": 96}),
    ("hyperprior:gpu", {"data.source": "tfds", "data.name": "clic", "data.crop_size": 256, "data.batch_size": 16,
                        "optim.learning_rate": 1e-4, "optim.warmup_steps": 1000, "train.num_steps": 1_000_000,
                        "train.log_every": 1000, "train.eval_every": 10_000, "train.checkpoint_every": 10_000,
                        "data.eval_source": ""}),
    ("hyperprior:quality=6", {"model.lmbda": 0.0483, "model.N": 192, "model.M": 320}),
    ("mean_scale:quality=5", {"model.lmbda": 0.0250, "model.N": 192, "model.M": 320}),
    ("cdc:runlocal", {"train.num_steps": 3000, "data.batch_size": 8, "train.ema_decay": 0.99}),
    ("cdc:imagenet64", {"data.name": "imagenet_resized/64x64", "data.crop_size": 64, "data.batch_size": 64,
                        "optim.learning_rate": 1e-4, "train.ema_decay": 0.999}),
    ("hfd:gpu", {"data.name": "clic", "data.batch_size": 16, "train.num_steps": 1_000_000}),
    ("vdm:runlocal", {"data.crop_size": 32, "data.batch_size": 16, "optim.warmup_steps": 20,
                      "train.num_steps": 300, "train.log_every": 50, "train.eval_every": 100,
                      "train.checkpoint_every": 300, "data.eval_source": "skimage", "data.eval_path": "coffee,rocket"}),
    ("vdm:cifar10", {"data.eval_source": "tfds", "data.eval_split": "test", "data.eval_num_batches": 20,
                     "data.batch_size": 128, "train.ema_decay": 0.9999}),
    ("uqdm:cifar10", {"data.split": "train", "data.eval_split": "test", "train.num_steps": 500_000,
                      "model.tile_batch": 64, "optim.decay": "constant", "model.net.preset": "small"}),
    ("uqdm:imagenet64", {"data.eval_split": "validation", "data.crop_size": 64, "model.tile_size": 64,
                         "model.tile_batch": 16, "train.checkpoint_every": 10_000}),
    ("uqdm:runlocal", {"data.crop_size": 32, "data.batch_size": 8, "optim.warmup_steps": 100,
                       "optim.decay": "cosine", "train.num_steps": 2000, "train.eval_every": 0,
                       "model.net.preset": "tiny"}),
])
def test_preset_values(spec, expected):
    config = load_config(spec)
    got = {key: _get(config, key) for key in expected}
    assert got == expected
