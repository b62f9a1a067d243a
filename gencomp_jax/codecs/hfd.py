"""HFD (Hoogeboom et al. 2023, "High-fidelity image compression with score-based generative models"):
an MSE-trained NTC codec as stage 1, a conditional diffusion (or flow) decoder as stage 2 (review Sec. IV-A).

    stage 1:  the scale hyperprior of codecs/ntc.py, trained for MSE only (bpp + lmbda * 255^2 * MSE);
              Y = its reconstruction (the "preview"), snapped to the 8-bit grid.
    stage 2:  a UNet conditioned on Y by concatenation, trained on (X, Y) pairs; it models
              the residual X - Y (DIRAC, Ghouse et al.; model.residual=True) or X itself, with
              - decoder="diffusion": min(SNR, 5)-weighted x0 regression (objectives/denoising.py) on a cosine
                log-SNR schedule shifted towards less noise by model.logsnr_shift (endpoints kept;
                diffusion/schedules.py `cosine_gamma(..., shift=s)`); DDIM sampling;
              - decoder="flow": flow matching (objectives/flow.py), Euler ODE (better at few steps).

Stage 1 is never trained by the stage-2 loss (its reconstruction enters stage 2 through stop_gradient):
  - model.stage1.workdir = an NTC training workdir (or HFDMethod(config, stage1_params=...)): stage 1 is
    loaded from it and frozen (no loss term: its Adam updates are exactly zero), the recommended set-up;
  - model.stage1.workdir = "": stage 1 is trained in the same run by its own MSE rate-distortion loss,
    the decoder learning on its current reconstructions (one command for small experiments and tests).

The file (codec "hfd", id 5) = the NTC file's two segments [z, y] + decoder settings (meta) + the seed of
the decoder noise (codecs/conditional.py). A scale-hyperprior stage 1 writes its segments with integer entropy
parameters (codecs/latent.py: the same scale indexes on every platform; meta version 2 records it;
model.stage1.integer_entropy=False keeps the float path); files with version-1 meta decode on the float path.
decompress(data, realism=p, sampling_steps=n, preview=False):
X_hat(p) = (1 - p) Y + p X_hat_0 (Eq. 17; Y, the MSE reconstruction, is X*); preview=True or realism=0 return
Y from the same bytes without the diffusion pass.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.codecs import bitstream, conditional, ntc
from gencomp_jax.codecs.base import check_options, register
from gencomp_jax.data import images
from gencomp_jax.diffusion import samplers
from gencomp_jax.models.hyperprior import NTCModel
from gencomp_jax.objectives.denoising import X0Denoising
from gencomp_jax.objectives.flow import FlowMatching
from gencomp_jax.theory.gaussian import realism_interpolation

CODEC_NAME = "hfd"


def _get(cfg, key, default):
    return cfg[key] if key in cfg else default


def _decoder_objective(config):
    m = config.model
    kw = dict(net=m.net, sampler=m.sampler, sample_steps=m.sample_steps, num_samples=1,
              sample_size=int(config.data.crop_size), cond_channels=3)
    kind = str(m.decoder)
    if kind == "diffusion":
        return X0Denoising(schedule="cosine", logsnr_shift=float(m.logsnr_shift), max_snr=float(m.max_snr),
                           gamma_min=float(m.gamma_min), gamma_max=float(m.gamma_max), prediction=str(m.prediction),
                           **kw)
    if kind == "flow":
        return FlowMatching(gamma_min=float(m.gamma_min), gamma_max=float(m.gamma_max), **kw)
    raise ValueError(f"model.decoder must be 'diffusion' or 'flow', got {kind!r}.")


def load_stage1(workdir, variant: str, n: int, m: int):
    """Variables of a trained NTC model (EMA) from its training workdir, checked against (variant, N, M)."""
    from gencomp_jax.train.checkpoint import load_params  # only for a frozen stage 1 given by workdir

    config, params = load_params(workdir)
    if config.method != variant or int(config.model.N) != n or int(config.model.M) != m:
        raise ValueError(f"model.stage1.workdir={str(workdir)!r} holds a {config.method!r} model with "
                         f"N={config.model.get('N')}, M={config.model.get('M')}; HFD's stage 1 needs a "
                         f"{variant!r} model with N={n}, M={m} (set model.stage1.variant / N / M to match).")
    return jax.tree_util.tree_map(np.asarray, params)


class HFDMethod:
    """The Method (codecs/base.py): params {"stage1": hyperprior variables, "decoder": objective params}.

    loss = [stage-1 bpp + lmbda * 255^2 * MSE, unless frozen] + decoder loss on (target, cond = sg(Y)).
    Metrics: bpp, psnr_stage1 (of Y), the decoder's metrics (denoise_loss / x0_mse or fm_loss).
    """

    def __init__(self, config, *, stage1_params=None):
        """stage1_params: variables of a trained NTC model to freeze as stage 1 (instead of model.stage1.workdir)."""
        m = config.model
        s1 = m.stage1
        self.stage1 = NTCModel(N=int(s1.N), M=int(s1.M), variant=str(_get(s1, "variant", "hyperprior")))
        self.stage1_method = ntc.NTCMethod(model=self.stage1, lmbda=float(s1.lmbda))
        self.stage1_workdir = str(_get(s1, "workdir", "") or "")
        self.residual = bool(m.residual)
        self.objective = _decoder_objective(config)
        self.decoder = str(m.decoder)
        if stage1_params is None and self.stage1_workdir:   # loaded here, outside any jax trace
            stage1_params = load_stage1(self.stage1_workdir, self.stage1.variant, self.stage1.N, self.stage1.M)
        self._stage1_params = None if stage1_params is None else jax.tree_util.tree_map(np.asarray, stage1_params)

    @property
    def frozen(self) -> bool:
        return self._stage1_params is not None

    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        k1, k2, k3 = jax.random.split(rng, 3)
        if self.frozen:
            stage1 = jax.tree_util.tree_map(jnp.asarray, self._stage1_params)
        else:
            stage1 = self.stage1_method.init(k1, {"image": x})
        del k2
        return {"stage1": stage1, "decoder": self.objective.init(k3, {"image": x, "cond": x})}

    def stage1_reconstruction(self, stage1_params, x):
        """Y: the stage-1 test-time reconstruction (rounded latents) on the 8-bit grid, no gradient. [B,H,W,3]."""
        out = self.stage1.apply(jax.lax.stop_gradient(stage1_params), x, train=False)
        return images.to_model(images.grid_index(out["x_hat"]))

    def target(self, x, y):
        return x - y if self.residual else x

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        r1, r2 = jax.random.split(rng)
        loss = 0.0
        metrics = {}
        if not self.frozen or not train:
            s1_loss, s1_metrics = self.stage1_method.loss(params["stage1"], {"image": x}, r1, train)
            metrics.update(bpp=s1_metrics["bpp"], stage1_mse=s1_metrics["mse"])
            if not self.frozen:
                loss = s1_loss
        y = self.stage1_reconstruction(params["stage1"], x)
        dec_loss, dec_metrics = self.objective.loss(params["decoder"], {"image": self.target(x, y), "cond": y},
                                                    r2, train)
        metrics.update(dec_metrics)
        metrics["psnr_stage1"] = ntc.psnr_from_mse01(jnp.mean(jnp.square(x - y)) / 4.0)
        loss = loss + dec_loss
        return loss, {**metrics, "loss": loss}


def make_method(config) -> HFDMethod:
    return HFDMethod(config)


# ---------------------------------------------------------------------------------------------------
# Codec


def _sample_fn(method: HFDMethod, sampler: str):
    """jit(params, y [1,H,W,3], seed keys, noise_scale, steps) -> X_hat_0 [1,H,W,3] in model space."""
    obj = method.objective

    @functools.partial(jax.jit, static_argnames=("steps",))
    def run(dec_params, y, k_init, k_sampler, noise_scale, *, steps):
        z = noise_scale * jax.random.normal(k_init, y.shape)
        fn = samplers.get_sampler(sampler)
        out = fn(obj.model_fn(dec_params), z, k_sampler, alpha_sigma=obj.alpha_sigma(dec_params),
                 prediction=obj.prediction, steps=steps, y=y)
        return jnp.clip(out + y if method.residual else out, -1.0, 1.0)   # a sample is an image: in range

    return run


class HFDCodec:
    """Codec protocol (codecs/base.py) for HFD; see the module docstring for the file and the options."""

    name = CODEC_NAME
    decode_options = (conditional.REALISM_OPTION, conditional.SAMPLING_STEPS_OPTION, conditional.PREVIEW_OPTION)

    def __init__(self, config, params):
        self.method = HFDMethod(config)
        self.params = jax.device_get(params)
        self.fingerprint = bitstream.params_fingerprint(self.params)
        m = config.model
        self.stage1 = ntc.NTCCodec(self.method.stage1, self.params["stage1"],
                                   integer=ntc.writes_integer(self.method.stage1.variant, m.stage1))
        self.sampler = str(m.sampler)
        self.noise_scale = float(_get(m, "noise_scale", 1.0))
        self.settings = conditional.DecoderSettings(steps=int(m.sample_steps), realism=float(_get(m, "realism", 1.0)))
        self._sample = _sample_fn(self.method, self.sampler)

    def rate_points(self):
        return [dict(p) for p in conditional.RATE_POINTS]

    # -- stage 1 ------------------------------------------------------------------------------------
    def preview_float(self, header, segments, *, integer: bool = False) -> jnp.ndarray:
        """Y [1, Hp, Wp, 3] (padded, on the 8-bit grid) from the stage-1 segments: what the NTC decoder gives.
        integer: the segments use the integer entropy-parameter path (the file's decoder settings say)."""
        return images.to_model(images.grid_index(self.stage1.decode_padded(header, segments, integer=integer)))

    # -- Codec protocol -----------------------------------------------------------------------------
    def compress(self, image, *, seed: int | None = None, settings: conditional.DecoderSettings | None = None
                 ) -> bytes:
        """uint8 [H, W, 3] -> bytes. seed: the decoder noise seed (default: from the image bytes);
        settings: decoder defaults written into the file (default: the config's sample_steps, realism)."""
        image = images.check_image(image)
        seed = conditional.check_seed(conditional.seed_for_image(image) if seed is None else seed)
        inner = self.stage1.compress(image)
        header, segments = bitstream.unpack(inner, codec=self.stage1.name, params_hash=self.stage1.fingerprint)
        settings = dataclasses.replace(settings or self.settings, stage1_integer=self.stage1.latent.integer)
        return bitstream.pack(bitstream.Header(codec=CODEC_NAME, params_hash=self.fingerprint,
                                               image_shape=header.image_shape, seed=seed, checks=header.checks,
                                               meta=settings.to_meta()), segments)

    def decompress(self, data: bytes, **options) -> np.ndarray:
        opts = check_options(self, options)
        header, segments = bitstream.unpack(data, codec=CODEC_NAME, params_hash=self.fingerprint)
        if len(segments) != 2:
            raise bitstream.BitstreamError(f"An HFD file holds 2 stage-1 segments, this one {len(segments)}.")
        if not header.seed:
            raise bitstream.BitstreamError("The HFD file has no decoder seed in its header (corrupted file?).")
        file_settings = conditional.DecoderSettings.from_meta(header.meta, CODEC_NAME)
        steps, realism, preview = conditional.resolve(file_settings, opts)
        h, w, _ = header.image_shape
        y = self.preview_float(header, segments, integer=file_settings.stage1_integer)
        if preview or realism == 0.0:
            return images.to_uint8(y[0, :h, :w])
        k_init, k_sampler = conditional.decoder_keys(header.seed)
        x0 = self._sample(self.params["decoder"], y, k_init, k_sampler, jnp.float32(self.noise_scale), steps=steps)
        return images.to_uint8(realism_interpolation(y, x0, realism)[0, :h, :w])

    def estimate_bits(self, image, **options) -> float:
        """The stage-1 model's rate estimate (bits); decode options do not change the bytes."""
        check_options(self, options)
        return self.stage1.estimate_bits(image)


def make_codec(config, params) -> HFDCodec:
    return HFDCodec(config, params)


register(CODEC_NAME, method=make_method, codec=make_codec, codec_id=5, decode_options=HFDCodec.decode_options)

__all__ = ["HFDMethod", "HFDCodec", "make_method", "make_codec", "load_stage1"]
