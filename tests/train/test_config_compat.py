"""Workdirs saved before a shared config key existed still load and resume (train/checkpoint.py)."""

import json

import pytest

from gencomp_jax import config_utils
from gencomp_jax.train import checkpoint


def _saved_without(config, *keys):
    d = checkpoint.config_to_dict(config)
    for key in keys:
        section, name = key.split(".")
        del d[section][name]
    return d


def test_old_workdir_without_a_new_shared_key_loads_and_resumes(tmp_path):
    config = config_utils.load_config("configs/hyperprior.py:runlocal")
    (tmp_path / checkpoint.CONFIG_FILE).write_text(json.dumps(_saved_without(config, "optim.eps")))
    loaded = checkpoint.load_config(tmp_path)
    assert loaded.optim.eps == config_utils.base_config().optim.eps   # filled from base_config
    assert loaded.model.lmbda == config.model.lmbda                  # saved values kept
    checkpoint.check_resumable(config, tmp_path)                     # no refusal


def test_a_changed_saved_value_still_refuses_to_resume(tmp_path):
    config = config_utils.load_config("configs/hyperprior.py:runlocal")
    saved = checkpoint.config_to_dict(config)
    saved["model"]["lmbda"] = 123.0
    (tmp_path / checkpoint.CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="lmbda"):
        checkpoint.check_resumable(config, tmp_path)
