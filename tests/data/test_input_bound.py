"""The training loop measures how long it waits for data and says so when the input is the bottleneck."""

from __future__ import annotations

import logging
import time

from gencomp_jax import data
from gencomp_jax.config_utils import base_config
from gencomp_jax.train import train_and_evaluate

from ..train.toymethod import ToyAutoencoder, ToyIterator, toy_config


class SlowIterator(ToyIterator):
    """The toy stream, each batch `delay` seconds late (an input pipeline slower than the step)."""

    def __init__(self, delay, **kw):
        super().__init__(**kw)
        self.delay = delay

    def __next__(self):
        time.sleep(self.delay)
        return super().__next__()


class ReadyIterator(ToyIterator):
    """One batch, made once, handed out again and again (an input pipeline that never keeps the step waiting)."""

    def __next__(self):
        if self.index == 0:
            self.batch = super().__next__()
        return self.batch


def test_loop_warns_when_input_bound_and_not_otherwise(tmp_path, caplog):
    config = toy_config(**{"train.num_steps": 4, "train.log_every": 2, "train.checkpoint_every": 0,
                           "train.eval_every": 0, "data.source": "folder"})
    slow = SlowIterator(0.5, batch_size=8, crop=8, seed=0)
    with caplog.at_level(logging.WARNING, logger="gencomp_jax.train.loop"):
        final = train_and_evaluate(config, tmp_path / "slow", method=ToyAutoencoder(), train_iterator=slow)
    # steps 2-3: 2 x 0.5 s of waiting against a step of milliseconds
    assert final["data_wait_fraction"] > 0.5, final
    warned = [r.getMessage() for r in caplog.records if "Input-bound" in r.getMessage()]
    assert warned and "config.data.workers" in warned[0] and "TFDS array_record" in warned[0], caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gencomp_jax.train.loop"):
        final = train_and_evaluate(config, tmp_path / "fast", method=ToyAutoencoder(),
                                   train_iterator=ReadyIterator(batch_size=8, crop=8, seed=0))
    assert 0 <= final["data_wait_fraction"] < data.INPUT_BOUND_FRACTION, final
    assert "Input-bound" not in caplog.text


def test_input_bound_message_says_what_to_change():
    cfg = base_config().data
    assert data.input_bound_message(cfg, wait_fraction=0.05, wait_s_per_step=0.001) is None
    assert data.input_bound_message(cfg, wait_fraction=0.5, wait_s_per_step=1e-4) is None  # a toy-sized step
    cfg.prefetch = 0
    msg = data.input_bound_message(cfg, wait_fraction=0.4, wait_s_per_step=0.0123)
    assert msg.startswith("Input-bound: the training loop waited for data 40% of the time (12.3 ms per step)")
    assert "config.data.prefetch (now 0)" in msg and "TFDS" not in msg  # skimage: nothing to re-store
