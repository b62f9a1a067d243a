"""Entropy coding of integer symbols with integer probability tables (numpy + constriction ANS).

Encoder and decoder build *identical* integer tables with `quantize_pmf` (a deterministic function of
its float input), so decoding never depends on floating-point behaviour of the coder.

Escape rule: a table with K entries codes the values offset .. offset + K - 2 directly (symbol
v - offset); symbol K - 1 is the escape. A value outside that range is coded as the escape symbol
followed, at the end of the stream, by an Elias-gamma code of its zig-zag overflow
(u = 2 (offset - v) - 2 below the range, u = 2 (v - offset - K + 1) + 1 above it; the integer u + 1 is
written as its bit length n with probability 2^-(n+1) and then its n low bits). So any int64 value is
codable and nothing ever fails to encode; out-of-range values just cost more bits.

Stream layout (ANS is a stack; listed in decoding order): main symbols (grouped by table, groups in
increasing table index, positions in increasing order within a group), escape bit lengths, escape
payload bits in chunks of up to 16. Decoding checks that the stream is consumed exactly; any
inconsistency raises `CodingError`.
"""

from __future__ import annotations

import numpy as np

import constriction

PRECISION = 16
_MAX_ESCAPE_BITS = 66  # bit length n of u + 1 < 2^66 covers every int64 value and int64 offsets
_CHUNK = 16

__all__ = ["PRECISION", "CodingError", "quantize_pmf", "encode_indexed", "decode_indexed",
           "encode_per_symbol", "decode_per_symbol"]


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


def _escape_payload(values: np.ndarray, lo: np.ndarray, k_minus_1: np.ndarray):
    """Returns (bit lengths n [E], chunk symbols [C], chunk sizes [C]) for escaped values."""
    lengths, chunks, sizes = [], [], []
    for v, l, km1 in zip(values.tolist(), lo.tolist(), k_minus_1.tolist()):
        u = 2 * (l - v) - 2 if v < l else 2 * (v - l - km1) + 1
        w = u + 1
        n = w.bit_length() - 1
        lengths.append(n)
        rest = w - (1 << n)
        for start in range(0, n, _CHUNK):
            b = min(_CHUNK, n - start)
            chunks.append((rest >> start) & ((1 << b) - 1))
            sizes.append(1 << b)
    return (np.asarray(lengths, np.int32), np.asarray(chunks, np.int32),
            np.asarray(sizes, np.int32))


def _length_model():
    probs = 0.5 ** (np.arange(_MAX_ESCAPE_BITS, dtype=np.float64) + 1)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _decode_escapes(coder, lo: np.ndarray, k_minus_1: np.ndarray) -> np.ndarray:
    e = len(lo)
    if e == 0:
        return np.zeros(0, np.int64)
    n = np.asarray(coder.decode(_length_model(), e), np.int64)
    sizes, owners = [], []
    for i, ni in enumerate(n.tolist()):
        for start in range(0, ni, _CHUNK):
            sizes.append(1 << min(_CHUNK, ni - start))
            owners.append(i)
    chunks = (np.asarray(coder.decode(constriction.stream.model.Uniform(),
                                      np.asarray(sizes, np.int32)), np.int64)
              if sizes else np.zeros(0, np.int64))
    out = np.zeros(e, np.int64)
    ci = 0
    for i, (ni, l, km1) in enumerate(zip(n.tolist(), lo.tolist(), k_minus_1.tolist())):
        rest = 0
        for start in range(0, ni, _CHUNK):
            rest |= int(chunks[ci]) << start
            ci += 1
        u = (1 << ni) + rest - 1
        v = l - (u + 2) // 2 if u % 2 == 0 else l + km1 + (u - 1) // 2
        if not -(1 << 63) <= v < (1 << 63):
            raise CodingError("Decoded an escaped value outside int64: the data is corrupt.")
        out[i] = v
    return out


# ---------------------------------------------------------------------------------------------
# Helpers


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


def _to_bytes(coder) -> bytes:
    return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


def _from_bytes(data) -> "constriction.stream.stack.AnsCoder":
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"Compressed data must be bytes, got {type(data).__name__}.")
    if len(data) % 4:
        raise CodingError(f"Compressed stream has {len(data)} bytes, not a multiple of 4: it is "
                          "truncated or corrupt.")
    words = np.frombuffer(bytes(data), dtype="<u4").astype(np.uint32)
    try:
        return constriction.stream.stack.AnsCoder(words)
    except Exception as e:  # noqa: BLE001
        raise CodingError(f"Compressed stream is corrupt ({e}).") from e


def _finish(coder):
    if not coder.is_empty():
        raise CodingError("Compressed stream was not consumed exactly: the data is corrupt, "
                          "truncated, or was decoded with different tables than it was encoded with.")


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
    esc = (values < lo) | (values >= lo + km1)  # no subtraction of values: cannot wrap
    sym = np.where(esc, km1, values - np.where(esc, 0, lo))

    coder = constriction.stream.stack.AnsCoder()
    if np.any(esc):
        nb, chunks, sizes = _escape_payload(values[esc], lo[esc], km1[esc])
        if len(chunks):
            coder.encode_reverse(chunks, constriction.stream.model.Uniform(), sizes)
        coder.encode_reverse(nb, _length_model())
    order = np.argsort(table_index, kind="stable")
    ti_sorted = table_index[order]
    groups = np.flatnonzero(np.diff(ti_sorted)) + 1
    starts = np.concatenate([[0], groups])
    ends = np.concatenate([groups, [n]])
    for s, e in zip(starts[::-1], ends[::-1]):
        j = ti_sorted[s]
        model = constriction.stream.model.Categorical(
            tables[j, :lengths[j]].astype(np.float64), perfect=False)
        coder.encode_reverse(sym[order[s:e]].astype(np.int32), model)
    return _to_bytes(coder)


def decode_indexed(data, tables, offsets, table_index, *, lengths=None) -> np.ndarray:
    """Inverse of `encode_indexed` (same tables, offsets, table_index, lengths) -> int64 [n]."""
    tables, lengths = _check_tables(tables, lengths)
    m = tables.shape[0]
    offsets = _as_int64("offsets", offsets, m)
    table_index = _as_int64("table_index", table_index)
    n = table_index.shape[0]
    if n == 0:
        if len(data):
            raise CodingError("Expected an empty stream for zero symbols.")
        return np.zeros(0, np.int64)
    if table_index.min() < 0 or table_index.max() >= m:
        raise ValueError(f"table_index must lie in [0, {m}).")
    coder = _from_bytes(data)
    try:
        order = np.argsort(table_index, kind="stable")
        ti_sorted = table_index[order]
        groups = np.flatnonzero(np.diff(ti_sorted)) + 1
        starts = np.concatenate([[0], groups])
        ends = np.concatenate([groups, [n]])
        sym = np.empty(n, np.int64)
        for s, e in zip(starts, ends):
            j = ti_sorted[s]
            model = constriction.stream.model.Categorical(
                tables[j, :lengths[j]].astype(np.float64), perfect=False)
            sym[order[s:e]] = coder.decode(model, int(e - s))
        lo = offsets[table_index]
        km1 = lengths[table_index] - 1
        out = sym + lo
        esc = sym == km1
        if np.any(esc):
            out[esc] = _decode_escapes(coder, lo[esc], km1[esc])
    except CodingError:
        raise
    except Exception as e:  # noqa: BLE001  (constriction raises on inconsistent streams)
        raise CodingError(f"Compressed stream is corrupt ({e}).") from e
    _finish(coder)
    return out


# ---------------------------------------------------------------------------------------------
# One table per symbol


def _check_pmfs(pmfs, n):
    p = np.asarray(pmfs)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2:
        raise ValueError(f"pmfs must be int [n={n}, K>=2], got shape {p.shape}.")
    if np.any(p < 1):
        raise ValueError("pmfs must be quantized with quantize_pmf (every entry >= 1).")
    return p.astype(np.float64)


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
    p = _check_pmfs(pmfs, n)
    km1 = np.full(n, p.shape[1] - 1, np.int64)
    esc = (values < offsets) | (values >= offsets + km1)
    sym = np.where(esc, km1, values - np.where(esc, 0, offsets))
    coder = constriction.stream.stack.AnsCoder()
    if np.any(esc):
        nb, chunks, sizes = _escape_payload(values[esc], offsets[esc], km1[esc])
        if len(chunks):
            coder.encode_reverse(chunks, constriction.stream.model.Uniform(), sizes)
        coder.encode_reverse(nb, _length_model())
    coder.encode_reverse(sym.astype(np.int32), constriction.stream.model.Categorical(perfect=False), p)
    return _to_bytes(coder)


def decode_per_symbol(data, pmfs, offsets) -> np.ndarray:
    """Inverse of `encode_per_symbol` -> int64 [n]."""
    offsets = _as_int64("offsets", offsets)
    n = offsets.shape[0]
    if n == 0:
        if len(data):
            raise CodingError("Expected an empty stream for zero symbols.")
        return np.zeros(0, np.int64)
    p = _check_pmfs(pmfs, n)
    coder = _from_bytes(data)
    try:
        sym = np.asarray(coder.decode(constriction.stream.model.Categorical(perfect=False), p),
                         np.int64)
        km1 = np.full(n, p.shape[1] - 1, np.int64)
        out = sym + offsets
        esc = sym == km1
        if np.any(esc):
            out[esc] = _decode_escapes(coder, offsets[esc], km1[esc])
    except CodingError:
        raise
    except Exception as e:  # noqa: BLE001
        raise CodingError(f"Compressed stream is corrupt ({e}).") from e
    _finish(coder)
    return out
