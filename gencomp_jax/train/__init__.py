"""Training: the one loop for every method, its state, optimizer, checkpoints, mesh and multi-host set-up.

  train_and_evaluate(config, workdir) -> dict      (train/loop.py)
  load_params(workdir, *, ema=True) -> (config, params)   (train/checkpoint.py; the only orbax user)
"""

from gencomp_jax.train.checkpoint import load_config, load_params
from gencomp_jax.train.loop import NonFiniteLossError, train_and_evaluate

__all__ = ["train_and_evaluate", "load_params", "load_config", "NonFiniteLossError"]
