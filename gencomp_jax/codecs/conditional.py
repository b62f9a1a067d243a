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
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import numpy as np

from gencomp_jax.codecs import bitstream
from gencomp_jax.codecs.base import DecodeOption
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

META_VERSION = 1

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

    def __post_init__(self):
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 10_000):
            raise ValueError(f"sampling steps must be an int in 1..10000, got {self.steps!r}.")
        if not 0.0 <= float(self.realism) <= 1.0:
            raise ValueError(f"realism must be in [0, 1], got {self.realism!r}.")

    def to_meta(self) -> bytes:
        return bytes([META_VERSION]) + write_varint(self.steps) + write_varint(int(round(1000 * self.realism)))

    @classmethod
    def from_meta(cls, meta: bytes, codec: str) -> "DecoderSettings":
        try:
            if not meta or meta[0] != META_VERSION:
                raise VarintError("unknown version")
            steps, pos = read_varint(meta, 1)
            realism, pos = read_varint(meta, pos)
            if pos != len(meta):
                raise VarintError("trailing bytes")
            return cls(steps=steps, realism=realism / 1000.0)
        except (VarintError, ValueError, IndexError) as e:
            raise bitstream.BitstreamError(f"The {codec} file's decoder settings are unreadable ({e}); the file is "
                                           "corrupted or was written by another version.") from None


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
