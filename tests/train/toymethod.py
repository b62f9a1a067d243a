"""A small real Method and a deterministic resumable iterator for the training-loop tests.

Imported by the test modules and by the subprocess scripts they launch (multi-device, multi-process).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gencomp_jax.config_utils import base_config


class _AE(nn.Module):
    ch: int = 8

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(self.ch, (3, 3), strides=(2, 2))(x))
        z = nn.Conv(4, (3, 3))(h)
        h = nn.relu(nn.Conv(self.ch, (3, 3))(z))
        h = nn.Conv(3 * 4, (3, 3))(h)
        b, hh, ww, _ = h.shape  # depth-to-space x2 (sub-pixel up-sampling)
        h = h.reshape(b, hh, ww, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * hh, 2 * ww, 3)
        return z, h


class ToyAutoencoder:
    """Conv autoencoder; loss = MSE(x, decode(encode(x) + noise)) + 0.01 * log-brightness term.

    The noise uses the step rng (so exact resumption needs the rng schedule to be restored); the
    log term is -inf on an all-black batch (log 0), which exercises the non-finite guard.
    """

    def __init__(self, ch: int = 8):
        self.net = _AE(ch)

    def init(self, rng, batch):
        return self.net.init(rng, batch["image"])

    def loss(self, params, batch, rng, train):
        x = batch["image"]
        z, _ = self.net.apply(params, x)
        if train:
            z = z + 0.1 * jax.random.normal(rng, z.shape)
        # decode from the (noisy) latent by re-running the decoder layers
        _, y = self.net.apply(params, x) if not train else (None, self._decode(params, z))
        mse = jnp.mean(jnp.square(x - y))
        bright = jnp.log(jnp.mean((x + 1.0) / 2.0))
        loss = mse - 0.01 * bright
        return loss, {"mse": mse, "bits": jnp.float32(0.0) + jnp.sum(jnp.abs(z)) / x.shape[0]}

    def _decode(self, params, z):
        p = params["params"]
        h = nn.relu(nn.Conv(self.net.ch, (3, 3)).apply({"params": p["Conv_2"]}, z))
        h = nn.Conv(12, (3, 3)).apply({"params": p["Conv_3"]}, h)
        b, hh, ww, _ = h.shape
        return h.reshape(b, hh, ww, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * hh, 2 * ww, 3)


class ToyIterator:
    """Batch i of the global stream is a pure function of (seed, i); process p gets rows p::... slice.

    `black_at`: global batch index that is all zeros (to trigger the non-finite guard).
    `fail_at`: raise KeyboardInterrupt when batch `fail_at` is requested (a simulated kill).
    """

    def __init__(self, *, batch_size, crop, seed=0, process_index=0, process_count=1,
                 black_at=None, fail_at=None):
        assert batch_size % process_count == 0
        self.bs, self.crop, self.seed = batch_size, crop, seed
        self.pi, self.pc = process_index, process_count
        self.black_at, self.fail_at = black_at, fail_at
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_at is not None and self.index == self.fail_at:
            raise KeyboardInterrupt(f"simulated kill before batch {self.index}")
        rng = np.random.default_rng([self.seed, self.index])
        images = rng.integers(0, 256, (self.bs, self.crop, self.crop, 3), dtype=np.uint8)
        if self.black_at is not None and self.index == self.black_at:
            images[:] = 0
        self.index += 1
        n = self.bs // self.pc
        return {"image": images[self.pi * n:(self.pi + 1) * n]}

    def get_state(self):
        return {"index": self.index, "seed": self.seed}

    def set_state(self, state):
        self.index = int(state["index"])


def toy_config(**overrides) -> ml_collections.ConfigDict:
    c = base_config()
    c.method = "toy"
    c.data.crop_size = 8
    c.data.batch_size = 8
    c.optim.learning_rate = 1e-2
    c.optim.warmup_steps = 2
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    c.train.ema_decay = 0.9
    c.train.progress_bar = False
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def toy_iterator(config, **kw) -> ToyIterator:
    return ToyIterator(batch_size=config.data.batch_size, crop=config.data.crop_size,
                       seed=config.seed, process_index=jax.process_index(),
                       process_count=jax.process_count(), **kw)
