"""The training state: one pytree that holds everything a run needs to continue exactly."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything the jitted step reads and writes; checkpointed as one pytree.

    step:       int32 scalar, number of optimizer steps already taken.
    params:     the Method's variables (what `method.init` returned).
    opt_state:  optax state of the chain built by `train.optim.make_optimizer`.
    ema_params: exponential moving average of `params` (equal to `params` when EMA is off).
    rng:        base PRNG key (raw uint32 [2]); the key of step s is fold_in(rng, s), so a resumed
                run draws exactly the same randomness as an uninterrupted one.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    ema_params: PyTree
    rng: jax.Array

    @classmethod
    def create(cls, *, params: PyTree, tx, rng: jax.Array) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   ema_params=jax.tree.map(jnp.copy, params), rng=rng)


def ema_update(ema: PyTree, params: PyTree, step: jax.Array, decay: float) -> PyTree:
    """EMA with the usual warm-up: effective decay = min(decay, (1 + step) / (10 + step)).

    `step` is the index of the update just applied (0 for the first); decay 0 gives ema = params.
    """
    if decay <= 0.0:
        return params
    step = step.astype(jnp.float32)
    d = jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(p.dtype), ema, params)
