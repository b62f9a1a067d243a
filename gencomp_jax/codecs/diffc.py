"""DiffC: progressive lossy compression with one Gaussian diffusion model and chunked channel simulation.

Review Sec. IV-B, Algorithm 1 (Theis et al. 2022; Vonderfecht & Liu's practical DiffC). The sender
holds x_0, both sides hold the same diffusion model and a seed:

  X_T      drawn from the shared randomness, N(0, I), at zero rate (as UQDM; the SNR at t = 1 is ~0).
  step k   t = times[k] -> s = times[k + 1]: the Gaussian channel q(x_s | x_t, x_0) = N(mu_q, var I)
           is simulated against the model's reverse kernel p(x_s | x_t) = N(mu_p, var I),
           mu_p = posterior mean with x_0 replaced by the denoiser's x0_hat(x_t, t), by chunked PFR
           (channel/pfr.py `gaussian_channel_encode`; one quantized KL and one Zipf-coded index per chunk,
           channel/index_coding.py). Its cost is the step's KL (Eq. 30) plus the per-chunk overhead of
           Eq. (12); the KLs sum to the diffusion part of the ELBO (Eq. 29) and, through I-MMSE
           (Eqs. 24-26), to I(X_0; X_tau) for a perfect denoiser.
  image    from the last received x_tau (`RECONSTRUCTIONS`): "denoise" = x0_hat(x_tau, tau) (one call),
           "flow" = DDIM eta = 0 (probability-flow ODE) from tau to 0, "ancestral" = DDPM sampling
           (reverse SDE) from tau to 0 with shared randomness, `reconstruction_steps` network calls.

Step schedule (`StepSchedule`): times on a base grid j / N. `power = 1, start = N` is the uniform grid
of `num_steps` steps; the practical schedule (JeremyIV/diffc's Stable Diffusion setting skips
1000 -> 973 and encodes 161 of 1000 steps) starts at start / N < 1 and spaces the steps as
(1 - k / K)^power: coarse near t = 1 where a step's KL is tiny, every base step near t = 0.

Chunking: "renyi" (default: N = 2^ceil(2 B + 8) candidates for a chunk of KL budget B, unbiased at
10^4 samples) or "diffc" (N = 2^ceil(B + 2), chunks of <= max_chunk_bits - 2 bits; cheaper, biased:
see channel/pfr.py and benchmarks/diffc.py). Encoder cost per step ~ N_max x (number of dimensions)
Gaussian candidates, so `max_chunk_bits` is the speed knob.

File (codecs/progressive.py container, codec "diffc", id 3): header meta = the DiffC format (2; format-1
files, never released, are refused with a clear error), the schedule, chunking and margin_bits, data grid
and layout (the decoder builds its chain from the file, not from the loaded config); the
diffusion steps are grouped into `segments` container segments so that the per-segment framing
(CRC, lengths) is not paid per diffusion step: segment i = varint(number of steps) + the steps' codes
(`index_coding.encode_gaussian_codes`: varint quantized KLs, then all chunk indices) + a 2-byte CRC
of the encoder's x_t after the segment, so that a decoder whose floats diverged (other backend) says so
instead of returning a wrong image. The encoder closes segment i once the cumulative KL reaches
first_bpp * pixels * segment_ratio^i (rate points roughly geometric in bpp); the last segment takes
the remaining steps. Any prefix of complete
segments decodes; `steps=k` in the decode options counts segments.

Bit-exactness: the decoder needs mu_p and the step's standard deviation bit-identical to the
encoder's. Both are computed by the same jitted function of (params, x_t, t, s) on the canonical
tile-batch shape (progressive.map_tiles); t, s are float32(j / N); the candidates are addressed by
counters (channel/randomness.py); the chunk plans follow from the transmitted quantized KLs only.

The model interface is small (`DiffusionModel`: a prediction function of (params, z, t), its kind, and
alpha_sigma(params, t)), so the analytic Gaussian denoiser (`gaussian_source_model`, tests and
benchmarks) and a trained VDM (`make_codec`) plug into the same chain (`DiffCChain`).

Measured (benchmarks/results/diffc.json, experiments/results/diffc_rd/; 2-core EPYC under heavy load):
Gaussian source, 10^4 dims, 3 steps: real bits / KL = 2.67 (Renyi, 16-bit chunks), 3.0 (Renyi, 12),
1.87 (DiffC rule, 16); bias of the chosen candidate along each chunk's mean +0.02 +- 0.10 sigma (Renyi)
vs -0.55 +- 0.11 (DiffC rule); ODE vs ancestral 3.01 dB at SNR 2500 (theory 3.01). A 600-step runlocal
VDM on 64x64 Kodak crops: ~0.95 bpp -> 24.4 dB (denoise) / 25.0 (flow) / 24.2 (ancestral); at equal
PSNR the files need ~2x the bits of ideal DiffC (sum of KLs; 27.5 dB: 1.56 vs 0.77 bpp).
Speed (benchmarks/diffc.py; BENCHMARKS.md "DiffC session 5"): the encoder's time is the channel simulation,
2^max_chunk_bits x pixels x 3 standard normals per saturated step (UNet calls and index coding < 0.1 s), drawn
by one fused hash + erfinv loop at ~550 M normals/s on the shared 2-core EPYC (quiet). 64x64 kodim23 crop, the
comparison's VDM, 10 steps 1 -> 0.6 (1.7 bpp file): 14.7 s warm with 16-bit chunks (was 30-84 s), 4.1 s with
runlocal's 14-bit chunks (same margin and bias, +4% file); decoding 0.3 s warm + the reconstruction.
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import math
import struct
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel import index_coding, pfr, randomness
from gencomp_jax.codecs import bitstream, progressive
from gencomp_jax.codecs.base import STEPS_OPTION, DecodeOption, register
from gencomp_jax.data import images
from gencomp_jax.diffusion import process, samplers
from gencomp_jax.entropy.coder import CodingError
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint
from gencomp_jax.objectives.vdm import VDM
from gencomp_jax.theory import gaussian

RECONSTRUCTIONS = progressive.RECONSTRUCTIONS
CHUNKINGS = ("renyi", "diffc")
LN2 = math.log(2.0)
PATH_ANCESTRAL = (randomness.PURPOSE_PRIOR, 1)   # + (step, tile chunk): the receiver's ancestral noise
PATH_IDEAL = (randomness.PURPOSE_PRIOR, 2)       # + (step,): exact sampling of q in the ideal chain


# ---------------------------------------------------------------------------------------------------
# The model interface


@dataclasses.dataclass(frozen=True)
class DiffusionModel:
    """What DiffC needs of a diffusion model on a Gaussian (VP) path x_t = alpha_t x_0 + sigma_t eps.

    apply(params, z [B, ...], t [B]) -> the prediction of kind `prediction` ("eps" | "x0" | "v"), like z.
    alpha_sigma(params, t [...]) -> (alpha_t, sigma_t) like t.
    """

    apply: Callable[[Any, jax.Array, jax.Array], jax.Array]
    alpha_sigma: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    prediction: str = "eps"

    def __post_init__(self):
        if self.prediction not in ("eps", "x0", "v"):
            raise ValueError(f"DiffC needs an 'eps', 'x0' or 'v' prediction, got {self.prediction!r}")

    def denoise(self, params, z, t):
        """x0_hat(z, t) for z [B, ...] at the scalar time t."""
        tb = jnp.full((z.shape[0],), t, jnp.float32)
        a, s = self.alpha_sigma(params, tb)
        a, s = process.broadcast_to(a, z), process.broadcast_to(s, z)
        return process.to_x0_eps(self.apply(params, z, tb), z, a, s, prediction=self.prediction)[0]


def objective_model(objective) -> DiffusionModel:
    """The DiffusionModel of a VP objective (gencomp_jax.objectives, e.g. the VDM of config.model)."""
    return DiffusionModel(apply=lambda p, z, t: objective.model_fn(p)(z, t),
                          alpha_sigma=lambda p, t: objective.alpha_sigma(p)(t),
                          prediction=objective.prediction)


def gaussian_source_model(mu, cov, alpha_sigma) -> DiffusionModel:
    """The Bayes-optimal denoiser E[X_0 | X_t] of a Gaussian source N(mu, cov) (theory/gaussian.py).

    Arrays are [B, ..., d] with d = len(mu) (each row one source sample); alpha_sigma: t -> (alpha, sigma)
    (diffusion/schedules.py). params are unused (pass None).
    """
    mu, cov = jnp.asarray(mu, jnp.float32), jnp.asarray(cov, jnp.float32)

    def apply(params, z, t):
        a, s = alpha_sigma(t)
        a, s = process.broadcast_to(a, z), process.broadcast_to(s, z)
        return gaussian.posterior_mean(z, a, s, mu, cov)

    return DiffusionModel(apply=apply, alpha_sigma=lambda params, t: alpha_sigma(t), prediction="x0")


# ---------------------------------------------------------------------------------------------------
# Step schedule


MAX_STEPS = 1 << 16  # bound on a schedule's grid (a file's header meta cannot ask for more)


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """Transmitted times on the base grid j / base_steps (see the module docstring).

    base_steps N; num_steps K; start: the first transmitted step goes from t = 1 to start / N
    (start = N: no skip); end: the last one ends at end / N; power: spacing (1 - k / K)^power between
    start and end (1 = uniform, > 1 = dense near end). Steps that fall on the same grid point merge.
    """

    base_steps: int = 1000
    num_steps: int = 100
    start: int = 1000
    end: int = 0
    power: float = 1.0

    def __post_init__(self):
        n, k = int(self.base_steps), int(self.num_steps)
        if not (1 <= n <= MAX_STEPS and 1 <= k <= MAX_STEPS):
            raise ValueError(f"base_steps and num_steps must be in [1, {MAX_STEPS}], got {n}, {k}")
        if not 0 <= int(self.end) < int(self.start) <= n:
            raise ValueError(f"need 0 <= end < start <= base_steps, got end={self.end}, start={self.start}, "
                             f"base_steps={n}")
        if not 0.01 <= float(self.power) <= 100:
            raise ValueError(f"power must be in [0.01, 100], got {self.power}")

    @classmethod
    def uniform(cls, num_steps: int, *, base_steps: int | None = None, end: int = 0) -> "StepSchedule":
        n = int(base_steps or num_steps)
        return cls(base_steps=n, num_steps=int(num_steps), start=n, end=int(end), power=1.0)

    def grid(self) -> np.ndarray:
        """int64 [S + 1]: j_0 = N > j_1 > ... > j_S = end (S transmitted steps)."""
        u = np.arange(int(self.num_steps) + 1, dtype=np.float64) / int(self.num_steps)
        j = int(self.end) + np.round((int(self.start) - int(self.end)) * (1.0 - u) ** float(self.power))
        j = np.unique(j.astype(np.int64))[::-1]
        if j[0] != int(self.base_steps):
            j = np.concatenate([[int(self.base_steps)], j])
        return j

    def times(self) -> np.ndarray:
        """float32 [S + 1] decreasing from 1: the times both sides use."""
        return (self.grid() / float(self.base_steps)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# The chain of Algorithm 1 on float arrays


def _padding_bits(chunking: str):
    if chunking not in CHUNKINGS:
        raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
    return None if chunking == "renyi" else pfr.DIFFC_PADDING_BITS


class DiffCChain:
    """Algorithm 1's steps on float arrays z [N, ...] (N tiles, `batch` per network call).

    valid: bool like z (None = all): elements outside are never transmitted (both sides set them to
    mu_p). Step k goes from times[k] to times[k + 1].
    """

    def __init__(self, model: DiffusionModel, params, times, *, chunking: str = "renyi",
                 max_chunk_bits: int = 16, margin_bits: int = pfr.RENYI_MARGIN_BITS, batch: int = 1):
        self.model, self.params = model, params
        self.times = np.asarray(times, np.float32)
        if self.times.ndim != 1 or self.times.shape[0] < 2 or not np.all(np.diff(self.times) < 0):
            raise ValueError(f"times must decrease strictly and hold at least 2 values, got {self.times}")
        self.chunking, self.padding_bits = chunking, _padding_bits(chunking)
        self.max_chunk_bits, self.batch = int(max_chunk_bits), int(batch)
        self._plan_kw = dict(max_chunk_bits=self.max_chunk_bits, padding_bits=self.padding_bits,
                             margin_bits=int(margin_bits))
        pfr.plan_chunks(0, 1, **self._plan_kw)  # checks

        def reverse(params, z, t, s):
            x0 = model.denoise(params, z, t)
            a_t, s_t = model.alpha_sigma(params, t)
            a_s, s_s = model.alpha_sigma(params, s)
            mean, var = process.posterior(z, x0, a_s, s_s, a_t, s_t)
            return mean, jnp.sqrt(var)

        def target(params, z, x0, t, s):
            a_t, s_t = model.alpha_sigma(params, t)
            a_s, s_s = model.alpha_sigma(params, s)
            return process.posterior(z, x0, a_s, s_s, a_t, s_t)[0]

        def recon(params, z, t, key, *, method, steps):
            if method == "denoise":
                return model.denoise(params, z, t)
            model_fn = functools.partial(model.apply, params)
            alpha_sigma = functools.partial(model.alpha_sigma, params)
            sampler = samplers.ddim_sampler if method == "flow" else samplers.ancestral_sampler
            return sampler(model_fn, z, key, alpha_sigma=alpha_sigma, prediction=model.prediction, steps=steps,
                           t_start=t, t_end=0.0)

        self._reverse = jax.jit(reverse)
        self._target = jax.jit(target)
        self._recon = jax.jit(recon, static_argnames=("method", "steps"))
        self._denoise = jax.jit(model.denoise)

    @property
    def num_steps(self) -> int:
        return self.times.shape[0] - 1

    def _ts(self, k: int):
        if not 0 <= k < self.num_steps:
            raise ValueError(f"step {k} outside [0, {self.num_steps})")
        return self.times[k], self.times[k + 1]

    # -- one step ------------------------------------------------------------------------------------
    def reverse(self, z, k: int):
        """(mu_p like z, std scalar) of p(x_s | x_t) at step k, on the canonical tile batch."""
        t, s = self._ts(k)
        return progressive.map_tiles(lambda zc, c: self._reverse(self.params, zc, t, s), z, self.batch)

    def target_mean(self, z, x0, k: int):
        """mu_q of q(x_s | x_t = z, x_0) at step k (encoder only)."""
        t, s = self._ts(k)
        return self._target(self.params, z, x0, t, s)

    @staticmethod
    def _values(a, valid):
        a = np.asarray(a)
        return a.reshape(-1) if valid is None else a[valid]

    @staticmethod
    def _scatter(base, valid, values):
        if valid is None:
            return jnp.asarray(np.asarray(values, np.float32).reshape(np.shape(base)))
        return progressive.scatter_valid(base, valid, values)

    def encode_step(self, z, x0, k: int, shared: randomness.SharedRandomness, valid=None):
        """-> (x_s, GaussianChannelCode, KL bits): x_s is what `decode_step` reproduces from the code."""
        mu_p, std = self.reverse(z, k)
        mu_q = self.target_mean(z, x0, k)
        mq, mp = self._values(mu_q, valid), self._values(mu_p, valid)
        sample, code = pfr.gaussian_channel_encode(mq, mp, std, randomness=shared, step=k, **self._plan_kw)
        return self._scatter(mu_p, valid, sample), code, pfr.gaussian_kl_bits(mq, mp, std)

    def decode_step(self, z, k: int, code, shared: randomness.SharedRandomness, valid=None):
        """x_s from x_t = z and the step's code (the decoder's side of `encode_step`)."""
        mu_p, std = self.reverse(z, k)
        sample = pfr.gaussian_channel_decode(code, self._values(mu_p, valid), std, randomness=shared, step=k,
                                             **self._plan_kw)
        return self._scatter(mu_p, valid, sample)

    def ideal_step(self, z, x0, k: int, shared: randomness.SharedRandomness, valid=None):
        """"Ideal DiffC": x_s drawn exactly from q(x_s | x_t, x_0) (no channel simulation) -> (x_s, KL bits)."""
        mu_p, std = self.reverse(z, k)
        mu_q = self.target_mean(z, x0, k)
        mq, mp = self._values(mu_q, valid), self._values(mu_p, valid)
        eps = np.asarray(shared.normal(PATH_IDEAL + (k,), mq.shape))
        return self._scatter(mu_p, valid, mq + np.float32(std) * eps), pfr.gaussian_kl_bits(mq, mp, std)

    # -- whole chains ----------------------------------------------------------------------------------
    def prior(self, shared: randomness.SharedRandomness, shape):
        """X_T ~ N(0, I) from the shared randomness (zero rate)."""
        return shared.normal(progressive.PATH_PRIOR, tuple(shape))

    def ideal_chain(self, x0, shared, *, steps: int | None = None, valid=None, exact_prior: bool = False):
        """Runs `steps` ideal steps from X_T -> (x_tau, KL bits per step). exact_prior: X_T ~ q(x_T | x_0)
        (the forward process) instead of N(0, I)."""
        z = self.prior(shared, np.shape(x0))
        if exact_prior:
            a, s = self.model.alpha_sigma(self.params, jnp.float32(self.times[0]))
            z = a * jnp.asarray(x0, jnp.float32) + s * z
        bits = []
        for k in range(self.num_steps if steps is None else int(steps)):
            z, b = self.ideal_step(z, x0, k, shared, valid)
            bits.append(b)
        return z, bits

    def reconstruct(self, z, k: int, *, method: str = "denoise", steps: int = 50,
                    shared: randomness.SharedRandomness | None = None):
        """Model-space estimate of x_0 from z = x_{times[k]} (k = steps received), like z."""
        if method not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={method!r}; use one of {RECONSTRUCTIONS}")
        t = self.times[k]
        if method != "denoise" and t > 0 and shared is None:
            raise ValueError("flow / ancestral reconstruction needs the shared randomness (shared=)")
        if method == "denoise" or t <= 0:
            return progressive.map_tiles(lambda zc, c: self._denoise(self.params, zc, t), z, self.batch)
        return progressive.map_tiles(
            lambda zc, c: self._recon(self.params, zc, t, shared.key(*PATH_ANCESTRAL, k, c), method=method,
                                      steps=int(steps)), z, self.batch)

    # -- serialisation of steps ------------------------------------------------------------------------
    def pack_steps(self, codes, dim: int) -> bytes:
        """varint(number of steps) + index_coding.encode_gaussian_codes of their codes."""
        body = index_coding.encode_gaussian_codes(codes, [dim] * len(codes), **self._plan_kw) if codes else b""
        return write_varint(len(codes)) + body

    def unpack_steps(self, data: bytes, dim: int, first_step: int) -> list:
        """Inverse of `pack_steps`; BitstreamError on corrupt data or too many steps."""
        try:
            n, pos = read_varint(data, 0)
            if first_step + n > self.num_steps:
                raise bitstream.BitstreamError(
                    f"corrupted diffc file: a segment holds steps up to {first_step + n} but the schedule has "
                    f"{self.num_steps}")
            if not n:
                if pos != len(data):
                    raise bitstream.BitstreamError("corrupted diffc file: bytes in an empty segment")
                return []
            return index_coding.decode_gaussian_codes(data[pos:], [dim] * n, **self._plan_kw)
        except (CodingError, VarintError, ValueError) as e:
            if isinstance(e, bitstream.BitstreamError):
                raise
            raise bitstream.BitstreamError(f"corrupted diffc file: a segment's channel codes do not decode "
                                           f"({e})") from None


# ---------------------------------------------------------------------------------------------------
# The codec


def _recon_steps_option() -> DecodeOption:
    return DecodeOption("reconstruction_steps", int, None,
                        "network calls of the flow / ancestral reconstruction (default: the config's "
                        "diffc.reconstruction_steps)", minimum=1, maximum=10000)


def default_diffc_config() -> dict:
    """config.model.diffc defaults (configs/diffc.py sets them per preset)."""
    return dict(base_steps=1000, num_steps=100, start=1000, end=0, power=1.0, chunking="renyi",
                max_chunk_bits=16, margin_bits=pfr.RENYI_MARGIN_BITS, segments=12, first_bpp=0.02,
                segment_ratio=1.6, reconstruction_steps=50, tile_size=0, tile_batch=1)


_CHECK_BYTES = 2
# header meta "format": 2 = candidates from both threefry words of counter (index, position) (channel/pfr.py)
# and the margin_bits field; files of format 1 (one jax.random.normal key per candidate, 11 meta fields) were
# never released and are refused with a clear error.
FORMAT = 2
_FORMAT1_META_FIELDS = 11


def _state_check(z, codes) -> bytes:
    """2 bytes (CRC-16 of x_t's float32 bytes) that let the decoder detect a diverged chain; none for an
    empty segment."""
    if not codes:
        return b""
    return struct.pack("<H", binascii.crc_hqx(np.ascontiguousarray(np.asarray(z, np.float32)).tobytes(), 0))


@dataclasses.dataclass
class _State:
    z: jax.Array
    k: int = 0          # diffusion steps done
    bits: float = 0.0   # encoder: KL bits so far


class DiffCCodec(progressive.ProgressiveBase):
    """Progressive DiffC codec of a trained VDM (ProgressiveCodec protocol; module docstring).

    compress(image, *, seed=None) -> bytes; decompress(data, *, steps=None, reconstruction="denoise",
    reconstruction_steps=None) -> uint8 [H, W, 3] (steps counts segments); estimate_bits(image, steps=)
    = sum of the KLs of the steps in the first `steps` segments on the exact path of compress (PFR
    included: as slow as compress); ideal(image) = the "ideal DiffC" rates and reconstructions (exact
    sampling of each step, no channel simulation).
    """

    name = "diffc"
    decode_options = (STEPS_OPTION, progressive.reconstruction_option(), _recon_steps_option())
    meta_fields = ("format", "segments", "base_steps", "num_steps", "start", "end", "power100", "chunking",
                   "max_chunk_bits", "margin_bits", "grid", "tile", "tile_batch")

    def __init__(self, config, params, *, model: DiffusionModel | None = None, seed: int = progressive.DEFAULT_SEED):
        d = dict(default_diffc_config())
        d.update(dict(config.model.get("diffc", {})))
        self.settings = d
        if model is None:
            model = objective_model(_make_objective(config))
        self.model = model
        net = dict(config.model.get("net", {}))
        stride = 2 ** (len(net.get("ch_mult", (1,))) - 1) if net.get("arch", "unet") == "unet" else 1
        super().__init__(params, tile=int(d["tile_size"]), tile_batch=int(d["tile_batch"]), stride=stride,
                         seed=seed)
        if d["chunking"] not in CHUNKINGS:
            raise ValueError(f"diffc.chunking must be one of {CHUNKINGS}, got {d['chunking']!r}")
        self.schedule = StepSchedule(base_steps=int(d["base_steps"]), num_steps=int(d["num_steps"]),
                                     start=int(d["start"]), end=int(d["end"]), power=round(float(d["power"]), 2))
        self.num_segments_default = int(d["segments"])
        if self.num_segments_default < 1:
            raise ValueError(f"diffc.segments must be >= 1, got {self.num_segments_default}")
        self.first_bpp, self.segment_ratio = float(d["first_bpp"]), float(d["segment_ratio"])
        self.reconstruction_steps = int(d["reconstruction_steps"])
        self._chains: dict = {}

    # -- meta and chains --------------------------------------------------------------------------------
    def _meta(self) -> dict[str, int]:
        s = self.schedule
        return dict(format=FORMAT, segments=self.num_segments_default, base_steps=s.base_steps,
                    num_steps=s.num_steps, start=s.start, end=s.end, power100=int(round(100 * s.power)),
                    chunking=CHUNKINGS.index(self.settings["chunking"]),
                    max_chunk_bits=int(self.settings["max_chunk_bits"]),
                    margin_bits=int(self.settings["margin_bits"]), grid=images.GRIDS.index(self.grid))

    def _parse_meta(self, data: bytes) -> dict[str, int]:
        try:
            meta = super()._parse_meta(data)
        except bitstream.BitstreamError:
            meta = None
        if meta is None or meta["format"] != FORMAT:
            n, pos = 0, 0
            try:
                while pos < len(data):
                    pos = read_varint(data, pos)[1]
                    n += 1
            except VarintError:
                n = -1
            if n == _FORMAT1_META_FIELDS or (meta is not None and meta["format"] < FORMAT):
                raise bitstream.BitstreamError(
                    "this diffc file has the old DiffC format 1 (candidates drawn before the vectorised channel "
                    f"simulation); this version reads format {FORMAT}: encode the image again")
            raise bitstream.BitstreamError("corrupted diffc file: bad header meta")
        return meta

    def _check_meta(self, meta) -> None:
        super()._check_meta(meta)
        if meta["grid"] != images.GRIDS.index(self.grid):
            raise bitstream.BitstreamError(f"this diffc file was written on another data grid "
                                           f"(id {meta['grid']}) than this codec's {self.grid!r}")
        try:
            self.chain(meta)
        except ValueError as e:
            raise bitstream.BitstreamError(f"corrupted diffc file: bad header meta ({e})") from None

    def num_segments(self, meta) -> int:
        return int(meta["segments"])

    def chain(self, meta=None) -> DiffCChain:
        """The chain of a file's meta (default: of files this codec writes); cached."""
        meta = meta or self.full_meta()
        key = tuple(meta[f] for f in self.meta_fields)
        if key not in self._chains:
            if meta["chunking"] >= len(CHUNKINGS):
                raise ValueError(f"unknown chunking id {meta['chunking']}")
            sched = StepSchedule(base_steps=meta["base_steps"], num_steps=meta["num_steps"], start=meta["start"],
                                 end=meta["end"], power=meta["power100"] / 100.0)
            self._chains[key] = DiffCChain(self.model, self.params, sched.times(),
                                           chunking=CHUNKINGS[meta["chunking"]],
                                           max_chunk_bits=meta["max_chunk_bits"], margin_bits=meta["margin_bits"],
                                           batch=meta["tile_batch"])
        return self._chains[key]

    # -- progressive hooks -----------------------------------------------------------------------------
    def _initial_state(self, ctx):
        return _State(self.chain(ctx.meta).prior(ctx.shared, ctx.layout.tiles_shape))

    def _target_bits(self, ctx, i: int) -> float:
        h, w, _ = ctx.layout.shape
        if i >= self.num_segments(ctx.meta) - 1:
            return math.inf
        return self.first_bpp * h * w * self.segment_ratio ** i

    def _encode_step(self, ctx, i, state, *, code):
        chain = self.chain(ctx.meta)
        z, k, total = state.z, state.k, state.bits
        codes, seg_bits = [], 0.0
        target = self._target_bits(ctx, i)
        while k < chain.num_steps and total < target:
            z, c, b = chain.encode_step(z, ctx.x, k, ctx.shared, ctx.valid)
            codes.append(c)
            seg_bits += b
            total += b
            k += 1
        seg = chain.pack_steps(codes, int(ctx.valid.sum())) + _state_check(z, codes) if code else None
        return seg, _State(z, k, total), seg_bits

    def _decode_step(self, ctx, i, state, segment):
        chain = self.chain(ctx.meta)
        z, k = state.z, state.k
        body, check = segment, b""
        if segment[:1] != b"\x00":  # a segment with steps ends with the encoder's state check
            body, check = segment[:-_CHECK_BYTES], segment[-_CHECK_BYTES:]
        codes = chain.unpack_steps(body, int(ctx.valid.sum()), k)
        for code in codes:
            z = chain.decode_step(z, k, code, ctx.shared, ctx.valid)
            k += 1
        if _state_check(z, codes) != check:
            raise bitstream.BitstreamError(
                f"diffc decoder diverged from the encoder in segment {i + 1} (x_t after step {k} differs): the "
                "file was made with other model floats (another XLA backend / version, or other parameters "
                "with the same fingerprint); decode it where it was encoded")
        return _State(z, k)

    def _reconstruct(self, ctx, state, steps, *, reconstruction="denoise", reconstruction_steps=None):
        chain = self.chain(ctx.meta)
        x = chain.reconstruct(state.z, state.k, method=reconstruction,
                              steps=int(reconstruction_steps or self.reconstruction_steps), shared=ctx.shared)
        return images.to_uint8(x, grid=self.grid)

    # -- extras ----------------------------------------------------------------------------------------
    def steps_received(self, data: bytes, *, steps: int | None = None) -> tuple[int, float]:
        """(diffusion steps decoded, time tau of the last one) after `steps` segments of `data` (reads the
        step counts of the segments; runs no network)."""
        header, segments = bitstream.unpack(data, codec=self.name, params_hash=self.fingerprint, allow_partial=True)
        meta = self._parse_meta(header.meta)
        self._check_meta(meta)
        k = 0
        for seg in segments[:len(segments) if steps is None else int(steps)]:
            try:
                k += read_varint(seg, 0)[0]
            except VarintError:
                raise bitstream.BitstreamError("corrupted diffc file: a segment's step count is cut off") from None
        chain = self.chain(meta)
        if k > chain.num_steps:
            raise bitstream.BitstreamError(f"corrupted diffc file: {k} steps, the schedule has {chain.num_steps}")
        return k, float(chain.times[k])

    def ideal(self, image, *, seed: int | None = None, at_steps=(), reconstructions=(),
              reconstruction_steps: int | None = None):
        """"Ideal DiffC" (rate = sum of KLs, no channel-simulation overhead): a chain that samples every step's
        q(x_s | x_t, x_0) exactly (seeded like `compress`). Returns (KL bits of every diffusion step,
        {k: {reconstruction: uint8 [H, W, 3]}} for each k in at_steps (diffusion steps received))."""
        image = images.check_image(image, name="diffc codec input")
        seed = self.seed if seed is None else self._check_seed(seed)
        meta = self.full_meta()
        ctx = self._context(image.shape, seed, meta, image)
        chain = self.chain(meta)
        z, bits, recs = chain.prior(ctx.shared, ctx.layout.tiles_shape), [], {}
        for k in range(chain.num_steps + 1):
            if k in at_steps:
                recs[k] = {r: np.ascontiguousarray(ctx.layout.from_tiles(self._reconstruct(
                    ctx, _State(z, k), None, reconstruction=r, reconstruction_steps=reconstruction_steps)))
                    for r in reconstructions}
            if k < chain.num_steps:
                z, b = chain.ideal_step(z, ctx.x, k, ctx.shared, ctx.valid)
                bits.append(b)
        return bits, recs


def _make_objective(config):
    return VDM.from_config(config)


def make_method(config):
    """DiffC trains the VDM of config.model (its ELBO's diffusion term is DiffC's rate)."""
    return _make_objective(config)


def make_codec(config, params, **kwargs) -> DiffCCodec:
    return DiffCCodec(config, params, **kwargs)


register("diffc", method=make_method, codec=DiffCCodec, codec_id=3)
