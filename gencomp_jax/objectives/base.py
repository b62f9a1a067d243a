"""What every diffusion / flow objective shares: the network call, the log-SNR schedule, sampling.

An objective is a `Method` (codecs/base.py): `init(rng, batch)`, `loss(params, batch, rng, train)`, plus
  sample(params, rng, n, *, y=None, sampler=None, steps=None, shape=None, noise_scale=1.0) -> uint8 [n, H, W, 3]
  eval_samples(params, rng) -> uint8 [num_samples, H, W, 3] or None   (the training loop writes them as a
                                                                        PNG grid: gencomp_jax.eval.artifacts)
Parameters: {"net": UNet variables, "schedule": schedule variables ({} for a fixed schedule)}.

Conditioning (CDC / HFD, review Sec. IV-A): an objective built with `cond_channels=C > 0` reads
`batch["cond"]`, float32 [B, H, W, C] (an image-shaped embedding of Y, e.g. the stage-1 reconstruction or
up-sampled latent features), and its UNet sees it concatenated to z_t (models/unet.py `y`). Sampling then
takes `y=` of the same shape. An unconditional objective refuses a `cond` entry rather than ignore it.

Subclasses define `prediction` (what the network outputs), `alpha_sigma(params)` (the Gaussian path the
samplers integrate), `model_fn(params, *, train, rng)` and `loss`.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from gencomp_jax.data.images import to_uint8
from gencomp_jax.diffusion import samplers, schedules
from gencomp_jax.models.unet import make_unet


class LogSNRSchedule:
    """gamma(t) = -log SNR(t) by name: fixed ("linear", "cosine") or learned ("learned_linear", "learned_nnet").

    init(rng) -> variables ({} if fixed);  fn(variables) -> (t [B] -> gamma [B]).
    """

    NAMES = ("linear", "cosine", "learned_linear", "learned_nnet")

    def __init__(self, name: str, *, gamma_min: float, gamma_max: float, fix_gamma_max: bool = False):
        if name not in self.NAMES:
            raise ValueError(f"Unknown model.schedule {name!r}; use one of {list(self.NAMES)}.")
        self.name, self.gamma_min, self.gamma_max = name, float(gamma_min), float(gamma_max)
        kw = dict(gamma_min=self.gamma_min, gamma_max=self.gamma_max)
        self.module = None
        self._fixed = None
        if name == "learned_linear":
            self.module = schedules.LearnedLinearSchedule(fix_gamma_max=fix_gamma_max, **kw)
        elif name == "learned_nnet":
            self.module = schedules.MonotoneNetSchedule(**kw)
        else:
            self._fixed = functools.partial(
                schedules.linear_gamma if name == "linear" else schedules.cosine_gamma, **kw)

    def init(self, rng, t) -> dict:
        return self.module.init(rng, t) if self.module is not None else {}

    def fn(self, variables):
        if self.module is None:
            return self._fixed
        return lambda t: self.module.apply(variables, t)

    def normalise(self, gamma):
        """gamma -> (gamma - gamma_min) / (gamma_max - gamma_min): the network's time input (VDM's convention)."""
        return (gamma - self.gamma_min) / (self.gamma_max - self.gamma_min)


class DiffusionObjective:
    """Base of the objectives: a UNet denoiser on images, optionally conditioned (see module docstring).

    net: config dict for models.unet.make_unet; sample_size: side of generated images; sampler / sample_steps:
    diffusion/samplers.py name and steps used by `sample`; num_samples: images `eval_samples` draws;
    cond_channels: channels of batch["cond"] (0 = unconditional).
    """

    prediction: str   # what the network outputs: "eps" | "x0" | "v" | "velocity" (diffusion/process.py)

    def __init__(self, *, net: Mapping[str, Any], sample_size: int, sampler: str, sample_steps: int,
                 num_samples: int, cond_channels: int = 0):
        self.net = make_unet(dict(net))
        samplers.get_sampler(sampler)  # fail at construction on an unknown name
        self.sampler, self.sample_steps = str(sampler), int(sample_steps)
        self.num_samples, self.sample_size = int(num_samples), int(sample_size)
        self.cond_channels = int(cond_channels)

    @staticmethod
    def config_kwargs(config) -> dict:
        """The constructor arguments shared by every objective, from config.model / config.data."""
        m = config.model
        return dict(net=m.net, sampler=m.sampler, sample_steps=m.sample_steps, num_samples=m.num_samples,
                    sample_size=int(m.sample_size) or int(config.data.crop_size))

    # -- pieces -------------------------------------------------------------------------------------
    def cond(self, batch: Mapping[str, Any]):
        """batch["cond"] checked against cond_channels (None for an unconditional objective)."""
        y = batch.get("cond")
        if self.cond_channels == 0:
            if y is not None:
                raise ValueError("batch has a 'cond' entry but this objective is unconditional; build it with "
                                 "cond_channels=C to condition on it.")
            return None
        if y is None:
            raise ValueError(f"this objective is conditional (cond_channels={self.cond_channels}): pass "
                             "batch['cond'], float32 [B, H, W, C] aligned with batch['image'].")
        if y.shape[-1] != self.cond_channels:
            raise ValueError(f"batch['cond'] has {y.shape[-1]} channels, the objective was built for "
                             f"cond_channels={self.cond_channels}.")
        return jnp.asarray(y, jnp.float32)

    def net_apply(self, params, z, t, y=None, *, train=False, rng=None):
        """The UNet on z [B, H, W, C] with time input t [B] (and conditioning y)."""
        rngs = {"dropout": rng} if (train and self.net.dropout > 0 and rng is not None) else None
        return self.net.apply(params["net"], z, t, y, train=train, rngs=rngs)

    def _init_schedule(self, rng, t) -> dict:
        return {}

    # -- Method protocol ----------------------------------------------------------------------------
    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        if self.cond_channels and batch.get("cond") is None:   # e.g. the training loop's image-only dummy batch
            y = jnp.zeros(x.shape[:-1] + (self.cond_channels,), jnp.float32)
        else:
            y = self.cond(batch)
        r_net, r_schedule = jax.random.split(rng)
        t = jnp.zeros((x.shape[0],), jnp.float32)
        net = self.net.init(r_net, x, t) if y is None else self.net.init(r_net, x, t, y)
        return {"net": net, "schedule": self._init_schedule(r_schedule, t)}

    # -- sampling -----------------------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0, 3),
                       static_argnames=("sampler", "steps", "shape", "noise_scale"))
    def _sample_float(self, params, rng, n, y, *, sampler, steps, shape, noise_scale):
        r0, r1 = jax.random.split(rng)
        x1 = jax.random.normal(r0, (n,) + shape)
        if noise_scale != 1.0:
            x1 = noise_scale * x1
        return samplers.get_sampler(sampler)(self.model_fn(params), x1, r1, alpha_sigma=self.alpha_sigma(params),
                                             prediction=self.prediction, steps=steps, y=y)

    def sample_float(self, params, rng, n, *, y=None, sampler=None, steps=None, shape=None, noise_scale=1.0):
        """n samples in model space, float32 [n, H, W, 3], from N(0, noise_scale^2 I) at t = 1.

        y: conditioning [n, H, W, cond_channels] (required iff the objective is conditional); shape defaults to
        y's spatial size, else (sample_size, sample_size, 3). noise_scale < 1 (CDC: 0.8) lowers the
        temperature of the initial noise.
        """
        y = self.cond({} if y is None else {"cond": y})
        if y is not None:
            if y.shape[0] != n:
                raise ValueError(f"y holds {y.shape[0]} conditioning inputs for n={n} samples.")
            shape = shape or tuple(y.shape[1:3]) + (3,)
            if tuple(shape[:2]) != tuple(y.shape[1:3]):
                raise ValueError(f"sample shape {shape} does not match the conditioning y {y.shape}.")
        shape = tuple(shape or (self.sample_size, self.sample_size, 3))
        return self._sample_float(params, rng, int(n), y, sampler=sampler or self.sampler,
                                  steps=int(steps or self.sample_steps), shape=shape,
                                  noise_scale=float(noise_scale))

    def sample(self, params, rng, n, **kwargs):
        """n samples as uint8 [n, H, W, 3] (keyword arguments: see `sample_float`)."""
        return to_uint8(self.sample_float(params, rng, n, **kwargs))

    def eval_samples(self, params, rng):
        """`num_samples` unconditional samples for the training loop's PNG grid (None if conditional)."""
        if self.cond_channels:
            return None
        return self.sample(params, rng, self.num_samples)


class VPObjective(DiffusionObjective):
    """An objective on a variance-preserving path given by a log-SNR schedule; the network sees the
    normalised log-SNR (gamma(t) - gamma_min) / (gamma_max - gamma_min) as its time input (as VDM)."""

    def __init__(self, *, schedule: str, gamma_min: float, gamma_max: float, prediction: str,
                 fix_gamma_max: bool = False, **kwargs):
        super().__init__(**kwargs)
        if prediction not in ("eps", "x0", "v"):
            raise ValueError(f"model.prediction must be 'eps', 'x0' or 'v', got {prediction!r}.")
        self.prediction = prediction
        self.schedule = LogSNRSchedule(schedule, gamma_min=gamma_min, gamma_max=gamma_max,
                                       fix_gamma_max=fix_gamma_max)

    @staticmethod
    def config_kwargs(config) -> dict:
        m = config.model
        return dict(DiffusionObjective.config_kwargs(config), schedule=m.schedule, gamma_min=m.gamma_min,
                    gamma_max=m.gamma_max, prediction=m.prediction)

    def _init_schedule(self, rng, t) -> dict:
        return self.schedule.init(rng, t)

    def gamma_fn(self, params):
        """t [B] -> gamma [B] (the log-SNR schedule, learned or fixed)."""
        return self.schedule.fn(params["schedule"])

    def alpha_sigma(self, params):
        return schedules.vp_alpha_sigma(self.gamma_fn(params))

    def model_fn(self, params, *, train=False, rng=None):
        """model_fn(z, t[, y]) -> the network's `prediction` at log-SNR gamma(t)."""
        gamma = self.gamma_fn(params)

        def fn(z, t, y=None):
            return self.net_apply(params, z, self.schedule.normalise(gamma(t)), y, train=train, rng=rng)
        return fn
