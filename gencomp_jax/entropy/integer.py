"""Integer networks for entropy parameters (Ballé, Minnen, Johnston, ICLR 2019): scale indexes that
every platform computes identically.

A float hyper-synthesis h_s (stride-1 convolutions and stride-s transposed convolutions with ReLUs,
ending in the scales of a Gaussian conditional) is converted once into integer kernels and biases;
its evaluation is exact integer arithmetic on the host, and its output is the scale *index*
directly (integer thresholds derived exactly from the scale table), so no float operation, no XLA
setting, thread count or device decides an index.

    layers = [Layer(kernel, bias, stride=2, pad=None), ..., Layer(kernel, bias)]   float h_s
    net = IntegerNetwork.convert(layers, num_scales=256, lo=0.11, hi=256.0, rule="nearest")
    idx, exps = net.indexes(x_sym, offsets)        encoder: x = x_sym + offsets (z symbols + medians)
    idx, _ = net.indexes(x_sym, offsets, exps)     decoder, with the encoder's exponents (sent in the file)

Arithmetic (layer l, input activation a_l, an integer standing for a_l * 2^-f_l):
    K[..., o] = round(W[..., o] * 2^k_o)            k_o = weight_bits - 1 - e_o, max|W[..., o]| < 2^e_o
                                                    (capped at PER_CHANNEL_BOOST above the layer's own)
    B[o]      = round(b[o] * 2^(f_l + k_o))
    acc[o]    = sum K a_l + B[o]                    (the float layer's output, in units 2^-(f_l + k_o))
    hidden:   a_{l+1}[o] = clip(round_div(acc[o], 2^(f_l + k_o - f_{l+1})), 0, 2^A - 1)
              (the bounded ReLU; round_div rounds halves up: an arithmetic shift)
    last:     index[o] = #{i : T_i <= acc[o]},   T_i = floor(boundary_i * 2^(f_l + k_o)) + 1
    input:    a_0 = clip(x_sym * 2^f_0 + round(offsets * 2^f_0), +-(2^(A-1) - 1))
`boundary_i` is where the float rule changes its index: the geometric mean of table scales i and i+1
for rule "nearest" (gaussian_conditional.scale_indexes: nearest in log space), table scale i for
"ceil". Those boundaries are lo * (hi / lo)^(j / (S - 1)) (j = i + 1/2 or i), evaluated with Python's
`decimal` module at 50 digits, whose exp and ln are correctly rounded: the same integers everywhere.

Exponents: the weight exponents k_o depend on the parameters only. The activation exponents
f_0..f_{L-1} are chosen by the encoder on the input it codes (`forward(..., exponents=None)`): each
the largest at which that layer's activations stay below 2^(A-1) (one bit of margin, no clipping),
so every image gets ~23 bits of activation precision; they travel in the file (one byte each) and
the decoder computes with them. A weight of 16 bits and activations of 24 bits give ~1e-5 relative
error against the float network: ~0.06% of the scale indexes of a runlocal model on Kodak differ by
one step from the float path's (BENCHMARKS.md).

Exactness. The conversion uses only operations IEEE 754 defines exactly (scaling float32 values by
powers of two in float64, round-half-even, frexp) and integer arithmetic, so the same float32
parameters give the same integers on every platform. The sums of products run as float64 matrix
products of integer-valued arrays: `convert` (kernels, activation range) and the evaluation (biases at
the file's exponents) check that every accumulator's bound sum |K| * max|a| + |B| is below 2^52, so
every partial sum in any order of summation (with or without FMA, any BLAS blocking or thread count)
is an integer below 2^53, which float64 represents exactly: every addition and multiplication is
exact and the result equals the int64 sum (tests/codecs/test_integer_hyperprior.py compares with an
int64 einsum). float64 BLAS is ~3x faster than numpy's int64 matmul. Shifts, clips and thresholds
are int64 operations. A file's exponents outside EXPONENT_RANGE or beyond the exact range are refused
(ValueError); no exponent can overflow a shift.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gencomp_jax.nn.layers import depth_to_space, polyphase_kernels

WEIGHT_BITS = 16       # signed integer kernels: |K| <= 2^15
ACTIVATION_BITS = 24   # hidden activations in [0, 2^24 - 1], the input in +-(2^23 - 1)
PER_CHANNEL_BOOST = 4  # see IntegerNetwork.convert
EXACT_BOUND = 2 ** 52  # every accumulator stays below this (float64 sums of integers are exact)
_DIGITS = 50


@dataclasses.dataclass(frozen=True)
class Layer:
    """One float layer of h_s: kernel float [k, k, Cin, Cout] (HWIO), bias float [Cout].

    stride 1: a stride-1 convolution with padding ((k-1)//2, k//2) (nn.layers.Conv);
    stride s > 1: lax.conv_transpose(x, kernel, (s, s), "SAME") (nn.layers.SubpixelConv) with the
    leading pad `pad` of the dilated input (None: "SAME"; nn.layers.torch_transpose_pad(k): PyTorch).
    Every layer but the last is followed by a ReLU; the last layer's output is the scale.
    """

    kernel: np.ndarray
    bias: np.ndarray
    stride: int = 1
    pad: int | None = None


def _exponent(x: float) -> int:
    """e with |x| < 2^e (frexp: exact), 0 for x = 0."""
    return int(np.frexp(np.float64(x))[1]) if x else 0


def _phases(kernel: np.ndarray, stride: int, pad):
    """[(sub-kernel [kh, kw, Cin, Cout], ((top, bottom), (left, right)))] of a layer, stride-1 convs whose
    outputs depth_to_space interleaves (one phase for a stride-1 conv)."""
    if stride == 1:
        k = kernel.shape[0]
        return [(kernel, (((k - 1) // 2, k // 2),) * 2)]
    return [(np.asarray(sub), pads) for sub, pads in polyphase_kernels(kernel, stride, pad)]


def conv_int(x: np.ndarray, kernel: np.ndarray, pads) -> np.ndarray:
    """Stride-1 correlation of integer arrays, exact: x int64 [H, W, Cin], kernel int64 [kh, kw, Cin, Cout],
    pads ((top, bottom), (left, right)) (negative: crop) -> int64 [H', W', Cout].

    Computed as one float64 matrix product; exact as long as sum |kernel| * max |x| < 2^53 (the caller's
    bound, see the module docstring)."""
    (pt, pb), (pl, pr) = pads
    x = np.pad(x, ((max(pt, 0), max(pb, 0)), (max(pl, 0), max(pr, 0)), (0, 0)))
    x = x[max(-pt, 0):x.shape[0] - max(-pb, 0), max(-pl, 0):x.shape[1] - max(-pr, 0)]
    kh, kw, cin, cout = kernel.shape
    win = sliding_window_view(x, (kh, kw), axis=(0, 1))  # [H', W', Cin, kh, kw]
    oh, ow = win.shape[:2]
    patches = win.transpose(0, 1, 3, 4, 2).reshape(oh * ow, kh * kw * cin).astype(np.float64)
    acc = patches @ kernel.reshape(kh * kw * cin, cout).astype(np.float64)
    return acc.astype(np.int64).reshape(oh, ow, cout)


def _round_shift(acc: np.ndarray, shift, bits: int) -> np.ndarray:
    """round(acc / 2^shift), halves rounded up, per channel (shift int64 [C] or scalar, may be <= 0): int64.

    Exact for |acc| < 2^52 and results within +-2^bits; beyond that the result saturates (callers clip it
    to `bits` bits), so that no shift of a hostile file's exponents can overflow."""
    shift = np.asarray(shift, np.int64)
    right = np.minimum(np.maximum(shift, 0), 62)
    left = np.minimum(np.maximum(-shift, 0), 60 - bits)
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    down = np.right_shift(acc + half, right)  # arithmetic shift: floor division by 2^right
    return np.left_shift(np.clip(down, -2 ** (bits + 1), 2 ** (bits + 1)), left)


@functools.lru_cache(maxsize=16)
def _boundaries(num_scales: int, lo: float, hi: float, rule: str) -> tuple:
    """The S - 1 scales (Decimal, 50 digits) where the float rule's index steps up."""
    with decimal.localcontext() as ctx:
        ctx.prec = _DIGITS
        lo_d, hi_d = decimal.Decimal(lo), decimal.Decimal(hi)  # the float's exact binary value
        log_ratio = (hi_d / lo_d).ln() / (num_scales - 1)
        shift = decimal.Decimal("0.5") if rule == "nearest" else decimal.Decimal(0)
        return tuple(lo_d * ((i + shift) * log_ratio).exp() for i in range(num_scales - 1))


@functools.lru_cache(maxsize=256)
def thresholds(num_scales: int, lo: float, hi: float, rule: str, unit_exponent: int) -> np.ndarray:
    """int64 [S - 1]: T_i = floor(boundary_i * 2^u) + 1, the smallest accumulator (in units 2^-u)
    whose scale gets index i + 1 or more. Exact (decimal arithmetic); cached. A threshold beyond 2^62 is
    stored as 2^62: accumulators stay below 2^52, so it is never reached either way (a small network output
    makes the encoder pick a large exponent u, and hi * 2^u would not fit in int64)."""
    if rule not in ("nearest", "ceil"):
        raise ValueError(f"scale rule {rule!r}; use 'nearest' or 'ceil'.")
    with decimal.localcontext() as ctx:
        ctx.prec = _DIGITS
        scale = decimal.Decimal(2) ** unit_exponent
        out = np.array([min(int((b * scale).to_integral_value(rounding=decimal.ROUND_FLOOR)) + 1, 2 ** 62)
                        for b in _boundaries(num_scales, lo, hi, rule)], np.int64)
    out.setflags(write=False)
    return out


EXPONENT_RANGE = (-40, 40)  # activation exponents f (a file stores f + 64 in one byte)


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerNetwork:
    """An integer h_s (see the module docstring). Build it with `convert`.

    kernels[l]: [(int64 phase kernel [kh, kw, Cin, Cout], pads)]; weight_exponents[l]: int64 [Cout] k_o;
    biases[l]: float64 [Cout] (scaled by 2^(f_l + k_o) and rounded at evaluation: exact);
    kernel_sums[l]: Python ints [Cout], max over phases of sum |K| (the accumulator bound per unit input).
    """

    layers: tuple
    kernels: tuple
    biases: tuple
    weight_exponents: tuple
    kernel_sums: tuple
    weight_bits: int
    activation_bits: int
    num_scales: int
    lo: float
    hi: float
    rule: str

    @classmethod
    def convert(cls, layers: Sequence[Layer], *, num_scales: int, lo: float, hi: float, rule: str = "nearest",
                weight_bits: int = WEIGHT_BITS, activation_bits: int = ACTIVATION_BITS) -> "IntegerNetwork":
        """Integer network of the float `layers` whose last output is a scale with the table
        exp(linspace(log lo, log hi, num_scales)) and index rule `rule` ("nearest" or "ceil").
        Raises ValueError if the bit widths could leave the exact range (use fewer bits)."""
        if not 2 <= weight_bits <= 24 or not 4 <= activation_bits <= 40:
            raise ValueError(f"bit widths weight={weight_bits}, activation={activation_bits}: need "
                             "2 <= weight_bits <= 24 and 4 <= activation_bits <= 40.")
        if rule not in ("nearest", "ceil"):
            raise ValueError(f"scale rule {rule!r}; use 'nearest' or 'ceil'.")
        kernels, biases, wexps, sums = [], [], [], []
        for i, layer in enumerate(layers):
            w = np.asarray(layer.kernel, np.float64)  # float32 -> float64: exact
            peaks = np.abs(w).reshape(-1, w.shape[-1]).max(0)
            # per output channel, at most 2^PER_CHANNEL_BOOST finer than the layer's largest weight needs
            # (a channel of near-zero weights would otherwise scale its bias out of the exact range)
            k_cap = weight_bits - 1 - _exponent(float(peaks.max())) + PER_CHANNEL_BOOST
            k = np.array([min(weight_bits - 1 - _exponent(m), k_cap) for m in peaks], np.int64)
            kint = np.round(np.ldexp(w, k)).astype(np.int64)  # scaling by 2^k and rounding: exact
            phases = _phases(kint, layer.stride, layer.pad)
            s = np.max([np.abs(sub).reshape(-1, sub.shape[-1]).sum(0) for sub, _ in phases], axis=0)
            s = [int(v) for v in s]
            if max(s) * 2 ** activation_bits >= EXACT_BOUND:
                raise ValueError(f"layer {i}: accumulators may reach 2^{(max(s) << activation_bits).bit_length()}, "
                                 "beyond the exact range 2^52; use fewer weight or activation bits.")
            kernels.append(phases)
            biases.append(np.asarray(layer.bias, np.float64))
            wexps.append(k)
            sums.append(s)
        return cls(layers=tuple(layers), kernels=tuple(kernels), biases=tuple(biases), weight_exponents=tuple(wexps),
                   kernel_sums=tuple(sums), weight_bits=weight_bits, activation_bits=activation_bits,
                   num_scales=num_scales, lo=float(lo), hi=float(hi), rule=rule)

    def _input(self, x_sym, offsets, f: int) -> np.ndarray:
        """a_0 = clip(round(x_sym * 2^f) + round(offsets * 2^f), +-(2^(A-1) - 1)), int64 (no overflow: the
        symbols are clipped to the range first and |f| <= 40)."""
        lim = 2 ** (self.activation_bits - 1) - 1
        reach = (lim >> max(f, 0)) + 1  # symbols beyond +-reach clip anyway
        x = _round_shift(np.clip(np.asarray(x_sym, np.int64), -reach, reach), -f, self.activation_bits)
        off = np.clip(np.round(np.ldexp(np.asarray(offsets, np.float64), f)), -lim, lim).astype(np.int64)
        return np.clip(x + off, -lim, lim)

    def _bias(self, l: int, f: int) -> np.ndarray:
        """int64 [Cout]: round(b * 2^(f + k_o)), after checking that the accumulators stay exact."""
        b = np.round(np.ldexp(self.biases[l], f + self.weight_exponents[l]))
        amax = 2 ** (self.activation_bits - (1 if l == 0 else 0))
        if any(s * amax + abs(float(v)) >= EXACT_BOUND for s, v in zip(self.kernel_sums[l], b)):
            raise ValueError(f"activation exponent {f} of layer {l} puts its accumulators beyond the exact range "
                             "2^52 (an exponent the encoder would not choose: a damaged or foreign file).")
        return b.astype(np.int64)

    def _accumulate(self, l: int, x: np.ndarray, f: int) -> np.ndarray:
        """int64 [H, W, Cin] at exponent f -> the accumulator of layer l, int64 [s H, s W, Cout]."""
        acc = [conv_int(x, sub, pads) for sub, pads in self.kernels[l]]
        acc = acc[0] if len(acc) == 1 else depth_to_space(np.concatenate(acc, -1)[None], self.layers[l].stride)[0]
        return acc + self._bias(l, f)

    def forward(self, x_sym, offsets, exponents=None) -> tuple[list[np.ndarray], tuple[int, ...]]:
        """x_sym int [H, W, Cin] (x = x_sym + offsets, offsets float [Cin]) -> (the accumulator of every layer,
        int64, hidden ones before the shift and clip; the activation exponents (f_0, ..., f_{L-1})).

        exponents=None (the encoder): each f_l is chosen on this input, the largest at which its activations
        stay below 2^(A-1) (no clipping, one bit of margin); given (the decoder): those of the file."""
        a, num = self.activation_bits, len(self.layers)
        if exponents is not None:
            exponents = tuple(int(f) for f in exponents)
            if len(exponents) != num or not all(EXPONENT_RANGE[0] <= f <= EXPONENT_RANGE[1] for f in exponents):
                raise ValueError(f"activation exponents {exponents}: expected {num} integers in {EXPONENT_RANGE}.")
            f = exponents[0]
        else:
            x = np.asarray(x_sym, np.float64) + np.asarray(offsets, np.float64)
            f = _clamp(a - 2 - _exponent(float(np.abs(x).max())) if x.size else 0)
        fs, accs = [f], []
        x = self._input(x_sym, offsets, f)
        for l in range(num):
            acc = self._accumulate(l, x, fs[l])
            accs.append(acc)
            if l == num - 1:
                break
            k = self.weight_exponents[l]
            if exponents is not None:
                f_next = exponents[l + 1]
            else:  # largest f' with max(relu(acc_o)) * 2^(f' - f_l - k_o) < 2^(A-1) for every channel o
                peak = np.maximum(acc.reshape(-1, acc.shape[-1]).max(0), 0) if acc.size else np.zeros(len(k), int)
                f_next = _clamp(min(a - 1 - int(m).bit_length() + fs[l] + int(ko) for m, ko in zip(peak, k)))
            fs.append(f_next)
            x = np.clip(_round_shift(acc, fs[l] + k - f_next, a), 0, 2 ** a - 1)
        return accs, tuple(fs)

    def indexes(self, x_sym, offsets, exponents=None) -> tuple[np.ndarray, tuple[int, ...]]:
        """(scale table indexes int64 [H', W', M], the exponents used) of x = x_sym + offsets (x_sym int
        [H, W, Cin]); exponents: see `forward`."""
        accs, fs = self.forward(x_sym, offsets, exponents)
        return self._indexes(accs[-1], fs[-1]), fs

    def _indexes(self, acc: np.ndarray, f: int) -> np.ndarray:
        units = f + self.weight_exponents[-1]
        out = np.empty(acc.shape, np.int64)
        for u in np.unique(units):
            ch = np.flatnonzero(units == u)
            t = thresholds(self.num_scales, self.lo, self.hi, self.rule, int(u))
            out[..., ch] = np.searchsorted(t, acc[..., ch], side="right")
        return out

    def scales(self, x_sym, offsets) -> np.ndarray:
        """The integer network's scales as floats [H', W', M], relu(acc) * 2^-u (for analysis only)."""
        accs, fs = self.forward(x_sym, offsets)
        u = fs[-1] + self.weight_exponents[-1]
        return np.ldexp(np.maximum(accs[-1], 0).astype(np.float64), -u)


def _clamp(f: int) -> int:
    return int(min(max(f, EXPONENT_RANGE[0]), EXPONENT_RANGE[1]))
