"""What the two conditional-diffusion codecs (CDC, HFD) share: decode options, the decoder settings in the
file, the decoder noise from the header seed, and the realism knob.

File = stage-1 segments (the entropy-coded latent) + decoder settings in the header's meta bytes + the seed of
the decoder's sampling noise in the header. The receiver regenerates the noise from the seed alone:
    key = fold_in(PRNGKey(seed mod 2^32), seed >> 32);  (k_init, k_sampler) = split(key)
    z_T = noise_scale * N(0, I) drawn with k_init at the padded image shape (batch 1)
so one file decodes to one image in any process, and images are decoded one at a time (batch 1: the
result cannot depend on what else is decoded). The default seed is derived from the image bytes, so
`compress` is a deterministic function of the image.

Realism (review Eq. 17, p = 1 - gamma / gamma*): X_hat(p) = (1 - p) X* + p X_hat_0 with X_hat_0 the decoder's
sample of P(X | Y) and X* the codec's MMSE estimate (theory.gaussian.realism_interpolation).

Meta bytes (version 1): [1] + varint(default sampling steps) + varint(round(1000 * default realism)).
Version 2 (files whose stage-1 segments use the integer entropy-parameter path, codecs/latent.py): [2] + the
same two varints + varint(flags), flags bit 0 = stage-1 integer path. Version-1 files read as flags = 0.

Bounded work: a file's own default is at most MAX_FILE_STEPS = 1000 sampler steps (the encoder refuses to write
more, the decoder refuses a file that asks for more: a hostile header asked for 10,000 steps, minutes of
decoding). 1000 is the finest discretisation these decoders are trained for in the literature (CDC's and DDPM's
T = 1000; the paper decodes with 65 DDIM steps, HFD with 50-250), so no honest file needs more. A user may still
ask for up to SAMPLING_STEPS_OPTION.maximum = 10,000 steps explicitly (`--option sampling_steps=N`): that work
is the user's choice, not the file's. The environment variable GENCOMP_MAX_FILE_STEPS lowers (or raises) the
limit for a process (the fuzzer lowers it, as it lowers the pixel limit, so that its cases fit its time limit).
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import numpy as np

from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import DecodeOption
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

META_VERSION = 2               # the newest meta version (module docstring)
MAX_FILE_STEPS = 1000          # the most sampler steps a file's own settings may ask for (see module docstring)
MAX_FILE_STEPS_ENV = "GENCOMP_MAX_FILE_STEPS"

REALISM_OPTION = DecodeOption(
    "realism", float, None, "D-P knob p: (1-p) * MMSE estimate + p * posterior sample (0 = MMSE, 1 = sample); "
    "default: the value in the file", minimum=0.0, maximum=1.0)
SAMPLING_STEPS_OPTION = DecodeOption(
    "sampling_steps", int, None, "number of sampler steps of the diffusion decoder; default: the value in the file",
    minimum=1, maximum=10_000)
PREVIEW_OPTION = DecodeOption(
    "preview", bool, False, "return the stage-1 (MSE) reconstruction only, without the diffusion pass")

RATE_POINTS = [{"realism": 0.0}, {"realism": 0.5}, {"realism": 1.0}]


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
    """Decoder defaults written into a file (overridable at decode time)."""

    steps: int
    realism: float
    stage1_integer: bool = False   # how the encoder wrote the stage-1 segments (set by the codec, not a user knob)

    def __post_init__(self):
        limit = file_step_limit()
        if not (isinstance(self.steps, int) and 1 <= self.steps <= limit):
            raise ValueError(f"a file's default sampling steps must be an int in 1..{limit}, got "
                             f"{self.steps!r} (more steps can be asked for at decode time: sampling_steps=N).")
        if not 0.0 <= float(self.realism) <= 1.0:
            raise ValueError(f"realism must be in [0, 1], got {self.realism!r}.")

    def to_meta(self) -> bytes:
        body = write_varint(self.steps) + write_varint(int(round(1000 * self.realism)))
        if not self.stage1_integer:   # version 1: the bytes of every file written before version 2
            return bytes([1]) + body
        return bytes([META_VERSION]) + body + write_varint(1)

    @classmethod
    def from_meta(cls, meta: bytes, codec: str) -> "DecoderSettings":
        def unreadable(why):
            return bitstream.BitstreamError(f"The {codec} file's decoder settings are unreadable ({why}); the file "
                                            "is corrupted or was written by another version.")
        try:
            if not meta or meta[0] not in (1, META_VERSION):
                raise VarintError("unknown version")
            steps, pos = read_varint(meta, 1)
            realism, pos = read_varint(meta, pos)
            flags = 0
            if meta[0] == 2:
                flags, pos = read_varint(meta, pos)
                if flags not in (0, 1):
                    raise VarintError(f"unknown flags {flags}")
            if pos != len(meta):
                raise VarintError("trailing bytes")
        except (VarintError, IndexError) as e:
            raise unreadable(e) from None
        limit = file_step_limit()
        if steps > limit:   # refused before anything is computed: the work a file can ask for is bounded
            raise bitstream.BitstreamError(
                f"The {codec} file asks for {steps} sampler steps, more than the {limit} a file may ask for: "
                "it is corrupted or hostile, refused. (More steps are the decoder's own choice: sampling_steps=N.)")
        try:
            return cls(steps=steps, realism=realism / 1000.0, stage1_integer=bool(flags))
        except ValueError as e:
            raise unreadable(e) from None


def file_step_limit() -> int:
    """The most sampler steps a file's own settings may ask for: $GENCOMP_MAX_FILE_STEPS if set, else
    MAX_FILE_STEPS."""
    return bitstream.env_limit(MAX_FILE_STEPS_ENV, MAX_FILE_STEPS, "sampler steps")


def resolve(settings: DecoderSettings, options: dict) -> tuple[int, float, bool]:
    """(steps, realism, preview) from checked decode options, falling back to the file's settings."""
    steps = options.get("sampling_steps")
    realism = options.get("realism")
    return (settings.steps if steps is None else int(steps),
            settings.realism if realism is None else float(realism),
            bool(options.get("preview", False)))


def seed_for_image(image: np.ndarray) -> int:
    """A non-zero u64 seed derived from the image bytes and shape (so compress is deterministic)."""
    h = hashlib.sha256(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode()).digest()
    return int.from_bytes(h[:8], "little") or 1


def check_seed(seed) -> int:
    if seed is None:
        raise ValueError("seed must be an int in 1..2^64-1")
    seed = int(seed)
    if not 1 <= seed < 2 ** 64:
        raise ValueError(f"seed must be in 1..2^64-1 (0 means 'no seed' in the container), got {seed}.")
    return seed


def decoder_keys(seed: int):
    """(k_init, k_sampler): the decoder's PRNG keys, a function of the header seed only."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed & 0xFFFFFFFF), (seed >> 32) & 0xFFFFFFFF)
    return tuple(jax.random.split(key))
