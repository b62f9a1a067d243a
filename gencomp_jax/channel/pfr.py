"""Poisson functional representation (PFR) and chunked Gaussian channel simulation.

Review Sec. II-C, Eqs. (11)-(13); Li's monograph Ch. 3.3; DiffC (Vonderfecht & Liu) for chunking.

Three layers:

* :func:`pfr_exact_encode` - exact PFR for a target ``q`` and reference ``p`` with a bounded density
  ratio ``q/p <= exp(log_ratio_max)``: candidates ``Y_i ~ p`` with Poisson arrival times
  ``T_1 < T_2 < ...``; the encoder sends ``K = argmin_i T_i / (q/p)(Y_i)`` and stops as soon as
  ``T_i / exp(log_ratio_max)`` exceeds the best score (no later candidate can win).  ``Y_K ~ q`` exactly.
* :func:`pfr_gaussian_chunk_encode` - finite-candidate PFR / ordered random coding with
  ``N = 2**log2_candidates`` candidates for ``q = N(mu, I)`` vs ``p = N(0, I)`` (unbounded ratio).
  Arrival times are the sorted order statistics of N iid Exp(1) (Renyi representation), so the
  selected candidate is exactly a draw from the categorical ``w_i / sum_j w_j`` over the N
  candidates (= minimal random coding), while small indices stay more likely (Zipf-coded index).
  The law of the output differs from ``q`` by an amount that decays with ``log2 N - KL``
  ("padding"); see ``benchmarks/channel.py`` and the tests for the measured distance.
* :func:`gaussian_channel_encode` / :func:`gaussian_channel_decode` - a high-dimensional channel
  ``N(mu_q, sigma^2 I)`` vs ``N(mu_p, sigma^2 I)`` normalised to ``N(mu, I)`` vs ``N(0, I)``,
  ``KL bits = 0.5 ||mu||^2 / ln 2``, split into chunks (reproducible shuffle of the dimensions), every
  chunk with at least one dimension; :func:`plan_chunks` sets the chunk budgets and N.

How many candidates (the "padding").  Finite-N PFR is self-normalised importance resampling with
weights ``w = q/p``; its error is governed by ``E_p[w^2] = 2**D_2`` (the Renyi-2 / chi^2 divergence),
not by the KL: the bias of the selected sample is ~ ``(2**D_2 - 1) / N``.  For Gaussian chunks
``D_2 = ||mu||^2 nats = 2 KL``.  So the default rule is ``log2 N = ceil(2 KL_chunk + m)`` with margin
``m = RENYI_MARGIN_BITS = 8`` and ``N <= 2**max_chunk_bits`` (16), i.e. chunks of at most
``(16 - 8) / 2 = 4`` bits.  DiffC's rule ``log2 N = ceil(KL_chunk + 2)`` (chunks <= 14 bits) stays
available as ``padding_bits=DIFFC_PADDING_BITS``; its bias grows with the chunk's KL.

Measured (10^4 draws each, fixed seeds, candidates of format 1; `benchmarks/results/channel.json` "padding" holds the
same table re-measured with today's candidates, same picture; bias = mean of the component along mu in units of sigma,
standard error 0.01; KS p-value of that component against N(0, 1); ``benchmarks/channel.py``):

  KL   rule            log2 N   bias 1-D  (KS p)     bias 2-D  (KS p)
  1    KL + 0            1      -0.78  (0)           -0.80  (0)
  1    KL + 1            2      -0.51  (0)           -0.50  (0)
  1    KL + 2 (DiffC)    3      -0.32  (0)           -0.30  (0)
  1    2KL + 2           4      -0.19  (0)           -0.19  (0)
  1    KL + 4            5      -0.11  (3e-17)       -0.12  (1e-22)
  1    2KL + 4           6      -0.049 (7e-6)        -0.069 (3e-8)
  1    2KL + 6           8      -0.024 (0.015)       -0.038 (2e-4)
  1    KL + 8            9      -0.010 (0.44)        -0.005 (0.37)
  1    2KL + 8 default  10      +0.004 (0.47)        -0.003 (0.43)
  2    2KL + 2           6      -0.17  (0)           -0.19  (0)
  2    2KL + 4           8      -0.087 (6e-10)       -0.075 (2e-11)
  2    2KL + 6          10      -0.011 (0.019)       -0.018 (0.12)
  2    2KL + 8 default  12      -0.014 (0.40)        -0.012 (0.72)
  4    KL + 2 (DiffC)    6      -0.53  (0)
  4    2KL + 2          10      -0.135 (3e-31)
  4    2KL + 4          12      -0.062 (2e-6)
  (means over 3 further seeds at KL = 1: 2KL + 6: -0.018 / -0.014; KL + 8: -0.004 / -0.004;
   2KL + 8: -0.009 / -0.008, s.e. of each mean 0.006)

At a fixed margin m the bias grows only like |mu| = sqrt(2 KL ln 2): to first order in 1/N the selected
sample's mean along mu is shifted by -E_q[(s - |mu|) w] / N = -|mu| e^{|mu|^2} / N = -|mu| 2^-m sigma (s the
component along mu, w = q/p; e^{|mu|^2} = 2^{2 KL} is the Renyi-2 term), while at a fixed padding p it grows
like 2^KL.  Measured at m = 8 (3 seeds x 10^4 draws each, session 5): KL 2 / 3 / 4 bits -> -0.016 / -0.013 /
-0.015 sigma (first order: -0.007 / -0.008 / -0.009), i.e. |bias| <~ 0.02 sigma, one to two standard errors
at 10^4 samples; ``tests/channel/test_channel_pfr.py`` asserts
KS p > 0.01 and |bias| < 3 s.e. in 1-D and 2-D, and that padding 0 and DiffC's 2 bits are detected.
Cost of the default versus DiffC's: chunks of <= 4 instead of <= 14 bits, so ~3.5x as many chunks at
high KL (each up to 2^16 candidates: ~3.5x the compute) and an index-code overhead of
``log2(B + 2.53) + 2.53`` bits per chunk of budget B: ~2.31 bits per KL bit instead of ~1.47 when
chunks are full (see ``benchmarks/results/channel.json``, "chunked").

Candidates are generated in vectorised blocks under ``jit`` (``lax.fori_loop`` over blocks): entries
2j, 2j + 1 of Gaussian candidate i are the two output words of threefry2x32(chunk key, counter (i, j))
(``gaussian_candidates``), so a decoder regenerating candidate ``i`` alone obtains exactly the candidate
the encoder scored, and no ``index * dim`` offset exists to overflow.  Decoding never re-runs the search:
bit-level float differences in the encoder's scores cannot desynchronise the two sides.  (So the encoder
may score with a faster erfinv than the one that makes the candidates: ``_std_normal_scoring``.)

Speed.  The encoder's cost of a step is ``sum_c N_c d_c`` standard normals: ``2**max_chunk_bits x dim`` for
any step whose KL saturates its chunks (most steps of an image), whatever the KL; with the default rule
(16-bit chunks) that is 8 * 10^8 normals for a 64x64 RGB step.  One step's chunks are searched by one
jitted call (``_search_rows``; rows of 8 entries, a few programs per image size whatever the KLs) whose
loop computes hash, uniforms, scoring normals and row sums of a block together, so the time is that of
the normals: ~1.9 ns each on the shared 2-core EPYC (quiet; 12288 dims, 400 bits: Renyi 16-bit chunks
1.57 s per step, was 3.05 s with JAX's threefry primitive and 15 s with 101 per-chunk calls; decode
0.005 s; ``benchmarks/diffc.py`` "channel_step").  The cheap settings trade bits or bias for candidates:
``max_chunk_bits=14`` (3-bit chunks, the same margin and bias, 4x fewer candidates: runlocal's setting),
``max_chunk_bits=12, margin_bits=4`` (same 4-bit chunks, 16x fewer candidates, bias ~0.06-0.09 sigma per
chunk) or DiffC's rule at 12 bits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.channel.randomness import (
    PURPOSE_PFR,
    PURPOSE_SHUFFLE,
    SharedRandomness,
    candidate_keys,
)

__all__ = [
    "KL_QUANT",
    "RENYI_MARGIN_BITS",
    "DIFFC_PADDING_BITS",
    "ChunkPlan",
    "GaussianChannelCode",
    "plan_chunks",
    "quantize_kl",
    "gaussian_kl_bits",
    "pfr_exact_encode",
    "pfr_exact_decode",
    "pfr_gaussian_chunk_encode",
    "gaussian_candidate",
    "gaussian_candidates",
    "gaussian_channel_encode",
    "gaussian_channel_decode",
]

LN2 = math.log(2.0)
KL_QUANT = 8  # per-step KL is sent in units of 1/KL_QUANT bit (rounded up)
MAX_LOG2_CANDIDATES = 31  # candidate indices are uint32 counters; keep a margin
RENYI_MARGIN_BITS = 8  # default: log2 N = ceil(2 KL_chunk + 8) (see the module docstring's table)
DIFFC_PADDING_BITS = 2  # DiffC's setting: log2 N = ceil(KL_chunk + 2); pass padding_bits=DIFFC_PADDING_BITS
_BLOCK_ELEMS = 2**19  # candidates * dims generated per block (~2 MiB float32; faster than 2**17 or 2**21 here)


def _sample_key(key):
    return jax.random.fold_in(key, 0)


def _arrival_key(key):
    return jax.random.fold_in(key, 1)


# ----------------------------------------------------------------------------------------------
# exact PFR for bounded ratios


def pfr_exact_encode(
    key: jax.Array,
    *,
    sample_fn: Callable[[jax.Array], jax.Array],
    log_ratio_fn: Callable[[jax.Array], jax.Array],
    log_ratio_max: float,
    block_size: int = 256,
    max_candidates: int = 2**30,
):
    """Exact PFR with early stopping for a bounded density ratio.

    Args:
      key: shared key for this simulation (e.g. ``SharedRandomness.key(PURPOSE_PFR, step, chunk)``).
      sample_fn: ``key -> y`` draws one candidate from the reference ``p`` (any fixed shape).
      log_ratio_fn: ``y -> log(q(y)/p(y))`` (natural log; ``-inf`` where q = 0), for one candidate.
      log_ratio_max: an upper bound of ``log(q/p)`` (natural log).  If it is violated the output
        is biased, so it is required (use :func:`pfr_gaussian_chunk_encode` for Gaussians).
      block_size: candidates scored per vectorised block.
      max_candidates: safety cap; hitting it raises (the ratio bound must be wrong or KL huge).

    Returns:
      (index, sample, num_examined): 0-based index K, ``Y_K`` and the number of candidates scored.
      Code the index with :func:`gencomp_jax.channel.index_coding.encode_indices` (``K + 1`` is
      Zipf-like with exponent set by the KL).
    """
    if not math.isfinite(float(log_ratio_max)):
        raise ValueError("log_ratio_max must be finite; for unbounded ratios use finite-N PFR")
    idx, n = _pfr_exact_search(key, sample_fn, log_ratio_fn, float(log_ratio_max), int(block_size),
                               int(max_candidates))
    idx, n = int(idx), int(n)
    if idx < 0:
        raise RuntimeError(
            f"exact PFR found no candidate with positive ratio among {n} candidates; check that q is "
            "absolutely continuous w.r.t. p and that max_candidates is large enough")
    return idx, pfr_exact_decode(key, idx, sample_fn=sample_fn), n


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _pfr_exact_search(key, sample_fn, log_ratio_fn, log_ratio_max, block, max_candidates):
    skey, akey = _sample_key(key), _arrival_key(key)

    def score_block(b, t0):
        start = b * block
        ys = jax.vmap(sample_fn)(candidate_keys(skey, start, block))
        lr = jax.vmap(log_ratio_fn)(ys)
        e = jax.vmap(lambda k: jax.random.exponential(k, (), jnp.float32))(candidate_keys(akey, start, block))
        t = t0 + jnp.cumsum(e)
        score = jnp.where(jnp.isfinite(lr), jnp.log(t) - lr, jnp.inf)
        j = jnp.argmin(score)
        return score[j], start + j, t[-1]

    def cond(s):
        b, t0, best, _ = s
        # every later candidate has score >= log(t0) - log_ratio_max
        return (jnp.log(t0) - log_ratio_max < best) & (b * block < max_candidates)

    def body(s):
        b, t0, best, best_i = s
        sc, i, t_last = score_block(b, t0)
        better = sc < best
        return b + 1, t_last, jnp.where(better, sc, best), jnp.where(better, i, best_i)

    init = (jnp.int32(0), jnp.float32(0.0), jnp.float32(jnp.inf), jnp.int32(-1))
    b, _, best, best_i = jax.lax.while_loop(cond, body, init)
    return jnp.where(jnp.isfinite(best), best_i, -1), b * block


def pfr_exact_decode(key: jax.Array, index: int, *, sample_fn):
    """Regenerate candidate ``index`` (the decoder's side of :func:`pfr_exact_encode`)."""
    return sample_fn(candidate_keys(_sample_key(key), index, 1)[0])  # index may be traced (vmap)


# ----------------------------------------------------------------------------------------------
# finite-N PFR (ordered random coding) for Gaussian chunks


# Candidate i of a chunk (standard normal, float32 [d]): entries 2j and 2j + 1 are the two words of
# threefry2x32(sample key, counter (i, j)) (jax.random's hash, called directly so that both output words
# are used; jax.random.normal spends one hash per value), each mapped to (-1, 1) on the 2^-23 grid and
# through sqrt(2) erfinv.  Its arrival time uses word 0 of threefry2x32(arrival key, (i, 0)).  The counter
# is the pair (index, position): no index * dim offset is ever formed (the reference's int32 overflow),
# and the first d entries of a wider candidate are the candidate of a d-dimensional chunk (so padded
# chunks score exactly the candidates the decoder regenerates alone).


def _key_words(key):
    """uint32 [..., 2] data of threefry key(s)."""
    return jax.random.key_data(key)


_THREEFRY_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)


def _threefry_words(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011) of counters (x0, x1) under key (k0, k1), uint32 arrays
    broadcast together: bit for bit ``jax.extend.random.threefry2x32_p`` (tested), written out in jnp so that
    XLA fuses it into its consumers; on CPU the primitive lowers to a rolled loop whose words are materialised
    (~3x slower per word here, and the normals computed from them could not share its loop)."""
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + k0, x1 + k1
    for r in range(20):
        rot = _THREEFRY_ROTATIONS[r % 8]
        x0 = x0 + x1
        x1 = jax.lax.shift_left(x1, np.uint32(rot)) | jax.lax.shift_right_logical(x1, np.uint32(32 - rot))
        x1 = x1 ^ x0
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + np.uint32(s)
    return x0, x1


def _threefry(kd, i, j):
    i, j = jnp.broadcast_arrays(jnp.asarray(i, jnp.uint32), jnp.asarray(j, jnp.uint32))
    return _threefry_words(kd[0], kd[1], i, j)


def _unit(w):
    """uint32 -> float32 in [0, 1) on the 2^-23 grid."""
    return jax.lax.bitcast_convert_type((w >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32) - 1.0


def _symmetric_unit(w):
    """uint32 -> float32 v symmetric in (-1, 1) on the 2^-23 grid."""
    return 2.0 * _unit(w) - np.float32(1.0 - 2.0**-23)


def _std_normal(w):
    """uint32 -> float32 N(0, 1): sqrt(2) erfinv(v) (finite).  The candidates' values: what the decoder outputs."""
    return np.float32(math.sqrt(2.0)) * jax.lax.erf_inv(_symmetric_unit(w))


# M. Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single precision: the polynomials
# of XLA's erf_inv, in w - 2.5 for w < 5 and in sqrt(w) - 3 beyond, w = -log((1 - v)(1 + v)).
_GILES_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                  -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_GILES_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
               -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _std_normal_scoring(w):
    """_std_normal for the encoder's scores only: Giles' polynomials with log((1 - v)(1 + v)) for XLA's
    log1p(-v^2) (1.6x faster here; within 2.5e-5 of _std_normal everywhere, 60% of uniformly drawn words
    bit-equal; tested).  The scores choose an index; the chosen candidate is always regenerated with
    _std_normal, on both sides, so the encoder's sample is bit for bit the decoder's.  A score off by |mu| x 2.5e-5 multiplies a weight by at most
    exp(|mu| 2.5e-5): the selection law moves by that factor, far below the finite-N bias (module docstring)."""
    return _erfinv_scoring(_symmetric_unit(w))


def _erfinv_scoring(v):
    """sqrt(2) erfinv(v) of _std_normal_scoring, from v = _symmetric_unit(w)."""
    lw = -jnp.log((1.0 - v) * (1.0 + v))
    a, b = lw - 2.5, jnp.sqrt(lw) - 3.0
    p, q = np.float32(_GILES_CENTRAL[0]), np.float32(_GILES_TAIL[0])
    for c1, c2 in zip(_GILES_CENTRAL[1:], _GILES_TAIL[1:]):
        p, q = p * a + np.float32(c1), q * b + np.float32(c2)
    return np.float32(math.sqrt(2.0)) * jnp.where(lw < 5.0, p, q) * v


def _candidate_rows(kd, start, count: int, width: int, normal=_std_normal):
    """Candidates start .. start + count - 1 of one chunk (sample key data kd uint32 [2]): float32 [count, width]."""
    half = (width + 1) // 2
    i = jnp.asarray(start, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32)
    w0, w1 = _threefry(kd, i[:, None], jnp.arange(half, dtype=jnp.uint32)[None, :])
    z = jnp.stack([normal(w0), normal(w1)], axis=-1).reshape(count, 2 * half)
    return z[:, :width]


def _arrivals(kd, start, count: int):
    """Exp(1) arrival increments of candidates start .. start + count - 1: float32 [count]."""
    i = jnp.asarray(start, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32)
    return -jnp.log1p(-_unit(_threefry(kd, i, 0)[0]))


def gaussian_candidates(key: jax.Array, start, count: int, dim: int) -> jax.Array:
    """Candidates ``start .. start + count - 1`` of a Gaussian chunk with key ``key``: float32 [count, dim],
    each ~ N(0, I), iid; candidate i does not depend on start, count or how many were drawn before."""
    return _candidate_rows(_key_words(_sample_key(key)), start, int(count), int(dim))


def gaussian_candidate(key: jax.Array, index, dim: int) -> jax.Array:
    """Candidate ``index`` of a Gaussian chunk: float32 [dim] ~ N(0, I) (decoder side)."""
    return _candidate_rows(_key_words(_sample_key(key)), index, 1, int(dim))[0]


def _block_size(log2_n: int, dim: int, block_elems: int) -> int:
    b = max(1, block_elems // max(dim, 1))
    b = 1 << (b.bit_length() - 1)  # power of two so it divides N
    return min(b, 1 << log2_n)


def _search(akd, logw_fn, log2_n, num_blocks, block: int):
    """Finite-N PFR of G chunks at once: arrival key data akd uint32 [G, 2]; logw_fn(start) -> float32
    [G, block], log(q/p) (up to a per-chunk constant) of candidates start .. start + block - 1 of each chunk;
    N = 2**log2_n (may be traced) candidates each, scored in num_blocks blocks of `block` -> int32 [G]."""
    g = akd.shape[0]
    nf = jnp.exp2(jnp.asarray(log2_n).astype(jnp.float32))

    def body(b, s):
        t0, best, best_i = s
        start = b.astype(jnp.uint32) * jnp.uint32(block)
        logw = logw_fn(start)
        e = jax.vmap(lambda kd: _arrivals(kd, start, block))(akd)
        j = b.astype(jnp.float32) * block + jnp.arange(block, dtype=jnp.float32)
        ok = j < nf
        t = t0[:, None] + jnp.cumsum(jnp.where(ok, e / jnp.where(ok, nf - j, 1.0), 0.0), axis=1)  # Renyi
        score = jnp.where(ok, jnp.log(t) - logw, jnp.inf)
        jb = jnp.argmin(score, axis=1)
        sb = jnp.take_along_axis(score, jb[:, None], 1)[:, 0]
        better = sb < best
        return t[:, -1], jnp.where(better, sb, best), jnp.where(better, b * block + jb.astype(jnp.int32), best_i)

    init = (jnp.zeros(g, jnp.float32), jnp.full(g, jnp.inf, jnp.float32), jnp.zeros(g, jnp.int32))
    return jax.lax.fori_loop(0, num_blocks, body, init)[2]


def _dense_logw(skd, mu_rows, block: int):
    """logw_fn of _search for G whole chunks (sample key data skd [G, 2], mu_rows float32 [G, d])."""
    width = mu_rows.shape[1]
    return lambda start: jnp.einsum(
        "gbd,gd->gb", jax.vmap(lambda kd: _candidate_rows(kd, start, block, width, _std_normal_scoring))(skd), mu_rows)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _orc_search(key, mu, log2_n, block):
    """One chunk (key, mu float [d]) with N = 2**log2_n candidates in blocks of `block` -> int32 index."""
    skd, akd = _key_words(_sample_key(key))[None], _key_words(_arrival_key(key))[None]
    n_blocks = max(1, (1 << log2_n) // block)
    return _search(akd, _dense_logw(skd, jnp.asarray(mu, jnp.float32)[None], block), log2_n, n_blocks, block)[0]


def pfr_gaussian_chunk_encode(key: jax.Array, mu, log2_candidates: int, *, block_elems: int = _BLOCK_ELEMS) -> int:
    """Finite-N PFR for ``q = N(mu, I)`` vs ``p = N(0, I)`` with ``N = 2**log2_candidates``.

    Args:
      key: the chunk's shared key.  mu: float [d] (d >= 1).  log2_candidates: integer in [0, 31].
    Returns:
      0-based index in [0, N); the sample is ``gaussian_candidate(key, index, d)``.
    """
    mu = jnp.asarray(mu, jnp.float32)
    if mu.ndim != 1 or mu.shape[0] < 1:
        raise ValueError(f"mu must be a non-empty vector, got shape {mu.shape}")
    log2_candidates = int(log2_candidates)
    if not 0 <= log2_candidates <= MAX_LOG2_CANDIDATES:
        raise ValueError(f"log2_candidates must be in [0, {MAX_LOG2_CANDIDATES}], got {log2_candidates}")
    if log2_candidates == 0:
        return 0
    block = _block_size(log2_candidates, mu.shape[0], block_elems)
    return int(_orc_search(key, mu, log2_candidates, block))


# ----------------------------------------------------------------------------------------------
# chunked simulation of high-dimensional Gaussian channels


def gaussian_kl_bits(mu_q, mu_p, sigma) -> float:
    """KL(N(mu_q, sigma^2 I) || N(mu_p, sigma^2 I)) in bits = 0.5 ||(mu_q - mu_p)/sigma||^2 / ln 2."""
    mu = (np.asarray(mu_q, np.float64) - np.asarray(mu_p, np.float64)) / np.asarray(sigma, np.float64)
    return float(0.5 * np.sum(mu * mu) / LN2)


def quantize_kl(kl_bits: float) -> int:
    """KL in bits -> integer sent in the bitstream (units of 1/KL_QUANT bit, rounded up)."""
    kl_bits = float(kl_bits)
    if not math.isfinite(kl_bits) or kl_bits < 0:
        raise ValueError(f"KL must be finite and >= 0, got {kl_bits}")
    return int(math.ceil(kl_bits * KL_QUANT - 1e-9))


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How one step's channel is split (a pure function of the quantized KL and the dimension).

    chunk_dims: int64 [C] (all >= 1, sum = dim); log2_candidates: int (same for all chunks);
    chunk_kl_bits: float64 [C] KL budget of each chunk (sets the Zipf exponent of its index code).
    """

    kl_q: int
    dim: int
    chunk_dims: np.ndarray
    log2_candidates: int
    chunk_kl_bits: np.ndarray

    @property
    def num_chunks(self) -> int:
        return int(self.chunk_dims.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.chunk_dims)])


def plan_chunks(kl_q: int, dim: int, *, max_chunk_bits: int = 16, padding_bits: int | None = None,
                margin_bits: float = RENYI_MARGIN_BITS) -> ChunkPlan:
    """Split ``dim`` dimensions with total KL ``kl_q / KL_QUANT`` bits into chunks.

    Default (``padding_bits=None``, the Renyi-2 rule): a chunk with KL budget ``B`` gets
    ``N = 2**ceil(2 B + margin_bits)`` candidates (``2 B`` = the Renyi-2 divergence of a Gaussian chunk,
    in bits), so the budget is ``B <= (max_chunk_bits - margin_bits) / 2`` and
    ``C = max(1, ceil(KL / B_max))`` chunks.  ``padding_bits=p`` (an int; DiffC uses
    :data:`DIFFC_PADDING_BITS` = 2) gives the older rule ``B <= max_chunk_bits - p``,
    ``N = 2**ceil(B + p)``, whose bias grows with ``B`` (module docstring).
    Chunks have (nearly) equal size and budget ``KL / C``; N is capped at ``2**max_chunk_bits``.
    Raises ValueError (never silently empty chunks) if ``C > dim``.
    """
    kl_q, dim, max_chunk_bits = int(kl_q), int(dim), int(max_chunk_bits)
    if dim < 1:
        raise ValueError(f"the channel must have at least one dimension, got dim={dim}")
    if kl_q < 0:
        raise ValueError(f"quantized KL must be >= 0, got {kl_q}")
    if padding_bits is None:
        margin_bits = float(margin_bits)
        if not 0 <= margin_bits < max_chunk_bits <= MAX_LOG2_CANDIDATES:
            raise ValueError(f"need 0 <= margin_bits < max_chunk_bits <= {MAX_LOG2_CANDIDATES}, got "
                             f"margin_bits={margin_bits}, max_chunk_bits={max_chunk_bits}")
        budget, slope, extra, what = (max_chunk_bits - margin_bits) / 2, 2.0, margin_bits, f"margin_bits={margin_bits}"
    else:
        if not 0 <= padding_bits < max_chunk_bits <= MAX_LOG2_CANDIDATES:
            raise ValueError(
                f"need 0 <= padding_bits < max_chunk_bits <= {MAX_LOG2_CANDIDATES}, got padding_bits={padding_bits}, "
                f"max_chunk_bits={max_chunk_bits}")
        budget, slope, extra, what = max_chunk_bits - padding_bits, 1.0, padding_bits, f"padding_bits={padding_bits}"
    kl = kl_q / KL_QUANT
    n = max(1, int(math.ceil(kl / budget - 1e-12)))
    if n > dim:
        raise ValueError(
            f"a KL of {kl:.3f} bits needs {n} chunks of <= {budget} bits (max_chunk_bits={max_chunk_bits}, "
            f"{what}) but the channel has only {dim} dimensions, so some chunk would get "
            "zero dimensions; raise max_chunk_bits, or lower the KL of this step (e.g. more diffusion steps)")
    dims = np.full(n, dim // n, np.int64)
    dims[: dim % n] += 1
    log2n = min(max_chunk_bits, int(math.ceil(slope * kl / n + extra - 1e-9)))
    return ChunkPlan(kl_q, dim, dims, log2n, kl * dims / dim)


@dataclasses.dataclass(frozen=True)
class GaussianChannelCode:
    """What a step of chunked Gaussian simulation transmits: the quantized KL and one index per chunk."""

    kl_q: int
    indices: np.ndarray  # int64 [num_chunks], 0-based


def _chunk_perm(randomness: SharedRandomness, step: int, dim: int) -> np.ndarray:
    return randomness.permutation((PURPOSE_SHUFFLE, step), dim)


# One step of chunked simulation is one jitted search over all its chunks: chunk c's dimensions are cut
# into rows of _ROW entries (the last row of a chunk padded), the rows of a step padded to a bucket
# (_bucket: k * 2^e, k in 4..7), so one program per (rows bucket) serves every step of an image size
# (a few compiles per size, whatever the KLs); N is traced.  A row's score is summed into its chunk's
# (segment sum); padded entries have mu = 0 and are dropped when the sample is assembled.  Candidate values
# depend only on (chunk key, index, position in the chunk), so the layout changes no bit of the output.

_ROW = 8  # entries per row (even: a row holds whole threefry word pairs)


def _bucket(n: int) -> int:
    """Smallest m >= n of the form k * 2^e with k in {4, 5, 6, 7} (n <= 4: n itself)."""
    n = int(n)
    if n <= 4:
        return max(n, 1)
    e = (n - 1).bit_length() - 3
    return -(-n // (1 << e)) * (1 << e)


def _step_rows(perm: np.ndarray, plan: ChunkPlan):
    """The step's layout: (rows int32 [R, _ROW]: dimension of each entry, padding = dim; chunk int32 [R]: the
    chunk of each row (padding rows: R - 1 >= C); pair int32 [R]: the row's first word-pair index in its
    chunk), R = _bucket(number of rows)."""
    dim, dims = perm.shape[0], plan.chunk_dims
    nrows = -(-dims // _ROW)
    n = int(nrows.sum())
    r_pad = _bucket(n)
    chunk = np.repeat(np.arange(plan.num_chunks), nrows)
    first_row = np.cumsum(nrows) - nrows
    pos = _ROW * (np.arange(n) - first_row[chunk])          # position of the row's first entry in its chunk
    j = np.arange(_ROW)[None, :]
    valid = pos[:, None] + j < dims[chunk][:, None]
    src = plan.offsets[:-1][chunk][:, None] + pos[:, None] + j
    rows = np.full((r_pad, _ROW), dim, np.int32)
    rows[:n] = np.where(valid, perm[np.minimum(src, dim - 1)], dim)
    chunk_p = np.full(r_pad, r_pad - 1, np.int32)
    chunk_p[:n] = chunk
    pair = np.zeros(r_pad, np.int32)
    pair[:n] = pos // 2
    return rows, chunk_p, pair


def _chunk_key_words(step_key, first, count: int):
    """(sample, arrival) key data uint32 [count, 2] of chunks first .. first + count - 1, where chunk c's key
    is randomness.key(PURPOSE_PFR, step, c) = fold_in_u64(step key, c) (c < 2**32)."""
    hi = jax.random.fold_in(step_key, np.uint32(0))
    ck = jax.vmap(jax.random.fold_in, (None, 0))(hi, jnp.asarray(first, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32))
    return _key_words(jax.vmap(_sample_key)(ck)), _key_words(jax.vmap(_arrival_key)(ck))


def _row_candidates(kd, start, count: int, pair):
    """Entries of candidates start .. start + count - 1 in one row (sample key data kd [2], first word pair
    `pair`): float32 [count, _ROW]."""
    i = jnp.asarray(start, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32)
    jw = pair.astype(jnp.uint32) + jnp.arange(_ROW // 2, dtype=jnp.uint32)
    w0, w1 = _threefry(kd, i[:, None], jw[None, :])
    return jnp.stack([_std_normal(w0), _std_normal(w1)], axis=-1).reshape(count, _ROW)


def _chunks_bucket(n_chunks: int) -> int:
    """Segments of a step's search: a power of two > n_chunks (>= 8), so a few programs serve every KL."""
    return max(8, 1 << int(n_chunks).bit_length())


@functools.partial(jax.jit, static_argnames=("block", "segments"))
def _search_rows(step_key, mu_rows, chunk, pair, log2_n, num_blocks, *, block: int, segments: int):
    """Finite-N PFR of every chunk of a step at once (mu_rows float32 [R, _ROW], chunk / pair int32 [R] of
    _step_rows; `segments` > the number of chunks C) -> 0-based indices int32 [segments] (entry c = chunk c;
    entries >= C are padding).  Candidates are laid out [R, _ROW / 2, block] (word pairs x candidates: the
    candidate axis minor, so the hash, the normals and the sum over a row's entries vectorise in one loop) and
    scored with _std_normal_scoring; arrival times are drawn for the `segments` chunks only, not per row."""
    r = mu_rows.shape[0]
    skd, akd = _chunk_key_words(step_key, 0, max(r, segments))
    skd_rows = skd[chunk]
    k0, k1 = skd_rows[:, 0, None, None], skd_rows[:, 1, None, None]
    jw = pair.astype(jnp.uint32)[:, None, None] + jnp.arange(_ROW // 2, dtype=jnp.uint32)[None, :, None]
    mu_split = jnp.concatenate([mu_rows[:, 0::2], mu_rows[:, 1::2]], axis=1)[:, :, None]  # entries 0, 2, .., 1, 3, ..

    def logw_fn(start):
        i = jnp.asarray(start, jnp.uint32) + jnp.arange(block, dtype=jnp.uint32)[None, None, :]
        w0, w1 = _threefry_words(k0, k1, i, jw)                                          # [R, _ROW / 2, block]
        # One array of both words' uniforms, materialised: XLA:CPU otherwise splits the normal transform into
        # several loops that each recompute the hash (measured 2x slower).
        v = jax.lax.optimization_barrier(jnp.concatenate([_symmetric_unit(w0), _symmetric_unit(w1)], axis=1))
        s = (_erfinv_scoring(v) * mu_split).sum(axis=1)                                   # [R, block]
        return jax.ops.segment_sum(s, chunk, num_segments=segments)                      # [segments, block]

    return _search(akd[:segments], logw_fn, log2_n, num_blocks, block)


@jax.jit
def _assemble_rows(step_key, rows, chunk, pair, indices, z):
    """z float32 [dim] with the chosen candidates (indices [R], by chunk) written at the entries rows [R, _ROW]
    (entries == dim are padding, dropped)."""
    skd, _ = _chunk_key_words(step_key, 0, rows.shape[0])
    cand = jax.vmap(lambda kd, i, p: _row_candidates(kd, i, 1, p)[0])(skd[chunk], indices[chunk].astype(jnp.uint32), pair)
    return z.at[rows.reshape(-1)].set(cand.reshape(-1), mode="drop")


def _chosen_candidates(randomness: SharedRandomness, step: int, plan: ChunkPlan, dim: int, mu=None, indices=None,
                       block_elems: int = _BLOCK_ELEMS):
    """Standard-normal noise z float32 [dim] made of each chunk's chosen candidate, and the indices int64
    [num_chunks]. Chunk c owns the dims perm[offsets[c]:offsets[c+1]] of the step's shared permutation.
    Encoder: mu float32 [dim] (the normalised mean; every chunk is searched); decoder: the received indices."""
    perm = _chunk_perm(randomness, step, dim)
    rows, chunk, pair = _step_rows(perm, plan)
    step_key = randomness.key(PURPOSE_PFR, step)
    n_chunks, log2_n = plan.num_chunks, plan.log2_candidates
    r = rows.shape[0]
    rows_j, chunk_j, pair_j = jnp.asarray(rows), jnp.asarray(chunk), jnp.asarray(pair)
    if mu is not None:
        block = _block_size(log2_n, r * _ROW, block_elems)
        mu_pad = jnp.concatenate([jnp.asarray(mu, jnp.float32).reshape(-1), jnp.zeros(1)])
        idx = _search_rows(step_key, mu_pad[rows_j], chunk_j, pair_j, np.int32(log2_n),
                           np.int32((1 << log2_n) // block), block=block, segments=_chunks_bucket(n_chunks))
        out = np.asarray(idx)[:n_chunks].astype(np.int64)
    else:
        out = np.asarray(indices, np.int64)
    sel = np.zeros(r, np.uint32)
    sel[:n_chunks] = out
    z = _assemble_rows(step_key, rows_j, chunk_j, pair_j, jnp.asarray(sel), jnp.zeros(dim, jnp.float32))
    return z, out


def _normalise(mu_q, mu_p, sigma):
    mu_q = jnp.asarray(mu_q, jnp.float32)
    mu_p = jnp.broadcast_to(jnp.asarray(mu_p, jnp.float32), mu_q.shape)
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), mu_q.shape)
    if not bool(jnp.all(sigma > 0)):
        raise ValueError("sigma must be > 0 everywhere")
    return mu_q, mu_p, sigma


def gaussian_channel_encode(mu_q, mu_p, sigma, *, randomness: SharedRandomness, step: int,
                            max_chunk_bits: int = 16, padding_bits: int | None = None,
                            margin_bits: float = RENYI_MARGIN_BITS, block_elems: int = _BLOCK_ELEMS):
    """Simulate ``Y ~ N(mu_q, sigma^2 I)`` with reference ``N(mu_p, sigma^2 I)`` (any shape).

    Returns ``(sample, code)``: float32 sample with mu_q's shape (exactly what the decoder outputs)
    and a :class:`GaussianChannelCode`; serialise with ``index_coding.encode_gaussian_codes``.
    Expected cost per chunk ~ its KL budget + log2(budget + 2.5) + 2.5 bits (index code), plus the
    quantized KL (a varint) per step.
    """
    mu_q, mu_p, sigma = _normalise(mu_q, mu_p, sigma)
    mu = ((mu_q - mu_p) / sigma).reshape(-1)
    dim = mu.shape[0]
    kl_q = quantize_kl(float(0.5 * jnp.sum(mu.astype(jnp.float32) ** 2) / LN2))
    plan = plan_chunks(kl_q, dim, max_chunk_bits=max_chunk_bits, padding_bits=padding_bits, margin_bits=margin_bits)
    z, idx = _chosen_candidates(randomness, step, plan, dim, mu=mu, block_elems=block_elems)
    sample = mu_p + sigma * jnp.asarray(z).reshape(mu_q.shape)
    return sample, GaussianChannelCode(kl_q, idx)


def gaussian_channel_decode(code: GaussianChannelCode, mu_p, sigma, *, randomness: SharedRandomness, step: int,
                            max_chunk_bits: int = 16, padding_bits: int | None = None,
                            margin_bits: float = RENYI_MARGIN_BITS):
    """Decoder side of :func:`gaussian_channel_encode`: the identical sample, shape of ``mu_p``."""
    mu_p = jnp.asarray(mu_p, jnp.float32)
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), mu_p.shape)
    dim = int(np.prod(mu_p.shape))
    plan = plan_chunks(code.kl_q, dim, max_chunk_bits=max_chunk_bits, padding_bits=padding_bits,
                       margin_bits=margin_bits)
    indices = np.asarray(code.indices, np.int64)
    if indices.shape != (plan.num_chunks,):
        raise ValueError(f"code has {indices.shape} indices but the plan for this step needs {plan.num_chunks}; "
                         "were max_chunk_bits/padding_bits/margin_bits/dim the same on both sides?")
    if np.any(indices < 0) or np.any(indices >= (1 << plan.log2_candidates)):
        raise ValueError("a chunk index is outside [0, N): corrupt data or mismatched settings")
    z, _ = _chosen_candidates(randomness, step, plan, dim, indices=indices)
    return mu_p + sigma * jnp.asarray(z).reshape(mu_p.shape)
