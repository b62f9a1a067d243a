"""Optimizer from `config.optim`: linear warm-up, cosine or constant decay, global-norm clipping, Adam(W)."""

from __future__ import annotations

import jax.numpy as jnp
import optax

_DECAYS = ("cosine", "constant")


def make_schedule(optim_cfg, num_steps: int):
    """Learning rate as a function of the step index (0-based), jit-able.

    Warm-up: lr * (step + 1) / warmup_steps for the first `warmup_steps` steps (the first step is not
    wasted at lr 0). Then "cosine": from lr down to lr * end_factor at `num_steps`; "constant": lr.
    """
    lr = float(optim_cfg.learning_rate)
    warmup = int(optim_cfg.warmup_steps)
    decay = optim_cfg.decay
    end_factor = float(optim_cfg.end_factor)
    if decay not in _DECAYS:
        raise ValueError(f"config.optim.decay={decay!r} is not one of {_DECAYS}.")
    if lr <= 0:
        raise ValueError(f"config.optim.learning_rate must be > 0, got {lr}.")
    decay_steps = max(int(num_steps) - warmup, 1)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = jnp.minimum(1.0, (step + 1.0) / max(warmup, 1)) if warmup > 0 else 1.0
        if decay == "constant":
            main = 1.0
        else:
            t = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
            main = end_factor + (1.0 - end_factor) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
        return lr * warm * main

    return schedule


def make_optimizer(optim_cfg, num_steps: int) -> tuple[optax.GradientTransformation, callable]:
    """Returns (optax chain, schedule). Adam when weight_decay == 0, AdamW otherwise.

    Keys of config_utils.base_config() are read as they are. `optimizer` ("adam" | "adamw" | "sgd"), `eps`
    and `momentum` are optional overrides outside base_config (adding them there would make every saved
    workdir's config.json differ from the new config, and its run refuse to resume).
    """
    schedule = make_schedule(optim_cfg, num_steps)
    wd = float(optim_cfg.weight_decay)
    name = optim_cfg.get("optimizer", "adamw" if wd > 0 else "adam")
    b1, b2 = float(optim_cfg.b1), float(optim_cfg.b2)
    eps = float(optim_cfg.get("eps", 1e-8))
    if name == "adam":
        if wd > 0:
            raise ValueError("config.optim.optimizer='adam' with weight_decay > 0: use 'adamw'.")
        opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "sgd":
        opt = optax.sgd(schedule, momentum=float(optim_cfg.get("momentum", 0.0)) or None)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    else:
        raise ValueError(f"config.optim.optimizer={name!r}: use 'adam', 'adamw' or 'sgd'.")
    clip = float(optim_cfg.clip_norm)
    parts = ([optax.clip_by_global_norm(clip)] if clip > 0 else []) + [opt]
    return optax.chain(*parts), schedule
