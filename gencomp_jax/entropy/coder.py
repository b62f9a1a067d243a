"""Entropy coding of integer symbols: the one coder module (numpy + constriction's ANS).

Two ways to give the model of each symbol, both deterministic functions of their inputs so that the
encoder and the decoder build identical models:

* Integer tables (`encode_indexed`, `encode_per_symbol`): `quantize_pmf` turns float pmfs into integer
  frequencies summing to 2**PRECISION (pure numpy), so decoding never depends on float behaviour.
* Streams of segments (`StreamEncoder` / `StreamDecoder`, used by channel/dq.py): per-symbol float
  models handed to constriction directly - its native `QuantizedGaussian` (no table at all) or float
  tables `[n, K]` that its leaky `Categorical` quantizes to 24 bits. Cheaper than `quantize_pmf` when
  every one of ~10^6 symbols has its own model.

Escape code (one implementation, vectorised; any int64 value is codable, nothing ever fails to
encode). A model with K entries codes offset .. offset + K - 2 directly (symbol v - offset); symbol
K - 1 is the escape, and the value is then sent as its zig-zag overflow u >= 0:
    u = 2 (offset - v) - 2 below the range,   u = 2 (v - offset - K + 1) + 1 above it
(`QuantizedGaussian(-H, H)` escapes at its end symbols -H and H, so there u = -H - v or v - H).
u is Elias-gamma coded: the bit length n of w = u + 1 minus one, from a fixed model with
P(n) ~ 2^-(n+1), then the n low bits of w in chunks of up to 16 bits (low chunk first). The escapes
of a call are coded together after its main symbols: all lengths, then all chunks. Zig-zag
overflows between any int64 value and any int64 offset reach 2^65, so they are computed exactly as
w = 2 * half + bit with half in uint64.

Two frozen layouts of that code exist, because files written with each must keep decoding
bit-identically (they differ only in the length alphabet and the order of the chunks):
    tables  (encode_indexed, encode_per_symbol): n in [0, 66), chunks escape by escape;
    streams (StreamEncoder, DQ segments):       n in [0, 64), chunk 0 of every escape, then chunk 1, ...
tests/golden/make_coder_golden.py wrote, with the two coders this module replaced (commit 44b2816),
the golden streams that tests/entropy/test_coder.py re-encodes and decodes.

Stream layout (ANS is a stack; listed in decoding order). encode_indexed: main symbols grouped by
table (groups in increasing table index, positions in increasing order within a group), then the
escapes. encode_per_symbol: main symbols, then escapes. StreamEncoder: segment 1's main symbols and
escapes, segment 2's, ... Decoding checks that the stream is consumed exactly; any inconsistency
raises `CodingError`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

import constriction

PRECISION = 16
_CHUNK = 16

__all__ = ["PRECISION", "CodingError", "quantize_pmf", "encode_indexed", "decode_indexed",
           "encode_per_symbol", "decode_per_symbol", "StreamEncoder", "StreamDecoder"]


class CodingError(ValueError):
    """Raised when compressed data cannot be decoded (corrupt, truncated, or wrong tables)."""


# ---------------------------------------------------------------------------------------------
# Table quantization


def quantize_pmf(pmf, precision: int = PRECISION) -> np.ndarray:
    """Quantizes float pmfs to integer frequencies.

    Args:
      pmf: float [..., K], nonnegative, finite, each row with a positive sum (need not be normalized).
      precision: every row of the result sums to exactly 2**precision.
    Returns:
      int64 [..., K], every entry >= 1. Deterministic (pure numpy float64/int64 arithmetic).

    Method: q = max(1, floor(p T)); the remaining deficit goes to the entries with the largest
    fractional parts; an excess (from entries raised to 1) is taken from all entries in proportion to
    q - 1, which costs about the same expected code length per unit wherever it is taken.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] < 2:
        raise ValueError(f"quantize_pmf needs pmfs of shape [..., K] with K >= 2, got {p.shape}.")
    total_mass = 1 << int(precision)
    k = p.shape[-1]
    if k > total_mass // 2:
        raise ValueError(f"Table size K={k} is too large for precision {precision} (max "
                         f"{total_mass // 2}); raise the precision or shrink the support.")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("quantize_pmf: probabilities must be finite and nonnegative.")
    row_sum = p.sum(axis=-1, keepdims=True)
    if np.any(row_sum <= 0):
        raise ValueError("quantize_pmf: every row needs a positive total probability.")
    shape = p.shape
    p = (p / row_sum).reshape(-1, k)
    x = p * total_mass
    fl = np.floor(x)
    q = np.maximum(fl, 1.0).astype(np.int64)
    frac = x - fl
    r = total_mass - q.sum(axis=1)  # deficit (>0) or excess (<0); |r| < K

    out = q
    pos = r > 0
    if np.any(pos):
        qp, fp, rp = q[pos], frac[pos], r[pos]
        fp = np.where(qp > fl[pos], -1.0, fp)  # entries raised to 1 get nothing more
        order = np.argsort(-fp, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(len(order), 0), axis=1)
        out[pos] = qp + (rank < rp[:, None])
    neg = r < 0
    if np.any(neg):
        qn, need = q[neg], -r[neg]
        avail = qn - 1
        total = avail.sum(axis=1)
        steal = (need[:, None] * avail) // total[:, None]
        rem = need - steal.sum(axis=1)
        left = avail - steal
        order = np.argsort(-left, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(len(order), 0), axis=1)
        out[neg] = qn - steal - (rank < rem[:, None])
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Escapes


@dataclasses.dataclass(frozen=True)
class _EscapeLayout:
    """One of the two frozen layouts of the escape code (module docstring)."""

    length_symbols: int  # Elias-gamma bit lengths n in [0, length_symbols)
    chunk_major: bool    # chunks ordered chunk 0 of every escape, chunk 1, ... (else escape by escape)


_TABLE_ESCAPES = _EscapeLayout(length_symbols=66, chunk_major=False)
_STREAM_ESCAPES = _EscapeLayout(length_symbols=64, chunk_major=True)
_MAX_N = 64  # int64 values and offsets give w < 2^65, i.e. n <= 64; a longer decoded n is corruption
_U1 = np.uint64(1)
_TOP = np.uint64(1 << 63)


@functools.lru_cache(maxsize=None)
def _length_model(length_symbols: int):
    probs = 0.5 ** (np.arange(length_symbols, dtype=np.float64) + 1)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """uint64 [e] -> int64 [e]: number of bits (0 for 0), vectorised."""
    n = np.zeros(x.shape, np.int64)
    t = x.copy()
    for b in (32, 16, 8, 4, 2, 1):
        big = t >= (_U1 << np.uint64(b))
        n += big * b
        t = np.where(big, t >> np.uint64(b), t)
    return n + (t > 0)


def _zigzag(values: np.ndarray, lo: np.ndarray, km1: np.ndarray):
    """Escaped int64 values with ranges lo .. lo + km1 - 1 -> w = u + 1 as (half, bit), exactly."""
    v, l, k = (a.astype(np.int64).view(np.uint64) for a in (values, lo, km1))
    below = values < lo
    # uint64 arithmetic wraps, and each true result lies in [0, 2^64): d = lo - v in [1, 2^64) below,
    # v - lo - km1 in [0, 2^64 - 1) above. w = 2 d - 1 = 2 (d - 1) + 1 below, 2 (d + 1) above.
    half = np.where(below, l - v - _U1, v - l - k + _U1)
    return half, below.astype(np.uint64)


def _unzigzag(half: np.ndarray, bit: np.ndarray, lo: np.ndarray, km1: np.ndarray) -> np.ndarray:
    """Inverse of `_zigzag`; CodingError if a value falls outside int64 (corrupt data)."""
    l, k = lo.astype(np.int64).view(np.uint64), km1.astype(np.int64).view(np.uint64)
    below = bit == 1
    room_below = l ^ _TOP       # lo + 2^63: values below lo that stay >= -2^63
    room_above = ~room_below    # 2^63 - 1 - lo
    ok = np.where(below, half < room_below,
                  (half >= _U1) & (k <= room_above) & (half - _U1 <= room_above - k))
    if not np.all(ok):
        raise CodingError("Decoded an escaped value outside int64: the data is corrupt.")
    return np.where(below, l - half - _U1, l + k + half - _U1).view(np.int64)


def _escape_ops(half: np.ndarray, bit: np.ndarray, layout: _EscapeLayout) -> list:
    """Overflows w = 2 half + bit >= 1 -> ops (symbols, model, args) in decoding order."""
    n = _bit_length(half)  # = bit length of w minus one
    if n.size and int(n.max()) >= layout.length_symbols:
        raise ValueError(f"An escaped value is {int(n.max())} bits beyond the model's support; this stream "
                         f"codes at most {layout.length_symbols - 1}.")
    ops = [(n.astype(np.int32), _length_model(layout.length_symbols), ())]
    chunks = -(-n // _CHUNK)
    c = np.arange(max(int(chunks.max(initial=0)), 1))
    bits = np.clip(n[:, None] - _CHUNK * c[None, :], 0, _CHUNK).astype(np.uint64)
    vals = np.empty(bits.shape, np.uint64)
    vals[:, 0] = (half << _U1) | bit  # w's low bits (half's top bit drops out: only 16 bits are kept)
    vals[:, 1:] = half[:, None] >> (_CHUNK * c[1:] - 1).astype(np.uint64)[None, :]
    vals &= (_U1 << bits) - _U1
    used = bits > 0
    if layout.chunk_major:
        vals, bits, used = vals.T, bits.T, used.T
    if np.any(used):
        ops.append((vals[used].astype(np.int32), constriction.stream.model.Uniform(),
                    ((_U1 << bits[used]).astype(np.int32),)))
    return ops


def _decode_escapes(coder, e: int, layout: _EscapeLayout):
    """Decodes e escapes of `layout` -> (half, bit) uint64 [e]."""
    if e == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    n = np.asarray(coder.decode(_length_model(layout.length_symbols), e), np.int64)
    if np.any(n > _MAX_N):
        raise CodingError("Decoded an escape longer than any int64 value: the data is corrupt.")
    chunks = -(-n // _CHUNK)
    c = np.arange(max(int(chunks.max()), 1))
    bits = np.clip(n[:, None] - _CHUNK * c[None, :], 0, _CHUNK).astype(np.uint64)
    used = bits > 0
    vals = np.zeros(bits.shape, np.uint64)
    if np.any(used):
        order = (lambda a: a.T) if layout.chunk_major else (lambda a: a)
        got = np.asarray(coder.decode(constriction.stream.model.Uniform(),
                                      (_U1 << order(bits)[order(used)]).astype(np.int32)), np.uint64)
        order(vals)[order(used)] = got
    low = vals[:, 0] >> _U1  # (w - 2^n) >> 1 assembled from the chunks
    for j in range(1, vals.shape[1]):
        low |= vals[:, j] << np.uint64(_CHUNK * j - 1)
    top = _U1 << np.maximum(n - 1, 0).astype(np.uint64)
    half = np.where(n > 0, top | low, np.uint64(0))
    bit = np.where(n > 0, vals[:, 0] & _U1, _U1)
    return half, bit


# ---------------------------------------------------------------------------------------------
# Ops, bytes and checks


def _encode_ops(ops) -> bytes:
    """ops (symbols, model, args) in decoding order -> bytes (a multiple of 4; empty if no ops)."""
    coder = constriction.stream.stack.AnsCoder()
    for sym, model, args in reversed(ops):
        coder.encode_reverse(sym, model, *args)
    return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


def _categorical_ops(values, probs, offsets, layout: _EscapeLayout) -> list:
    """values int64 [n] coded as values - offsets with per-symbol tables probs [n, K], then escapes."""
    km1 = np.full(values.shape, probs.shape[1] - 1, np.int64)
    esc = (values < offsets) | (values >= offsets + km1)  # no subtraction of values: cannot wrap
    sym = np.where(esc, km1, values - np.where(esc, 0, offsets))
    ops = [(sym.astype(np.int32), constriction.stream.model.Categorical(perfect=False), (probs,))]
    if np.any(esc):
        ops += _escape_ops(*_zigzag(values[esc], offsets[esc], km1[esc]), layout)
    return ops


def _as_int64(name, x, n=None):
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        if a.size and not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype} with fractional values.")
    a = a.astype(np.int64).reshape(-1) if a.ndim <= 1 else a.astype(np.int64)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}.")
    return a


def _check_tables(tables, lengths):
    t = np.asarray(tables)
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"tables must be int [m, K] with K >= 2, got shape {t.shape}.")
    t = t.astype(np.int64)
    m, k = t.shape
    if lengths is None:
        lengths = np.full(m, k, np.int64)
    else:
        lengths = _as_int64("lengths", lengths, m)
        if np.any(lengths < 2) or np.any(lengths > k):
            raise ValueError(f"lengths must lie in [2, K={k}].")
    return t, lengths


def _check_pmfs(pmfs, n):
    p = np.asarray(pmfs)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2:
        raise ValueError(f"pmfs must be int [n={n}, K>=2], got shape {p.shape}.")
    if np.any(p < 1):
        raise ValueError("pmfs must be quantized with quantize_pmf (every entry >= 1).")
    return p.astype(np.float64)


def _groups(table_index):
    """Positions grouped by table: [(table j, positions)] in increasing j (same on both sides)."""
    order = np.argsort(table_index, kind="stable")
    ti = table_index[order]
    cut = np.flatnonzero(np.diff(ti)) + 1
    return [(int(ti[s]), order[s:e]) for s, e in zip(np.r_[0, cut], np.r_[cut, len(ti)])]


def _table_model(tables, lengths, j):
    return constriction.stream.model.Categorical(tables[j, :lengths[j]].astype(np.float64), perfect=False)


# ---------------------------------------------------------------------------------------------
# Indexed tables


def encode_indexed(values, tables, offsets, table_index, *, lengths=None) -> bytes:
    """Encodes int values, each with the table row given by `table_index`.

    Args:
      values: int [n]; any int64 value (out-of-range values are escaped).
      tables: int [m, K] from `quantize_pmf` (row j's first lengths[j] entries are used; the last of
        them is the escape symbol, so row j codes offsets[j] .. offsets[j] + lengths[j] - 2).
      offsets: int [m].
      table_index: int [n] in [0, m).
      lengths: optional int [m] in [2, K], default K for every row (for tables of varying support,
        zero-padded to a common K).
    Returns: bytes (a multiple of 4 bytes; empty for n = 0).
    """
    values = _as_int64("values", values)
    n = values.shape[0]
    tables, lengths = _check_tables(tables, lengths)
    m = tables.shape[0]
    offsets = _as_int64("offsets", offsets, m)
    table_index = _as_int64("table_index", table_index, n)
    if n == 0:
        return b""
    if table_index.min() < 0 or table_index.max() >= m:
        raise ValueError(f"table_index must lie in [0, {m}).")
    lo = offsets[table_index]
    km1 = lengths[table_index] - 1
    esc = (values < lo) | (values >= lo + km1)
    sym = np.where(esc, km1, values - np.where(esc, 0, lo))
    ops = [(sym[idx].astype(np.int32), _table_model(tables, lengths, j), ()) for j, idx in _groups(table_index)]
    if np.any(esc):
        ops += _escape_ops(*_zigzag(values[esc], lo[esc], km1[esc]), _TABLE_ESCAPES)
    return _encode_ops(ops)


def decode_indexed(data, tables, offsets, table_index, *, lengths=None) -> np.ndarray:
    """Inverse of `encode_indexed` (same tables, offsets, table_index, lengths) -> int64 [n]."""
    tables, lengths = _check_tables(tables, lengths)
    m = tables.shape[0]
    offsets = _as_int64("offsets", offsets, m)
    table_index = _as_int64("table_index", table_index)
    n = table_index.shape[0]
    if n == 0:
        return _decode_nothing(data)
    if table_index.min() < 0 or table_index.max() >= m:
        raise ValueError(f"table_index must lie in [0, {m}).")
    dec = StreamDecoder(data)

    def run():
        sym = np.empty(n, np.int64)
        for j, idx in _groups(table_index):
            sym[idx] = dec._coder.decode(_table_model(tables, lengths, j), idx.shape[0])
        lo, km1 = offsets[table_index], lengths[table_index] - 1
        return _add_escapes(dec._coder, sym, lo, km1, _TABLE_ESCAPES)
    out = dec._guard(run)
    dec.finish()
    return out


def _decode_nothing(data) -> np.ndarray:
    if len(data):
        raise CodingError("Expected an empty stream for zero symbols.")
    return np.zeros(0, np.int64)


def _add_escapes(coder, sym, lo, km1, layout) -> np.ndarray:
    """Decoded main symbols -> values, reading the escapes of the escape symbols from `coder`."""
    out = sym + lo
    esc = sym == km1
    if np.any(esc):
        out[esc] = _unzigzag(*_decode_escapes(coder, int(esc.sum()), layout), lo[esc], km1[esc])
    return out


# ---------------------------------------------------------------------------------------------
# One table per symbol


def encode_per_symbol(values, pmfs, offsets) -> bytes:
    """Encodes values[i] with its own integer table pmfs[i] (int [n, K] from quantize_pmf).

    Row i codes offsets[i] .. offsets[i] + K - 2; symbol K - 1 escapes (see module docstring).
    Vectorised: one constriction call for all symbols.
    """
    values = _as_int64("values", values)
    n = values.shape[0]
    offsets = _as_int64("offsets", offsets, n)
    if n == 0:
        return b""
    return _encode_ops(_categorical_ops(values, _check_pmfs(pmfs, n), offsets, _TABLE_ESCAPES))


def decode_per_symbol(data, pmfs, offsets) -> np.ndarray:
    """Inverse of `encode_per_symbol` -> int64 [n]."""
    offsets = _as_int64("offsets", offsets)
    n = offsets.shape[0]
    if n == 0:
        return _decode_nothing(data)
    p = _check_pmfs(pmfs, n)
    dec = StreamDecoder(data)
    out = dec._guard(lambda: _add_escapes(
        dec._coder, np.asarray(dec._coder.decode(constriction.stream.model.Categorical(perfect=False), p),
                               np.int64), offsets, np.full(n, p.shape[1] - 1, np.int64), _TABLE_ESCAPES))
    dec.finish()
    return out


# ---------------------------------------------------------------------------------------------
# Streams of segments with float models (channel/dq.py)


def _f64(a, n, name):
    a = np.ascontiguousarray(np.asarray(a, np.float64).reshape(-1))
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite.")
    return a


def _probs(probs, n):
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2:
        raise ValueError(f"probs must be float [n={n}, K>=2], got shape {p.shape}.")
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
    return np.ascontiguousarray(p)


def _qg_model(h: int):
    h = int(h)
    if not 1 <= h < (1 << 22):
        raise ValueError(f"half_width must lie in [1, 2^22), got {h}.")
    return constriction.stream.model.QuantizedGaussian(-h, h)


class StreamEncoder:
    """Collects segments; :meth:`finish` returns the bytes (a multiple of 4; empty if nothing coded).

    Each segment is a call of :meth:`quantized_gaussian` or :meth:`categorical`; a
    :class:`StreamDecoder` makes the same calls in the same order with the same models.
    """

    def __init__(self):
        self._ops = []  # decoding order: (symbols int32, model, args)

    def quantized_gaussian(self, symbols, mean, std, *, half_width: int) -> None:
        """symbols int [n] (any int64); mean, std float [n] (std > 0) in units of the integer grid.

        Codes symbols in (-half_width, half_width) directly, others as the end symbol plus an escape.
        """
        s = np.asarray(symbols, np.int64).reshape(-1)
        n = s.shape[0]
        if n == 0:
            return
        mean, std = _f64(mean, n, "mean"), _f64(std, n, "std")
        if np.any(std <= 0):
            raise ValueError("std must be > 0.")
        h = int(half_width)
        model = _qg_model(h)
        lo, hi = s <= -h, s >= h
        self._ops.append((np.clip(s, -h, h).astype(np.int32), model, (mean, std)))
        esc = lo | hi
        if np.any(esc):
            w = np.where(lo, -h - s, s - h)[esc].view(np.uint64) + _U1  # u = distance beyond the end symbol
            self._ops += _escape_ops(w >> _U1, w & _U1, _STREAM_ESCAPES)

    def categorical(self, symbols, probs, *, offset: int = 0) -> None:
        """symbols int [n]; probs float [n, K] (last column = escape mass); codes s - offset."""
        s = np.asarray(symbols, np.int64).reshape(-1)
        n = s.shape[0]
        if n == 0:
            return
        self._ops += _categorical_ops(s, _probs(probs, n), np.full(n, offset, np.int64), _STREAM_ESCAPES)

    def finish(self) -> bytes:
        data = _encode_ops(self._ops)
        self._ops = []
        return data


class StreamDecoder:
    """Decodes the segments of :class:`StreamEncoder` (and the streams of the table coders)."""

    def __init__(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Compressed data must be bytes, got {type(data).__name__}.")
        if len(data) % 4:
            raise CodingError(f"Compressed stream has {len(data)} bytes, not a multiple of 4: it is "
                              "truncated or corrupt.")
        words = np.frombuffer(bytes(data), dtype="<u4").astype(np.uint32)
        self._coder = self._guard(lambda: constriction.stream.stack.AnsCoder(words))

    @staticmethod
    def _guard(fn):
        """Runs fn; whatever constriction raises (or panics with) on inconsistent data -> CodingError."""
        try:
            return fn()
        except CodingError:
            raise
        except BaseException as e:  # noqa: BLE001  (a Rust panic is a BaseException)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise CodingError(f"Compressed stream is corrupt ({e}).") from e

    def quantized_gaussian(self, mean, std, *, half_width: int) -> np.ndarray:
        mean = np.asarray(mean, np.float64).reshape(-1)
        n = mean.shape[0]
        if n == 0:
            return np.zeros(0, np.int64)
        mean, std = _f64(mean, n, "mean"), _f64(std, n, "std")
        h = int(half_width)
        model = _qg_model(h)

        def run():
            s = np.asarray(self._coder.decode(model, mean, std), np.int64)
            lo = s == -h
            esc = lo | (s == h)
            if np.any(esc):
                half, bit = _decode_escapes(self._coder, int(esc.sum()), _STREAM_ESCAPES)
                u = (half << _U1) + bit - _U1
                below = lo[esc]
                room = np.where(below, _TOP - np.uint64(h), _TOP - _U1 - np.uint64(h))
                if np.any(u > room):
                    raise CodingError("Decoded an escaped value outside int64: the data is corrupt.")
                # uint64 arithmetic wraps to the exact int64 results -h - u and h + u
                s[esc] = np.where(below, np.uint64(2**64 - h) - u, np.uint64(h) + u).view(np.int64)
            return s
        return self._guard(run)

    def categorical(self, probs, *, offset: int = 0) -> np.ndarray:
        p = np.asarray(probs)
        n = p.shape[0] if p.ndim == 2 else -1
        if n == 0:
            return np.zeros(0, np.int64)
        p = _probs(p, n)
        return self._guard(lambda: _add_escapes(
            self._coder, np.asarray(self._coder.decode(constriction.stream.model.Categorical(perfect=False), p),
                                    np.int64),
            np.full(n, offset, np.int64), np.full(n, p.shape[1] - 1, np.int64), _STREAM_ESCAPES))

    def finish(self) -> None:
        """Raises CodingError unless the stream was consumed exactly."""
        if not self._coder.is_empty():
            raise CodingError("Compressed stream was not consumed exactly: the data is corrupt, "
                              "truncated, or was decoded with different models than it was encoded with.")
