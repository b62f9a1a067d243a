"""Checkpoints (the only module that imports orbax) and the self-describing workdir.

Layout of a workdir:
  config.json                the run's config (written at the start by process 0)
  checkpoints/<step>/state   the TrainState pytree (orbax, written by all processes together)
  checkpoints/<step>/data    the data-iterator state of every process (JSON; for the grain pipeline
                             the next step, which fixes the stream whatever data.workers is)
  metrics.jsonl, tensorboard/, artifacts/   (train/logging.py)
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gencomp_jax import config_utils

_log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"

# Keys that may differ between the saved config of a workdir and the config of a resumed run.
RESUMABLE_KEYS = ("train.num_steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
                  "train.keep_checkpoints", "train.progress_bar", "mesh.", "eval.", "data.eval_",
                  "data.data_dir", "data.path",
                  # how the stream is read, not which stream (it is a function of seed and step)
                  "data.workers", "data.prefetch")


# ----------------------------------------------------------------------------------- preflight
class WorkdirError(OSError):
    """A workdir training cannot use: not creatable or writable, or too little free disk space."""


def check_writable(workdir, *, need_bytes: int = 0) -> None:
    """Before training starts: `workdir` can be created and written (a probe file is written, synced
    and removed) and its file system has `need_bytes` free. Raises WorkdirError saying what to do."""
    workdir = pathlib.Path(workdir)
    probe = workdir / f".gencomp_write_probe_{os.getpid()}"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as e:
        raise WorkdirError(f"cannot write to the workdir {workdir}: {e.strerror or e}. Choose a writable --workdir "
                           "(and one on a file system with room for the checkpoints).") from None
    free = shutil.disk_usage(workdir).free
    if free < need_bytes:
        raise WorkdirError(f"the file system of the workdir {workdir} has {free / 2**20:.1f} MiB free, but this run's "
                           f"checkpoints need about {need_bytes / 2**20:.1f} MiB: free some space or choose another "
                           "--workdir (or lower train.keep_checkpoints).")


def checkpoint_bytes(state: Any, keep: int) -> int:
    """Disk space the checkpoints of `state` need: `keep` kept + one being written, + 16 MiB of slack."""
    size = sum(int(np.prod(np.shape(x))) * np.dtype(getattr(x, "dtype", np.float32)).itemsize
               for x in jax.tree_util.tree_leaves(state))
    return (int(keep) + 1) * size + (16 << 20)


# ----------------------------------------------------------------------------------- config.json
def config_to_dict(config) -> dict:
    """JSON-normalised dict of a ConfigDict (tuples -> lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def save_config(config, workdir) -> pathlib.Path:
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def load_config(workdir) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir "
                                "(train one with experiments/train.py --workdir ...).")
    return ml_collections.ConfigDict(_with_shared_defaults(json.loads(path.read_text())))


def _with_shared_defaults(saved: dict) -> dict:
    """The saved config with every key of `config_utils.base_config()` it lacks filled in.

    A key added to base_config after a run was saved gets its default, which by convention reproduces
    the old behaviour; so old workdirs keep loading and resuming (method-specific keys are migrated by
    the method, e.g. models/uqdm.model_config)."""
    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return out
    return merge(config_utils.base_config().to_dict(), saved)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every flattened key whose value differs."""
    fo, fn = _flatten(old), _flatten(new)
    return [(k, fo.get(k, "<missing>"), fn.get(k, "<missing>"))
            for k in sorted(set(fo) | set(fn)) if fo.get(k, "<missing>") != fn.get(k, "<missing>")]


def check_resumable(config, workdir) -> None:
    """Raises ValueError if workdir holds a run whose config is incompatible with `config`."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return
    diffs = config_differences(_with_shared_defaults(json.loads(path.read_text())), config_to_dict(config))
    bad = [d for d in diffs if not any(d[0] == r or (r.endswith(".") or r.endswith("_")) and
                                        d[0].startswith(r) for r in RESUMABLE_KEYS)]
    if bad:
        lines = "\n".join(f"  {k}: {o!r} (saved) vs {n!r} (now)" for k, o, n in bad[:20])
        raise ValueError(
            f"{workdir} already holds a training run with a different config, so it cannot be resumed:\n"
            f"{lines}\nUse a new --workdir for a new run, or pass the saved config "
            f"({path}) to continue it. Keys that may change on resume: {', '.join(RESUMABLE_KEYS)}.")
    for k, o, n in diffs:
        _log.warning("Resuming with changed config %s: %r -> %r", k, o, n)


# ----------------------------------------------------------------------------------- checkpoints
def _gather_json(obj: Any) -> list:
    """Every process's JSON-able `obj`, in process order (a collective when multi-process)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils
    raw = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    n = int(np.max(multihost_utils.process_allgather(np.array([raw.size], np.int32))))
    padded = np.zeros(n, np.uint8)
    padded[:raw.size] = raw
    every = np.asarray(multihost_utils.process_allgather(padded)).reshape(jax.process_count(), n)
    return [json.loads(bytes(row).rstrip(b"\0").decode()) for row in every]


class Checkpointer:
    """orbax CheckpointManager for (TrainState, data-iterator states); keeps the last `keep`."""

    def __init__(self, workdir, *, keep: int = 2, read_only: bool = False):
        self.directory = (pathlib.Path(workdir) / CHECKPOINT_DIR).absolute()
        # orbax warns about every option a read-only manager ignores; loading a model is not news.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        if read_only:
            absl_logger.setLevel(logging.ERROR)
        try:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep if keep and keep > 0 else None, create=not read_only,
                read_only=read_only,
                # Synchronous saves: the next step donates the state buffers.
                enable_async_checkpointing=False)
            self._mngr = ocp.CheckpointManager(
                self.directory, options=options,
                item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
        finally:
            absl_logger.setLevel(level)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, data_state: Any) -> None:
        """All processes call this; data_state is this process's iterator state (JSON-able)."""
        states = _gather_json(data_state)
        data = {"process_count": jax.process_count(), "states": states}
        self._mngr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)), force=True)
        self._mngr.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any]:
        """Restores (state placed as `abstract_state`'s shardings, this process's data state)."""
        step = self.latest_step() if step is None else step
        out = self._mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        data = out["data"]
        states = data.get("states", [None])
        if data.get("process_count") == jax.process_count():
            mine = states[jax.process_index()]
        else:
            _log.warning("Checkpoint written by %s processes, restored by %d: the data stream "
                         "continues from process 0's position.", data.get("process_count"),
                         jax.process_count())
            mine = states[0]
        return out["state"], mine

    def restore_state_as_numpy(self, step: int | None = None) -> Any:
        """The saved state pytree (nested dicts) on this host, whatever wrote it (any process count)."""
        step = self.latest_step() if step is None else step
        meta = self._mngr.item_metadata(step)["state"]
        tree = getattr(meta, "tree", meta)
        device = jax.local_devices()[0]
        sharding = jax.sharding.SingleDeviceSharding(device)

        def abstract(m):
            return jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding)

        abstract_tree = jax.tree.map(abstract, tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
        out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_tree)))
        return jax.tree.map(np.asarray, out["state"])

    def close(self) -> None:
        self._mngr.close()


def load_params(workdir, *, ema: bool = True, step: int | None = None):
    """(config, params) of the latest (or given) checkpoint in a training workdir.

    ema=True returns the EMA parameters (what evaluation should use), ema=False the raw ones.
    Works in any process count, whatever process count wrote the checkpoint; params are numpy arrays.
    """
    config = load_config(workdir)
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"No checkpoint in {ckpt.directory}: train first, or check --workdir.")
        state = ckpt.restore_state_as_numpy(step)
    finally:
        ckpt.close()
    return config, state["ema_params" if ema else "params"]
