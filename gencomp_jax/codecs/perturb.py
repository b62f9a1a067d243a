"""Decoder-side float perturbations of the UQDM codec (issue 16 item 3): how often a coding table changes.

    with perturbed_uqdm(codec, ulps=1, seed=0) as stats:
        codec.decompress(data)            # every loc and scale of the network nudged by +-ulps ulps
    stats.changed / stats.elements        # elements whose coding table differs from the unperturbed one

What a decoder on other hardware or software sees is float noise in the network's outputs. Here that
noise is injected directly: every element of the reverse kernel's loc and scale is moved by `ulps` float32
ulps in a random direction (a fixed-seed NumPy generator), on the decoder only. A table "changes" when
the (loc, scale) its tables are built from differ from the unperturbed ones: for files with float tables
(uqdm.CODING_FLOAT) every nudged element; with quantized tables (uqdm.CODING_GRID) only elements whose
grid index moves (a value within the noise of a grid boundary). One changed table usually changes the
decoded symbols, and the segment's check then stops the decoder (bitstream.DecodeMismatchError).
`classify` sorts decodes into same / detected / other_error / silent_wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from gencomp_jax.codecs import bitstream, uqdm


@dataclasses.dataclass
class TableStats:
    """Counts over the perturbed network calls of one `perturbed_uqdm` block (every element of the tiles
    the network saw; padding included, none for images that fill their tiles)."""

    elements: int = 0   # elements seen
    changed: int = 0    # of which the coding table differs from the unperturbed decoder's
    per_step: dict = dataclasses.field(default_factory=dict)  # step -> [elements, changed]


def nudge(a, rng: np.random.Generator, ulps: int) -> np.ndarray:
    """float32 array moved by `ulps` ulps per element, each in a random direction."""
    a = np.asarray(a, np.float32)
    target = np.where(rng.random(a.shape) < 0.5, np.float32(-np.inf), np.float32(np.inf)).astype(np.float32)
    for _ in range(int(ulps)):
        a = np.nextafter(a, target)
    return a


def _table_keys(coding, loc, scale, width):
    if coding == uqdm.CODING_FLOAT:
        return np.asarray(loc, np.float32), np.asarray(scale, np.float32)
    return uqdm.table_grid(loc, scale, width)


@contextlib.contextmanager
def perturbed_uqdm(codec, *, ulps: int = 1, seed: int = 0, coding: int | None = None):
    """Within the block, `codec`'s reverse-kernel loc and scale are nudged by `ulps` ulps (see `nudge`).

    coding: the table coding used to count changed tables (default: the codec's `coding`; decoding itself
    always follows the file's). Yields a TableStats filled as the codec runs.
    """
    if not isinstance(codec, uqdm.UQDMCodec):
        raise TypeError(f"perturbed_uqdm needs a UQDM codec, got {type(codec).__name__}")
    coding = codec.coding if coding is None else coding
    rng = np.random.default_rng(seed)
    stats = TableStats()
    original = codec._net_reverse

    def net(z, i, batch):
        loc, scale, width, x_hat = original(z, i, batch)
        loc_p, scale_p = nudge(loc, rng, ulps), nudge(scale, rng, ulps)
        if i < codec.T:
            w = codec._widths[i] if coding != uqdm.CODING_FLOAT else width
            a = _table_keys(coding, loc, scale, w)
            b = _table_keys(coding, loc_p, scale_p, w)
            diff = (a[0] != b[0]) | (a[1] != b[1])
            n, c = int(diff.size), int(diff.sum())
            stats.elements += n
            stats.changed += c
            e = stats.per_step.setdefault(int(i), [0, 0])
            e[0] += n
            e[1] += c
        return loc_p, scale_p, width, x_hat

    codec._net_reverse = net
    try:
        yield stats
    finally:
        del codec._net_reverse


def classify(codec, data: bytes, reference: np.ndarray) -> str:
    """Decode `data` with `codec` as it is now: 'same', 'detected' (DecodeMismatchError), 'other_error'
    (another library error) or 'silent_wrong' (a different image without an error)."""
    try:
        out = codec.decompress(data)
    except bitstream.DecodeMismatchError:
        return "detected"
    except ValueError:
        return "other_error"
    return "same" if np.array_equal(out, reference) else "silent_wrong"
