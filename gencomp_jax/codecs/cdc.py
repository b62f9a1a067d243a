"""CDC (Yang & Mandt, NeurIPS 2023, "Lossy image compression with conditional diffusion models"): a
mean-scale hyperprior latent decoded by a conditional diffusion model, trained end to end (review Eq. 22).

    stage 1:  y = g_a(x) at 1/16 resolution; mean-scale hyperprior (models/hyperprior.py MeanScaleLatent):
              uniform noise in training, rounding around the mean at test time, scales floored at 0.11.
    stage 2:  ContextNetwork (learned up-sampling of y_hat to maps at full, 1/2, 1/4, 1/8 resolution,
              concatenated into the first UNet levels) + UNet predicting x0 (models/cdc.py), cosine log-SNR
              schedule, w(t) = min(SNR, 5) (objectives/denoising.py `x0_denoising_terms`).
    loss:     beta * bpp + (1 - rho) * w(t) * mean ||x - x0_hat(z_t, y_hat, t)||^2 + rho * LPIPS-alex(x, x0_hat)
              (the rate is in bits per pixel; the denoising term is averaged over dimensions); w(t) =
              min(SNR, 5) (model.loss_weight "min_snr", default) or 1 ("uniform", the runlocal preset's).
    decoding: DDIM (eta = 0) in `sampling_steps` steps from z_T = noise_scale * N(0, I) (0.8 as the
              reference), the noise drawn from the seed in the file header (codecs/conditional.py).

Realism knob (Eq. 17): X_hat(p) = (1 - p) X* + p X_hat_0 with X_hat_0 the DDIM sample and X* the decoder's
one-call x0-prediction at t = 1, x0_hat(z_T, y_hat, 1). Why this X*: the network is trained to minimise
E||X - x0_hat(Z_t, Y, t)||^2, so at t = 1, where Z_1 carries almost no information about X (SNR(1) = e^-5),
x0_hat approximates E[X | Y], the MMSE estimate; it costs one network call, and DDIM's first step computes
it anyway. (The ODE mean would need an average over many samples.) tests/theory/test_dp_gaussian.py checks
that on a Gaussian source this one-call estimate equals E[X | Y] and that X_hat(p) has MSE D*(1 + p^2).

The file (codec "cdc", id 4) = the latent codec's segments [z, y] (codecs/latent.py) + decoder settings
(meta) + the decoder-noise seed; see codecs/conditional.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.codecs import bitstream, conditional
from gencomp_jax.codecs.base import check_options, register
from gencomp_jax.codecs.latent import NUM_SEGMENTS, LatentCodec
from gencomp_jax.data import images
from gencomp_jax.diffusion import samplers, schedules
from gencomp_jax.models.cdc import CDCModel
from gencomp_jax.models.hyperprior import latent_module
from gencomp_jax.objectives.base import LogSNRSchedule
from gencomp_jax.objectives.denoising import x0_denoising_terms
from gencomp_jax.theory.gaussian import realism_interpolation

CODEC_NAME = "cdc"
# Weight w(t) of the x0 error: "min_snr" = min(SNR, max_snr) (the and the paper's setting), "uniform" = 1
# (the reference's use_loss_weight=False). At CPU step counts min_snr leaves the high-noise predictions, where the
# latent matters, nearly untrained (weight 0.007 at t = 1): runlocal uses uniform (BENCHMARKS.md, CDC session 5).
LOSS_WEIGHTS = ("min_snr", "uniform")
STRIDE = 64        # g_a (16) x hyper analysis (4): images are padded to a multiple of this


def _get(cfg, key, default):
    return cfg[key] if key in cfg else default


class CDCMethod:
    """The Method (codecs/base.py) of CDC. params: CDCModel variables {"params": {g_a, latent, decoder}}.

    loss(params, batch, rng, train) -> (loss, {loss, bpp, denoise_loss, x0_mse, lpips (rho > 0)}).
    """

    def __init__(self, config):
        m = config.model
        self.model = CDCModel(N=int(m.N), M=int(m.M), context_features=tuple(m.context_features),
                              net=dict(m.net), norm_groups=int(_get(m, "context_norm_groups", 8)))
        self.beta = float(m.beta)
        self.rho = float(m.rho)
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"model.rho (the LPIPS weight) must be in [0, 1], got {self.rho}.")
        self.max_snr = float(m.max_snr)
        self.loss_weight = str(_get(m, "loss_weight", "min_snr"))
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"model.loss_weight must be one of {LOSS_WEIGHTS}, got {self.loss_weight!r}.")
        self.schedule = LogSNRSchedule("cosine", gamma_min=float(m.gamma_min), gamma_max=float(m.gamma_max))
        self.gamma = self.schedule.fn({})

    def model_fn(self, params, *, train=False, rng=None):
        """model_fn(z, t, maps) -> x0-prediction; the network's time input is the normalised log-SNR."""
        rngs = {"dropout": rng} if (train and rng is not None) else None

        def fn(z, t, maps):
            return self.model.apply(params, z, self.schedule.normalise(self.gamma(t)), maps, train=train,
                                    rngs=rngs, method=CDCModel.denoise)
        return fn

    def alpha_sigma(self):
        return schedules.vp_alpha_sigma(self.gamma)

    def init(self, rng, batch):
        x = jnp.asarray(batch["image"], jnp.float32)
        k1, k2 = jax.random.split(rng)
        return self.model.init({"params": k1}, x, jnp.zeros((x.shape[0],)), train=True, rng=k2)

    def loss(self, params, batch, rng, train):
        x = jnp.asarray(batch["image"], jnp.float32)
        r_lat, r_den, r_drop = jax.random.split(rng, 3)
        y = self.model.apply(params, x, method=CDCModel.analysis)
        lat = self.model.apply(params, y, train=train, rng=r_lat if train else None, method=CDCModel.latent_forward)
        maps = self.model.apply(params, lat["y_hat"], method=CDCModel.context)
        terms = x0_denoising_terms(self.model_fn(params, train=train, rng=r_drop), x, r_den, gamma_fn=self.gamma,
                                   prediction="x0", y=maps,
                                   max_snr=self.max_snr if self.loss_weight == "min_snr" else None)
        b, h, w, _ = x.shape
        bpp = (jnp.sum(lat["y_bits"]) + jnp.sum(lat["z_bits"])) / (b * h * w)
        denoise = jnp.mean(terms.loss)
        loss = self.beta * bpp + (1.0 - self.rho) * denoise
        metrics = {"bpp": bpp, "denoise_loss": denoise, "x0_mse": jnp.mean(terms.mse)}
        if self.rho > 0:
            lp = jnp.mean(_lpips_alex(x, terms.x0_hat))
            loss = loss + self.rho * lp
            metrics["lpips"] = lp
        return loss, {**metrics, "loss": loss}


def _lpips_alex(x, x_hat):
    """Differentiable LPIPS-alex [B] of model-space images (the metric of gencomp_jax.metrics.lpips)."""
    from gencomp_jax.metrics import lpips

    apply, params = lpips.differentiable("alex")
    return apply(params, x, jnp.clip(x_hat, -1.0, 1.0))


def make_method(config) -> CDCMethod:
    return CDCMethod(config)


# ---------------------------------------------------------------------------------------------------
# Codec


class CDCCodec:
    """Codec protocol (codecs/base.py) for CDC; see the module docstring for the file and the options."""

    name = CODEC_NAME
    decode_options = (conditional.REALISM_OPTION, conditional.SAMPLING_STEPS_OPTION)

    def __init__(self, config, params):
        self.method = CDCMethod(config)
        self.params = jax.device_get(params)
        self.fingerprint = bitstream.params_fingerprint(self.params)
        model = self.method.model
        self.latent = LatentCodec(latent_module("mean_scale", model.N, model.M),
                                  {"params": self.params["params"]["latent"]})
        m = config.model
        self.noise_scale = float(_get(m, "noise_scale", 0.8))
        self.settings = conditional.DecoderSettings(steps=int(m.sample_steps), realism=float(_get(m, "realism", 1.0)))
        self._analysis = jax.jit(lambda p, x: model.apply(p, x, method=CDCModel.analysis))
        self._decode = self._make_decoder()

    def _make_decoder(self):
        method = self.method

        @functools.partial(jax.jit, static_argnames=("steps", "sample"))
        def decode(params, y_hat, k_init, k_sampler, noise_scale, *, steps, sample):
            maps = method.model.apply(params, y_hat, method=CDCModel.context)
            shape = (1, 16 * y_hat.shape[1], 16 * y_hat.shape[2], 3)
            z = noise_scale * jax.random.normal(k_init, shape)
            fn = method.model_fn(params)
            x_star = jnp.clip(fn(z, jnp.ones((1,)), maps), -1.0, 1.0)     # one-call x0 at t = 1: the MMSE estimate
            if not sample:
                return x_star, x_star
            x0 = samplers.ddim_sampler(fn, z, k_sampler, alpha_sigma=method.alpha_sigma(), prediction="x0",
                                       steps=steps, y=maps, eta=0.0)
            return x_star, jnp.clip(x0, -1.0, 1.0)

        return decode

    def rate_points(self):
        return [dict(p) for p in conditional.RATE_POINTS]

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        hp, wp = images.padded_size(image_shape[0], image_shape[1], STRIDE)
        return hp // 16, wp // 16, self.method.model.M

    def _latent(self, image) -> np.ndarray:
        x = images.to_model(images.pad_to_multiple(image, STRIDE)[None])
        return np.asarray(self._analysis(self.params, x))[0]

    # -- Codec protocol -----------------------------------------------------------------------------
    def compress(self, image, *, seed: int | None = None, settings: conditional.DecoderSettings | None = None
                 ) -> bytes:
        """uint8 [H, W, 3] -> bytes. seed: the decoder noise seed (default: from the image bytes);
        settings: decoder defaults written into the file (default: the config's sample_steps, realism)."""
        image = images.check_image(image)
        seed = conditional.check_seed(conditional.seed_for_image(image) if seed is None else seed)
        segments, checks = self.latent.encode_batch(self._latent(image)[None], checks=True)[0]
        settings = settings or self.settings
        return bitstream.pack(bitstream.Header(codec=CODEC_NAME, params_hash=self.fingerprint,
                                               image_shape=tuple(int(s) for s in image.shape), seed=seed,
                                               meta=settings.to_meta(), num_segments=NUM_SEGMENTS,
                                               checks=checks), segments)

    def decompress(self, data: bytes, **options) -> np.ndarray:
        opts = check_options(self, options)
        header, segments = bitstream.unpack(data, codec=CODEC_NAME, params_hash=self.fingerprint)
        if len(segments) != NUM_SEGMENTS:
            raise bitstream.BitstreamError(f"A CDC file holds {NUM_SEGMENTS} latent segments, this one "
                                           f"{len(segments)}.")
        if not header.seed:
            raise bitstream.BitstreamError("The CDC file has no decoder seed in its header (corrupted file?).")
        file_settings = conditional.DecoderSettings.from_meta(header.meta, CODEC_NAME)
        if file_settings.stage1_integer:   # CDC's mean-scale latent has no integer path: not a file CDC wrote
            raise bitstream.BitstreamError("The cdc file's settings declare integer stage-1 entropy parameters, which "
                                           "CDC never writes: the file is corrupted or not a CDC file.")
        steps, realism, _ = conditional.resolve(file_settings, opts)
        h, w, _ = header.image_shape
        y_hat = self.latent.decode(segments, self.latent_shape(header.image_shape), header=header)
        k_init, k_sampler = conditional.decoder_keys(header.seed)
        x_star, x0 = self._decode(self.params, jnp.asarray(y_hat[None]), k_init, k_sampler,
                                  jnp.float32(self.noise_scale), steps=steps, sample=realism > 0.0)
        return images.to_uint8(realism_interpolation(x_star, x0, realism)[0, :h, :w])

    def estimate_bits(self, image, **options) -> float:
        """The latent model's rate estimate (bits) of the padded image; decode options do not change the bytes."""
        check_options(self, options)
        return self.latent.bits(self._latent(images.check_image(image)))


def make_codec(config, params) -> CDCCodec:
    return CDCCodec(config, params)


register(CODEC_NAME, method=make_method, codec=CDCCodec, codec_id=4)
