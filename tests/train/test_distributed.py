"""Two jax.distributed processes on localhost (CPU collectives) train like one process."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from gencomp_jax.train import load_params, train_and_evaluate
from gencomp_jax.train.logging import read_metrics

from .dist_check import dist_config
from .toymethod import ToyAutoencoder, toy_iterator

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_and_checkpoint_restores_in_one(tmp_path):
    wd2 = tmp_path / "two"
    address = f"localhost:{_free_port()}"
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, str(HERE / "dist_check.py"), str(wd2), address, "2", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append(out)
        assert p.returncode == 0, out[-3000:]
    results = [json.loads(line[7:]) for out in outs for line in out.splitlines() if line.startswith("RESULT ")]
    assert sorted(r["process"] for r in results) == [0, 1]
    assert results[0]["final"]["loss"] == results[1]["final"]["loss"]
    # Only process 0 wrote logs: one line per logged step.
    assert [r["step"] for r in read_metrics(wd2, split="train")] == [2, 4]

    # One process, same global batch, same config.
    wd1 = tmp_path / "one"
    config = dist_config()
    final1 = train_and_evaluate(config, wd1, method=ToyAutoencoder(), train_iterator=toy_iterator(config))
    assert abs(final1["loss"] - results[0]["final"]["loss"]) <= 1e-5 * abs(final1["loss"])
    # The 2-process checkpoint restores in this 1-process run; parameters agree within float tolerance.
    for ema in (False, True):
        p2 = load_params(wd2, ema=ema)[1]
        p1 = load_params(wd1, ema=ema)[1]
        for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
