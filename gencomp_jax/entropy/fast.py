"""Fast per-symbol entropy coding: one ANS stream of segments, native quantized Gaussians, escapes.

Complements :mod:`gencomp_jax.entropy.coder` (which quantizes tables with ``quantize_pmf`` in numpy;
that quantization, an argsort per row, dominates the cost of coding ~10^6 symbols with per-symbol
tables: ~0.8 s per 65 536 rows of 66 entries).  Here the models are handed to constriction directly:

* :meth:`StreamEncoder.quantized_gaussian` - constriction's native ``QuantizedGaussian`` (per-symbol
  mean/std, 24-bit leaky quantization done in Rust; no table at all);
* :meth:`StreamEncoder.categorical` - per-symbol float tables ``[n, K]`` given to constriction's
  ``Categorical(perfect=False)``, which quantizes them to 24 bits itself (leaky: every entry gets
  nonzero mass, zeros included).

Both are deterministic functions of their float inputs, so encoder and decoder agree as long as they
pass bit-identical mean/std/tables (build them with the same code from the same float inputs).

Escapes (any int64 value is codable).  ``quantized_gaussian(symbols, ..., half_width=H)`` codes
``s`` in ``(-H, H)`` directly; ``s <= -H`` is sent as symbol ``-H`` plus the overflow ``-H - s``,
``s >= H`` as ``H`` plus ``s - H``.  ``categorical(symbols, probs, offset)`` codes ``s - offset`` in
``[0, K - 2]`` directly; anything else as symbol ``K - 1`` plus the zig-zag overflow
``u = 2 (offset - s) - 2`` (below) or ``2 (s - offset - K + 1) + 1`` (above).  An overflow ``u >= 0``
is Elias-gamma coded: the bit length ``n`` of ``u + 1`` minus one with probability ``2^-(n+1)``, then
the ``n`` low bits of ``u + 1`` in chunks of at most 16 bits.

Stream layout (decoding order): segment 1 main symbols, segment 1 escapes (lengths, chunks), segment 2
... ; the encoder buffers segments and writes them in reverse (ANS is a stack).
"""

from __future__ import annotations

import numpy as np

import constriction

from gencomp_jax.entropy.coder import CodingError

__all__ = ["StreamEncoder", "StreamDecoder"]

_MAX_LEN = 64  # escape bit lengths n in [0, 63]
_CHUNK = 16
_MAX_CHUNKS = 4  # 4 x 16 bits >= 63 bits


def _length_model():
    probs = 0.5 ** (np.arange(_MAX_LEN, dtype=np.float64) + 1)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _escape_ops(u: np.ndarray):
    """u int64 [e] >= 0 -> list of (symbols, model, extra args) in DECODING order."""
    w = u.astype(np.uint64) + np.uint64(1)
    n = np.zeros(u.shape, np.int64)
    t = w.copy()
    for b in (32, 16, 8, 4, 2, 1):  # floor(log2 w), vectorised
        big = t >= (np.uint64(1) << np.uint64(b))
        n += big * b
        t = np.where(big, t >> np.uint64(b), t)
    rest = w - (np.uint64(1) << n.astype(np.uint64))
    ops = [(n.astype(np.int32), _length_model(), ())]
    for c in range(_MAX_CHUNKS):
        sel = n > _CHUNK * c
        if not np.any(sel):
            break
        bits = np.minimum(_CHUNK, n[sel] - _CHUNK * c)
        sym = (rest[sel] >> np.uint64(_CHUNK * c)) & ((np.uint64(1) << bits.astype(np.uint64)) - np.uint64(1))
        ops.append((sym.astype(np.int32), constriction.stream.model.Uniform(), ((1 << bits).astype(np.int32),)))
    return ops


def _decode_escapes(coder, e: int) -> np.ndarray:
    if e == 0:
        return np.zeros(0, np.int64)
    n = np.asarray(coder.decode(_length_model(), e), np.int64)
    rest = np.zeros(e, np.uint64)
    for c in range(_MAX_CHUNKS):
        sel = n > _CHUNK * c
        if not np.any(sel):
            break
        bits = np.minimum(_CHUNK, n[sel] - _CHUNK * c)
        sym = np.asarray(coder.decode(constriction.stream.model.Uniform(), (1 << bits).astype(np.int32)), np.uint64)
        rest[sel] |= sym << np.uint64(_CHUNK * c)
    w = rest + (np.uint64(1) << n.astype(np.uint64))
    if np.any(n >= 63):
        raise CodingError("Decoded an escape overflow beyond int64: the data is corrupt.")
    return (w - np.uint64(1)).astype(np.int64)


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
    """Collects segments; :meth:`finish` returns the bytes (a multiple of 4; empty if nothing coded)."""

    def __init__(self):
        self._ops = []  # decoding order: (symbols int32, model, args)

    def quantized_gaussian(self, symbols, mean, std, *, half_width: int) -> None:
        """symbols int [n] (any int64); mean, std float [n] (std > 0) in units of the integer grid."""
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
            u = np.where(lo, -h - s, s - h)[esc]
            self._ops.extend(_escape_ops(u))

    def categorical(self, symbols, probs, *, offset: int = 0) -> None:
        """symbols int [n]; probs float [n, K] (last column = escape mass); codes s - offset."""
        s = np.asarray(symbols, np.int64).reshape(-1)
        n = s.shape[0]
        if n == 0:
            return
        p = _probs(probs, n)
        km1 = p.shape[1] - 1
        lo, hi = s < offset, s >= offset + km1
        esc = lo | hi
        self._ops.append((np.where(esc, km1, s - offset).astype(np.int32),
                          constriction.stream.model.Categorical(perfect=False), (p,)))
        if np.any(esc):
            u = np.where(lo, 2 * (offset - s) - 2, 2 * (s - offset - km1) + 1)[esc]
            self._ops.extend(_escape_ops(u))

    def finish(self) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        for sym, model, args in reversed(self._ops):
            coder.encode_reverse(sym, model, *args)
        self._ops = []
        return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()


class StreamDecoder:
    """Decodes the segments of :class:`StreamEncoder` in the same order, with the same models."""

    def __init__(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Compressed data must be bytes, got {type(data).__name__}.")
        if len(data) % 4:
            raise CodingError(f"Compressed stream has {len(data)} bytes, not a multiple of 4: it is "
                              "truncated or corrupt.")
        words = np.frombuffer(bytes(data), dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except BaseException as e:  # noqa: BLE001  (constriction may raise or panic)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise CodingError(f"Compressed stream is corrupt ({e}).") from e

    def _guard(self, fn):
        try:
            return fn()
        except CodingError:
            raise
        except BaseException as e:  # noqa: BLE001
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
            lo, hi = s == -h, s == h
            esc = lo | hi
            if np.any(esc):
                u = _decode_escapes(self._coder, int(esc.sum()))
                s[esc] = np.where(lo[esc], -h - u, h + u)
            return s
        return self._guard(run)

    def categorical(self, probs, *, offset: int = 0) -> np.ndarray:
        p = np.asarray(probs)
        n = p.shape[0] if p.ndim == 2 else -1
        if n == 0:
            return np.zeros(0, np.int64)
        p = _probs(p, n)
        km1 = p.shape[1] - 1

        def run():
            s = np.asarray(self._coder.decode(constriction.stream.model.Categorical(perfect=False), p), np.int64)
            esc = s == km1
            out = s + offset
            if np.any(esc):
                u = _decode_escapes(self._coder, int(esc.sum()))
                out[esc] = np.where(u % 2 == 0, offset - (u + 2) // 2, offset + km1 + (u - 1) // 2)
            return out
        return self._guard(run)

    def finish(self) -> None:
        """Raises CodingError unless the stream was consumed exactly."""
        if not self._coder.is_empty():
            raise CodingError("Compressed stream was not consumed exactly: the data is corrupt, "
                              "truncated, or was decoded with different models than it was encoded with.")
