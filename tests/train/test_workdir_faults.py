"""Training survives faults (issue 16, item 6): kill -9 in the middle of a checkpoint write leaves a
resumable workdir; an unwritable workdir or a full disk is a clear error before the first step."""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from gencomp_jax.train import load_params, train_and_evaluate
from gencomp_jax.train import checkpoint as ckpt_lib
from gencomp_jax.train.logging import read_metrics

from .toymethod import ToyAutoencoder, toy_config, toy_iterator

REPO = pathlib.Path(__file__).resolve().parents[2]

# The child trains the toy run (checkpoints at steps 3 and 6) and SIGKILLs itself when orbax commits
# checkpoint 6 (the rename of its finished temporary directory), i.e. in the middle of that write.
_CHILD = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from tests.train.toymethod import ToyAutoencoder, toy_config, toy_iterator
from gencomp_jax.train import train_and_evaluate

def killer(real):
    def f(src, dst, *a, **k):
        if os.path.basename(str(dst).rstrip("/")) == "6":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *a, **k)
    return f
if sys.argv[3] == "kill":
    os.rename, os.replace = killer(os.rename), killer(os.replace)
config = toy_config()
it = toy_iterator(config)
final = train_and_evaluate(config, sys.argv[1], method=ToyAutoencoder(), train_iterator=it)
print("finished", final["step"], it.index)
"""


def _child(workdir, mode):
    return subprocess.run([sys.executable, "-c", _CHILD, str(workdir), str(REPO), mode], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_kill_9_during_a_checkpoint_write_leaves_a_resumable_workdir(tmp_path):
    wd = tmp_path / "run"
    out = _child(wd, "kill")
    assert out.returncode == -9, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    assert ckpt_lib.Checkpointer(wd, read_only=True).all_steps() == [3]   # 6 was never committed
    # Resume and the uninterrupted reference each run in a fresh process like the killed one: XLA:CPU's
    # float results may differ in the last bit between a fresh process and the (xdist) test process.
    out = _child(wd, "run")
    assert out.returncode == 0 and "finished 6 6" in out.stdout, out.stderr[-3000:]  # step and data stream
    assert ckpt_lib.Checkpointer(wd, read_only=True).all_steps()[-1] == 6
    ref = tmp_path / "ref"
    out = _child(ref, "run")
    assert out.returncode == 0, out.stderr[-3000:]
    # bitwise what an uninterrupted run reaches
    for a, b in zip(jax.tree.leaves(load_params(ref)[1]), jax.tree.leaves(load_params(wd)[1])):
        np.testing.assert_array_equal(a, b)


def test_unwritable_workdir_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    config = toy_config()
    with pytest.raises(ckpt_lib.WorkdirError, match="cannot write to the workdir.*writable --workdir"):
        train_and_evaluate(config, blocker / "run", method=ToyAutoencoder(), train_iterator=toy_iterator(config))


def test_full_disk_is_refused_before_the_first_step(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(ckpt_lib.shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    config = toy_config()
    it = toy_iterator(config)
    with pytest.raises(ckpt_lib.WorkdirError, match=r"1\.0 MiB free.*checkpoints need about"):
        train_and_evaluate(config, tmp_path, method=ToyAutoencoder(), train_iterator=it)
    assert it.index == 0 and not read_metrics(tmp_path, split="train")   # no step ran
    assert ckpt_lib.Checkpointer(tmp_path, read_only=True).all_steps() == []
