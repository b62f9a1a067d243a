"""Prefix-free coding of channel-simulation indices with a truncated Zipf distribution.

PFR returns an index whose 1-based value ``k = K + 1`` satisfies ``E[log2 k] <= C + log2(e)/e + 1``
(Li & El Gamal 2018), with C the KL in bits.  We code k with ``P(k) ∝ k^-lam`` on ``[1, N]``,
``lam = 1 + 1 / (C + log2(e)/e + 1)``, which gives ``E[-log2 P(k)] <= C + log2(C + 2.53) + 2.53`` bits
(+ < 0.1 bit of table quantization) - within Eq. (12)'s ``C + log2(C + 2) + 3`` for C >= 0.

Entropy coding (gencomp_jax.entropy.coder, tables of <= 2**15 entries): k is split into its
exponent ``e = floor(log2 k)`` (table = Zipf mass of each octave), the top ``min(e, 8)`` mantissa bits
(table = Zipf mass of each sub-octave) and the remaining mantissa bits (uniform, in 8-bit pieces;
the Zipf density varies by < 0.3% inside a sub-octave, so this loses < 0.01 bit).  Three streams,
each prefixed with its byte length (varint).

Per-step KL values of chunked Gaussian simulation are sent as varints of ``quantize_kl(kl)``
(1/8-bit units) ahead of the index streams, so the decoder rebuilds every chunk plan and Zipf table.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import special

from gencomp_jax.channel.pfr import RENYI_MARGIN_BITS, GaussianChannelCode, plan_chunks
from gencomp_jax.entropy import coder as _coder
from gencomp_jax.entropy.varint import VarintError, read_varint, write_varint

__all__ = [
    "zipf_exponent",
    "index_code_length_bits",
    "encode_indices",
    "decode_indices",
    "encode_gaussian_codes",
    "decode_gaussian_codes",
]

LOG2E_OVER_E = math.log2(math.e) / math.e
UNBOUNDED_LOG2 = 48  # "no limit" on the number of candidates: octaves up to 2**48 (escape beyond)
_TOP = 8


def zipf_exponent(kl_bits):
    """lam = 1 + 1 / (C + log2(e)/e + 1) (array-friendly)."""
    c = np.maximum(np.asarray(kl_bits, np.float64), 0.0)
    return 1.0 + 1.0 / (c + LOG2E_OVER_E + 1.0)


def _sum_pow(lam, a, b):
    """sum_{k=a}^{b} k^-lam (float64 arrays; b may be inf)."""
    hi = np.where(np.isfinite(b), special.zeta(lam, np.where(np.isfinite(b), b, 1.0) + 1.0), 0.0)
    return np.maximum(special.zeta(lam, a) - hi, 0.0)


def _limits(num_candidates, n):
    if num_candidates is None:
        nmax = np.full(n, np.inf)
    else:
        nmax = np.broadcast_to(np.asarray(num_candidates, np.float64), (n,)).copy()
        if np.any(nmax < 1):
            raise ValueError("num_candidates must be >= 1")
    emax = np.where(np.isfinite(nmax), np.floor(np.log2(np.where(np.isfinite(nmax), nmax, 1.0))), UNBOUNDED_LOG2)
    return nmax, emax.astype(np.int64)


def index_code_length_bits(indices, kl_bits, num_candidates=None):
    """Ideal code length -log2 P(K + 1) in bits under the truncated Zipf model (float64 [n])."""
    k = np.asarray(indices, np.float64).ravel() + 1.0
    lam = np.broadcast_to(zipf_exponent(kl_bits), k.shape)
    nmax, _ = _limits(num_candidates, k.shape[0])
    z = _sum_pow(lam, 1.0, nmax)
    return lam * np.log2(k) + np.log2(z)


def _stage_tables(lam, nmax, emax, e=None):
    """Exponent tables [n, E+2] (last column: escape) or, given e, sub-octave tables [n, 2^8 + 1]."""
    n = lam.shape[0]
    if e is None:
        width = int(emax.max()) + 1
        ee = np.arange(width, dtype=np.float64)[None, :]
        a = 2.0 ** ee
        b = np.minimum(2.0 ** (ee + 1) - 1, nmax[:, None])
        m = np.where(ee <= emax[:, None], _sum_pow(lam[:, None], a, b), 0.0)
        return np.concatenate([m, np.zeros((n, 1))], axis=1)
    top = np.minimum(e, _TOP)
    step = 2.0 ** (e - top)
    j = np.arange(1 << _TOP, dtype=np.float64)[None, :]
    a = 2.0 ** e[:, None] + j * step[:, None]
    b = np.minimum(a + step[:, None] - 1, nmax[:, None])
    valid = (j < 2.0 ** top[:, None]) & (a <= nmax[:, None])
    m = np.where(valid, _sum_pow(lam[:, None], a, np.maximum(b, a)), 0.0)
    return np.concatenate([m, np.zeros((n, 1))], axis=1)


def _q(p):
    p = np.where(p.sum(1, keepdims=True) > 0, p, 1.0)
    return _coder.quantize_pmf(p)


def _uniform_tables(rest):
    """Uniform tables for the low mantissa bits, 8 bits per piece (the last piece may be shorter)."""
    bits = [min(8, r - s) for r in np.asarray(rest).tolist() for s in range(0, r, 8)]
    t = (np.arange(257)[None, :] < (1 << np.asarray(bits, np.int64))[:, None]).astype(np.float64)
    return _q(t)


def _read_varint(data: bytes, pos: int):
    """read_varint with the channel's error type: a cut or malformed varint is a CodingError."""
    try:
        return read_varint(data, pos)
    except VarintError as e:
        raise _coder.CodingError(f"index stream is truncated or corrupt ({e})") from e


def encode_indices(indices, kl_bits, num_candidates=None) -> bytes:
    """Code 0-based indices (int [n]) with Zipf(lam(kl_bits)) truncated to num_candidates (None: unbounded).

    kl_bits, num_candidates: scalars or [n].  Returns bytes (prefix-free as a whole: the decoder
    needs n and the same kl_bits / num_candidates).
    """
    idx = np.asarray(indices, np.int64).ravel()
    n = idx.shape[0]
    if np.any(idx < 0):
        raise ValueError("indices must be >= 0")
    lam = np.broadcast_to(zipf_exponent(kl_bits), (n,)).astype(np.float64)
    nmax, emax = _limits(num_candidates, n)
    if np.any(idx + 1 > nmax):
        raise ValueError("an index is >= num_candidates")
    k = idx + 1
    e = np.array([int(v).bit_length() - 1 for v in k], np.int64)
    if np.any(e > emax):
        raise ValueError(f"index beyond 2**{UNBOUNDED_LOG2} cannot be coded")
    s1 = _coder.encode_per_symbol(e, _q(_stage_tables(lam, nmax, emax)), np.zeros(n, np.int64)) if n else b""
    sel = e > 0
    top = np.minimum(e[sel], _TOP)
    rest = e[sel] - top
    mant = k[sel] - (np.int64(1) << e[sel])
    j = mant >> rest
    s2 = (_coder.encode_per_symbol(j, _q(_stage_tables(lam[sel], nmax[sel], emax[sel], e[sel])),
                                   np.zeros(j.shape[0], np.int64)) if j.shape[0] else b"")
    pieces = []
    for low, r in zip((mant & ((np.int64(1) << rest) - 1)).tolist(), rest.tolist()):
        for s in range(0, r, 8):
            pieces.append((low >> s) & 0xFF)
    pieces = np.asarray(pieces, np.int64)
    s3 = (_coder.encode_per_symbol(pieces, _uniform_tables(rest), np.zeros(pieces.shape[0], np.int64))
          if pieces.shape[0] else b"")
    return b"".join(write_varint(len(s)) + s for s in (s1, s2, s3))


def decode_indices(data: bytes, n: int, kl_bits, num_candidates=None, *, return_pos: bool = False):
    """Inverse of :func:`encode_indices` -> int64 [n] (and the end position if return_pos)."""
    lam = np.broadcast_to(zipf_exponent(kl_bits), (n,)).astype(np.float64)
    nmax, emax = _limits(num_candidates, n)
    pos, blobs = 0, []
    for _ in range(3):
        size, pos = _read_varint(data, pos)
        if pos + size > len(data):
            raise _coder.CodingError("index stream is truncated")
        blobs.append(data[pos: pos + size])
        pos += size
    if n == 0:
        return (np.zeros(0, np.int64), pos) if return_pos else np.zeros(0, np.int64)
    e = _coder.decode_per_symbol(blobs[0], _q(_stage_tables(lam, nmax, emax)), np.zeros(n, np.int64))
    if np.any(e < 0) or np.any(e > emax):
        raise _coder.CodingError("index exponent out of range: corrupt data or mismatched KL")
    sel = e > 0
    top = np.minimum(e[sel], _TOP)
    rest = e[sel] - top
    j = (_coder.decode_per_symbol(blobs[1], _q(_stage_tables(lam[sel], nmax[sel], emax[sel], e[sel])),
                                  np.zeros(int(sel.sum()), np.int64)) if sel.any() else np.zeros(0, np.int64))
    npieces = int(sum((r + 7) // 8 for r in rest.tolist()))
    pieces = (_coder.decode_per_symbol(blobs[2], _uniform_tables(rest), np.zeros(npieces, np.int64))
              if npieces else np.zeros(0, np.int64))
    lows, p = [], 0
    for r in rest.tolist():
        v = 0
        for s in range(0, r, 8):
            v |= int(pieces[p]) << s
            p += 1
        lows.append(v)
    k = np.ones(n, np.int64)
    k[sel] = (np.int64(1) << e[sel]) + (j << rest) + np.asarray(lows, np.int64)
    if np.any(k > nmax):
        raise _coder.CodingError("decoded index exceeds the number of candidates: corrupt data")
    return (k - 1, pos) if return_pos else k - 1


def encode_gaussian_codes(codes: Sequence[GaussianChannelCode], dims: Sequence[int], *,
                          max_chunk_bits: int = 16, padding_bits: int | None = None,
                          margin_bits: float = RENYI_MARGIN_BITS) -> bytes:
    """Serialise the codes of several steps: varint KLs, then all chunk indices (Zipf-coded)."""
    if len(codes) != len(dims):
        raise ValueError("need one dimension per step")
    head = b"".join(write_varint(c.kl_q) for c in codes)
    idx, kls, ns = [], [], []
    for c, d in zip(codes, dims):
        plan = plan_chunks(c.kl_q, d, max_chunk_bits=max_chunk_bits, padding_bits=padding_bits, margin_bits=margin_bits)
        if np.asarray(c.indices).shape != (plan.num_chunks,):
            raise ValueError("code does not match its chunk plan")
        idx.append(np.asarray(c.indices, np.int64))
        kls.append(plan.chunk_kl_bits)
        ns.append(np.full(plan.num_chunks, float(1 << plan.log2_candidates)))
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
    return head + encode_indices(cat(idx).astype(np.int64), cat(kls), cat(ns))


def decode_gaussian_codes(data: bytes, dims: Sequence[int], *, max_chunk_bits: int = 16,
                          padding_bits: int | None = None, margin_bits: float = RENYI_MARGIN_BITS) -> list:
    """Inverse of :func:`encode_gaussian_codes` -> list of GaussianChannelCode (one per step)."""
    pos, plans = 0, []
    for d in dims:
        kl_q, pos = _read_varint(data, pos)
        plans.append(plan_chunks(kl_q, d, max_chunk_bits=max_chunk_bits, padding_bits=padding_bits,
                                 margin_bits=margin_bits))
    kls = np.concatenate([p.chunk_kl_bits for p in plans]) if plans else np.zeros(0)
    ns = np.concatenate([np.full(p.num_chunks, float(1 << p.log2_candidates)) for p in plans]) if plans else kls
    idx, end = decode_indices(data[pos:], kls.shape[0], kls, ns, return_pos=True)
    if pos + end != len(data):
        raise _coder.CodingError("trailing bytes after the index streams")
    out, o = [], 0
    for p in plans:
        out.append(GaussianChannelCode(p.kl_q, idx[o: o + p.num_chunks]))
        o += p.num_chunks
    return out
