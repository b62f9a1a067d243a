"""The one training loop: end-to-end run, exact resumption after a kill, config guard, non-finite guard."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from gencomp_jax.data import read_image
from gencomp_jax.eval.artifacts import sample_grid
from gencomp_jax.train import NonFiniteLossError, load_params, train_and_evaluate
from gencomp_jax.train import checkpoint as ckpt_lib
from gencomp_jax.train.logging import read_metrics
from gencomp_jax.train.optim import make_schedule

from .toymethod import ToyAutoencoder, ToyIterator, toy_config, toy_iterator


class ToyWithArtifacts(ToyAutoencoder):
    calls: list = []

    def eval_artifacts(self, params, rng, outdir, step):
        (outdir / f"grid_{step}.txt").write_text("ok")
        self.calls.append(step)
        return {"artifact_norm": float(sum(np.sum(np.abs(x)) for x in jax.tree.leaves(params)))}


class ToyCountingEvalTraces(ToyAutoencoder):
    """Counts the traces of loss(train=False) (Python runs the body only when jax traces it); draws samples."""

    def __init__(self):
        super().__init__()
        self.eval_traces = 0

    def loss(self, params, batch, rng, train):
        if not train:
            self.eval_traces += 1
        return super().loss(params, batch, rng, train)

    def eval_samples(self, params, rng):
        return np.asarray(jax.random.randint(rng, (3, 4, 4, 3), 0, 256), np.uint8)


def _run(config, workdir, **kw):
    return train_and_evaluate(config, workdir, method=ToyAutoencoder(), train_iterator=toy_iterator(config, **kw))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """6 uninterrupted steps, checkpoints at 3 and 6, with evaluation and the artifacts hook."""
    wd = tmp_path_factory.mktemp("ref")
    config = toy_config()
    method = ToyWithArtifacts()
    eval_fn = lambda: ToyIterator(batch_size=8, crop=8, seed=99)
    final = train_and_evaluate(config, wd, method=method, train_iterator=toy_iterator(config),
                               eval_iterator_fn=eval_fn)
    return wd, config, final, method


def test_end_to_end_run_writes_a_self_describing_workdir(reference_run):
    wd, config, final, method = reference_run
    assert final["step"] == 6
    assert math.isfinite(final["loss"]) and math.isfinite(final["eval/loss"])
    assert "eval/artifact_norm" in final and (wd / "artifacts" / "grid_6.txt").exists()
    assert method.calls == [6]
    train_rows = read_metrics(wd, split="train")
    assert [r["step"] for r in train_rows] == [2, 4, 6]
    assert {"loss", "mse", "bits", "grad_norm", "lr", "steps_per_sec", "examples_per_sec"} <= set(train_rows[0])
    # lr logged = mean of the schedule over the window (steps 4, 5)
    sched = make_schedule(config.optim, config.train.num_steps)
    assert train_rows[2]["lr"] == pytest.approx((float(sched(4)) + float(sched(5))) / 2, rel=1e-6)
    assert [r["step"] for r in read_metrics(wd, split="eval")] == [6]
    assert any((wd / "tensorboard").iterdir())
    saved = json.loads((wd / "config.json").read_text())
    assert saved["optim"]["learning_rate"] == config.optim.learning_rate
    assert ckpt_lib.Checkpointer(wd, read_only=True).all_steps() == [3, 6]
    cfg, ema = load_params(wd)
    _, raw = load_params(wd, ema=False)
    assert cfg.train.num_steps == 6
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(raw)))
    assert diff > 0  # EMA lags the raw parameters


def test_schedule_warmup_and_cosine_closed_form():
    config = toy_config()
    config.optim.warmup_steps, config.optim.end_factor = 4, 0.1
    s = make_schedule(config.optim, 14)
    lr = config.optim.learning_rate
    assert float(s(0)) == pytest.approx(lr / 4) and float(s(3)) == pytest.approx(lr)
    assert float(s(9)) == pytest.approx(lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert float(s(14)) == pytest.approx(lr * 0.1)


def test_killed_run_resumes_to_identical_parameters(reference_run, tmp_path):
    """Kill before step 5 (last checkpoint: 3), restart: bitwise equal to the uninterrupted run."""
    ref_wd, config, _, _ = reference_run
    with pytest.raises(KeyboardInterrupt):
        _run(config, tmp_path, fail_at=4)
    assert ckpt_lib.Checkpointer(tmp_path, read_only=True).all_steps() == [3]
    it = toy_iterator(config)
    final = train_and_evaluate(config, tmp_path, method=ToyAutoencoder(), train_iterator=it)
    assert final["step"] == 6 and it.index == 6  # data stream continued at batch 3
    for ema in (True, False):
        a, b = load_params(ref_wd, ema=ema)[1], load_params(tmp_path, ema=ema)[1]
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y)  # bitwise
    # Both runs logged the same training loss for steps 5-6.
    assert read_metrics(ref_wd, split="train")[-1]["loss"] == read_metrics(tmp_path, split="train")[-1]["loss"]


def test_incompatible_config_is_refused(reference_run):
    wd, config, _, _ = reference_run
    other = toy_config(**{"optim.learning_rate": 0.5})
    with pytest.raises(ValueError, match=r"optim.learning_rate: 0.01 \(saved\) vs 0.5"):
        _run(other, wd)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    config = toy_config()
    with pytest.raises(NonFiniteLossError) as err:
        _run(config, tmp_path, black_at=1)
    msg = str(err.value)
    assert "step 1" in msg and "loss=" in msg and "learning_rate" in msg and "check the data" in msg
    assert "no checkpoint was written yet" in msg
    # The guard runs before every checkpoint: no state with a non-finite history is saved.
    assert ckpt_lib.Checkpointer(tmp_path, read_only=True).all_steps() == []


def test_eval_loss_is_traced_once_per_run_and_samples_become_a_grid(tmp_path):
    """Three evaluations of two batches each: the eval step is built and compiled once (one trace of
    loss(train=False)); eval_samples is written as artifacts/samples_<step>.png at each evaluation."""
    config = toy_config(**{"train.eval_every": 2, "train.checkpoint_every": 0, "data.eval_num_batches": 2})
    method = ToyCountingEvalTraces()
    final = train_and_evaluate(config, tmp_path, method=method, train_iterator=toy_iterator(config),
                               eval_iterator_fn=lambda: ToyIterator(batch_size=8, crop=8, seed=99))
    assert [r["step"] for r in read_metrics(tmp_path, split="eval")] == [2, 4, 6]
    assert method.eval_traces == 1
    grid = read_image(tmp_path / "artifacts" / "samples_0000004.png", min_side=1)
    want = method.eval_samples(None, jax.random.PRNGKey(int(config.seed) + 4))
    np.testing.assert_array_equal(grid, sample_grid(want))
    assert final["eval/sample_mean"] == pytest.approx(float(np.mean(method.eval_samples(
        None, jax.random.PRNGKey(int(config.seed) + 6)))))
