"""The grain pipeline inside the training loop: a killed run resumes (with 2 worker processes) to the
parameters of an uninterrupted run; the loop says when it waits for data."""

from __future__ import annotations

import logging
import time

import jax
import numpy as np
import pytest

from gencomp_jax import data
from gencomp_jax.config_utils import base_config
from gencomp_jax.train import load_params, train_and_evaluate
from gencomp_jax.train import checkpoint as ckpt_lib

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


class KilledAt:
    """The real training iterator, killed (KeyboardInterrupt) when batch `at` is requested."""

    def __init__(self, it, at):
        self.it, self.at = it, at

    def __iter__(self):
        return self

    def __next__(self):
        if self.it.step == self.at:
            raise KeyboardInterrupt(f"simulated kill before batch {self.at}")
        return next(self.it)

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def test_killed_run_resumes_through_grain_with_two_workers_to_identical_parameters(tmp_path):
    """Uninterrupted: 4 steps in this process. Killed before step 3 (checkpoint at 2), restarted with
    data.workers = 2 (grain worker processes; the iterator state came back through orbax): bitwise the
    same parameters, so the batches after the restart were the uninterrupted run's."""
    config = toy_config(**{"train.num_steps": 4, "train.log_every": 2, "train.checkpoint_every": 2,
                           "train.eval_every": 0, "data.source": "skimage", "data.workers": 0})
    train_and_evaluate(config, tmp_path / "ref", method=ToyAutoencoder())
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "killed", method=ToyAutoencoder(),
                           train_iterator=KilledAt(data.make_train_iterator(config.data, seed=config.seed), 3))
    assert ckpt_lib.Checkpointer(tmp_path / "killed", read_only=True).all_steps() == [2]
    config.data.workers = 2  # how the stream is read may change on resume, the stream may not
    assert train_and_evaluate(config, tmp_path / "killed", method=ToyAutoencoder())["step"] == 4
    for ema in (True, False):
        a, b = load_params(tmp_path / "ref", ema=ema)[1], load_params(tmp_path / "killed", ema=ema)[1]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y)
