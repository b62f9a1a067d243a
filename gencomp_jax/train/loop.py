"""The one training loop, for every method: `train_and_evaluate(config, workdir)`.

One SPMD program over the device mesh of `config.mesh` (train/mesh.py): the global batch is sharded
along "data", the state replicated (or FSDP-sharded), the step is `jax.jit` with explicit shardings
and a donated state. Multi-host runs call train/distributed.py `initialize` first; each process feeds
its own slice of every global batch; only process 0 writes logs.
"""

from __future__ import annotations

import logging
import math
import pathlib
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gencomp_jax import data
from gencomp_jax.data.images import to_model
from gencomp_jax.eval import artifacts
from gencomp_jax.train import checkpoint as ckpt_lib
from gencomp_jax.train import distributed
from gencomp_jax.train import logging as log_lib
from gencomp_jax.train import mesh as mesh_lib
from gencomp_jax.train.optim import make_optimizer
from gencomp_jax.train.state import TrainState, ema_update

_log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss, metric or gradient."""


def to_model_input(batch: dict) -> dict:
    """uint8 images -> float32 in [-1, 1] (data.to_model, inside jit); other entries pass through."""
    out = dict(batch)
    if batch["image"].dtype == jnp.uint8:
        out["image"] = to_model(batch["image"])
    return out


# ------------------------------------------------------------------------------------ building blocks
def init_state(method, config, mesh, *, tx) -> tuple[TrainState, Any]:
    """(state placed on the mesh, state shardings). Params from method.init on a per-device batch."""
    crop = int(config.data.crop_size)
    per_device = max(1, int(config.data.batch_size) // mesh_lib.num_batch_shards(mesh))
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(int(config.seed)))

    def make():
        dummy = {"image": jnp.zeros((per_device, crop, crop, 3), jnp.float32)}
        params = method.init(init_rng, dummy)
        return TrainState.create(params=params, tx=tx, rng=train_rng)

    abstract = jax.eval_shape(make)
    shardings = mesh_lib.state_shardings(abstract, mesh,
                                         fsdp_min_size=int(config.mesh.fsdp_min_size))
    state = jax.jit(make, out_shardings=shardings)()  # born sharded (FSDP: never whole on one device)
    return state, shardings


def make_train_step(method, config, mesh, state_shardings, *, tx, schedule) -> Callable:
    """jit(step)(state, batch_uint8) -> (state, metrics); state donated; metrics replicated scalars."""
    ema_decay = float(config.train.ema_decay)

    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            return method.loss(params, to_model_input(batch), rng, True)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_update(state.ema_params, params, state.step, ema_decay))
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": schedule(state.step)}
        return new, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)

    rep = mesh_lib.replicated(mesh)
    return jax.jit(step_fn, in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(state_shardings, rep), donate_argnums=(0,))


def make_eval_step(method, mesh, params_shardings) -> Callable:
    """jit(eval)(params, batch_uint8, rng) -> metrics (method.loss with train=False), replicated.

    Built once per run (`_run`): every evaluation reuses the one compiled function.
    """
    def eval_fn(params, batch, rng):
        loss, metrics = method.loss(params, to_model_input(batch), rng, False)
        return jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), {**metrics, "loss": loss})

    return jax.jit(eval_fn, in_shardings=(params_shardings, mesh_lib.batch_sharding(mesh), None),
                   out_shardings=mesh_lib.replicated(mesh))


# ------------------------------------------------------------------------------------ helpers
def _default_train_iterator(config):
    return data.make_train_iterator(config.data, seed=int(config.seed),
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())


def _default_eval_iterator(config):
    """Held-out batches from config.data.eval_* (data.make_eval_iterator), or None."""
    if not config.data.eval_source:
        return None
    return data.make_eval_iterator(config.data, process_index=jax.process_index(),
                                   process_count=jax.process_count())


def _nonfinite(values: dict) -> list[str]:
    return [k for k, v in values.items() if not math.isfinite(v)]


def _raise_nonfinite(step: int, values: dict, config, last_ckpt: int | None, workdir) -> None:
    shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(values.items()))
    where = (f"the last good checkpoint is step {last_ckpt} in {pathlib.Path(workdir) / 'checkpoints'}"
             if last_ckpt is not None else "no checkpoint was written yet")
    raise NonFiniteLossError(
        f"Non-finite training metrics at step {step}: {_nonfinite(values)} ({shown}). Training "
        f"stopped; {where}. Try a lower config.optim.learning_rate (now "
        f"{config.optim.learning_rate}), a longer config.optim.warmup_steps or a smaller "
        f"config.optim.clip_norm, and check the data (uint8 images, no empty crops).")


class _Window:
    """Host-side running means of step metrics between two log lines, and the seconds the loop
    waited for its next batch (`data_s`)."""

    def __init__(self):
        self.sums, self.n, self.t0, self.data_s, self.data_n = {}, 0, time.perf_counter(), 0.0, 0

    def add(self, values: dict):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def means(self) -> dict:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


# ------------------------------------------------------------------------------------ the loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir, *, method=None,
                       train_iterator: Iterator | None = None,
                       eval_iterator_fn: Callable[[], Iterator | None] | None = None) -> dict:
    """Trains `config.method` in `workdir` (resuming from its latest checkpoint); returns final metrics.

    The keyword arguments replace the registry / data pipeline (tests, notebooks): `method` a Method
    (codecs/base.py); `train_iterator` yields {"image": uint8 [global_batch // process_count, H, W, 3]}
    and has get_state()/set_state(); `eval_iterator_fn()` returns a fresh iterator of held-out batches
    (or None). Final metrics: the last logged train means, "eval/..." for the last evaluation,
    "step", "steps_per_sec" (this invocation).
    """
    workdir = pathlib.Path(workdir)
    main = distributed.is_main_process()
    if main:
        ckpt_lib.check_writable(workdir)  # a clear error now, not at the first checkpoint
    if method is None:
        from gencomp_jax import registry
        method = registry.make_method(config)

    mesh = mesh_lib.make_mesh(config.mesh)
    global_bs = int(config.data.batch_size)
    mesh_lib.check_batch_size(global_bs, mesh)
    num_steps = int(config.train.num_steps)
    tx, schedule = make_optimizer(config.optim, num_steps)

    # Self-describing workdir: refuse to resume an incompatible run, then (re)write config.json.
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=int(config.train.keep_checkpoints))
    it = None
    try:
        if checkpointer.latest_step() is not None:
            ckpt_lib.check_resumable(config, workdir)
        distributed.barrier("gencomp_config_checked")
        if main:
            ckpt_lib.save_config(config, workdir)

        it = train_iterator if train_iterator is not None else _default_train_iterator(config)
        state, shardings = init_state(method, config, mesh, tx=tx)
        if main:  # room for the checkpoints, before the first step
            ckpt_lib.check_writable(workdir, need_bytes=ckpt_lib.checkpoint_bytes(
                state, int(config.train.keep_checkpoints)))
        _log.info("State initialised on mesh %s.", dict(mesh.shape))
        start = 0
        if checkpointer.latest_step() is not None:
            start = int(checkpointer.latest_step())
            state, data_state = checkpointer.restore(state)
            if data_state is not None:
                it.set_state(data_state)
            _log.info("Resumed from %s at step %d.", checkpointer.directory, start)
            if int(mesh_lib.to_host(state.step)) != start:
                raise RuntimeError(f"Checkpoint {start} holds state.step={int(mesh_lib.to_host(state.step))}; "
                                   f"the checkpoint directory {checkpointer.directory} is inconsistent.")
        return _run(config, workdir, method=method, mesh=mesh, state=state, shardings=shardings,
                    it=it, checkpointer=checkpointer, start=start, num_steps=num_steps, tx=tx,
                    schedule=schedule, eval_iterator_fn=eval_iterator_fn, main=main)
    finally:
        checkpointer.close()
        if train_iterator is None and it is not None:
            it.close()  # the pipeline this run opened: its grain worker processes stop now


def _run(config, workdir, *, method, mesh, state, shardings, it, checkpointer, start, num_steps, tx,
         schedule, eval_iterator_fn, main) -> dict:
    train_step = make_train_step(method, config, mesh, shardings, tx=tx, schedule=schedule)
    use_ema = float(config.train.ema_decay) > 0
    eval_step = make_eval_step(method, mesh, shardings.ema_params if use_ema else shardings.params)
    writer = log_lib.MetricWriter(workdir, enabled=main)
    bar = log_lib.ProgressBar(total=num_steps, initial=start,
                              enabled=main and bool(config.train.progress_bar))
    log_every = max(int(config.train.log_every), 1)
    ckpt_every = int(config.train.checkpoint_every)
    eval_every = int(config.train.eval_every)
    global_bs = int(config.data.batch_size)
    last_ckpt = checkpointer.latest_step()
    final: dict = {}
    window = _Window()
    pending = None  # (step index, device metrics) of the previous step: checked one step late
    t_start, steps_run = time.perf_counter(), 0
    wait_fraction, warned_at = 0.0, None  # input-bound check: share of the time spent waiting in next(it)

    def drain():
        nonlocal pending
        if pending is None:
            return
        s, m = pending
        pending = None
        values = {k: float(v) for k, v in mesh_lib.to_host(m).items()}
        if _nonfinite(values):
            _raise_nonfinite(s, values, config, last_ckpt, workdir)
        window.add(values)
        bar.update(1, loss=values["loss"], input_wait=wait_fraction)

    try:
        for step in range(start, num_steps):
            t_data = time.perf_counter()
            local = next(it)
            if steps_run:  # the first batch includes the pipeline's start-up (grain worker processes)
                window.data_s += time.perf_counter() - t_data
                window.data_n += 1
            batch = mesh_lib.global_batch(local, mesh)
            state, metrics = train_step(state, batch)
            drain()  # previous step's metrics; this step runs meanwhile
            pending = (step, metrics)
            if steps_run == 0:
                _log.info("First step dispatched (step %d).", step)
            steps_run += 1
            done = step + 1
            last = done == num_steps
            if done % log_every == 0 or last or (ckpt_every and done % ckpt_every == 0):
                drain()
            if done % log_every == 0 or last:
                means = window.means()
                dt = time.perf_counter() - window.t0
                means["steps_per_sec"] = window.n / dt
                means["examples_per_sec"] = window.n * global_bs / dt
                wait_fraction = means["data_wait_fraction"] = window.data_s / dt
                msg = data.input_bound_message(config.data, wait_fraction=wait_fraction,
                                               wait_s_per_step=window.data_s / max(window.data_n, 1))
                if msg and main and (warned_at is None or done - warned_at >= 10 * log_every):
                    _log.warning("Step %d: %s", done, msg)  # again at most every 10 log lines
                    warned_at = done
                writer.write(done, means, split="train")
                final.update(means)
                window = _Window()
            if (eval_every and done % eval_every == 0) or last:
                ev = evaluate(method, config, mesh, state.ema_params if use_ema else state.params,
                              eval_step=eval_step, workdir=workdir, step=done,
                              eval_iterator_fn=eval_iterator_fn, main=main)
                if ev:
                    writer.write(done, ev, split="eval")
                    final.update({f"eval/{k}": v for k, v in ev.items()})
            if (ckpt_every and done % ckpt_every == 0) or last:
                checkpointer.save(done, state, it.get_state())
                last_ckpt = done
        drain()
    finally:
        bar.close()
        writer.flush()
        writer.close()
    final["step"] = int(mesh_lib.to_host(state.step))
    final["steps_per_sec_total"] = steps_run / max(time.perf_counter() - t_start, 1e-9)
    return final


def evaluate(method, config, mesh, params, *, eval_step, workdir, step, eval_iterator_fn=None,
             main=True) -> dict:
    """Held-out loss metrics (`eval_step` = make_eval_step(...), built once per run) and the method's
    artifacts: `eval_samples` written as artifacts/samples_<step>.png (eval/artifacts.py), `eval_artifacts`."""
    out: dict = {}
    make_it = eval_iterator_fn if eval_iterator_fn is not None else (lambda: _default_eval_iterator(config))
    it = make_it()
    if it is not None:
        it = iter(it)
        n = int(config.data.eval_num_batches)
        rng = jax.random.PRNGKey(int(config.seed) + 12345)
        window = _Window()
        for i in range(n):
            try:
                local = next(it)
            except StopIteration:
                break
            m = eval_step(params, mesh_lib.global_batch(local, mesh), jax.random.fold_in(rng, i))
            window.add({k: float(v) for k, v in mesh_lib.to_host(m).items()})
        out.update(window.means())
    samples_fn = getattr(method, "eval_samples", None)
    hook = getattr(method, "eval_artifacts", None)
    if samples_fn is None and hook is None:
        return out
    host_params = mesh_lib.to_host(params)  # collective: every process takes part
    if main:
        outdir = pathlib.Path(workdir) / "artifacts"
        outdir.mkdir(parents=True, exist_ok=True)
        rng = jax.random.PRNGKey(int(config.seed) + step)
        images = samples_fn(host_params, rng) if samples_fn is not None else None
        if images is not None:
            artifacts.write_sample_grid(outdir / f"samples_{int(step):07d}.png", images)
            out.update(artifacts.sample_stats(images))
        extra = (hook(host_params, rng, outdir, step) or {}) if hook is not None else {}
        out.update({k: float(v) for k, v in extra.items() if np.size(v) == 1})
    return out
