"""PFR: exact PFR with bounded ratio, finite-N bias vs padding, chunked 65,536-dim Gaussian channel."""

import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gencomp_jax.channel import index_coding, pfr
from gencomp_jax.channel.randomness import PURPOSE_PFR, SharedRandomness

REPO = pathlib.Path(__file__).resolve().parents[2]
W = 1.0 / 16  # exact-PFR target: q = U(0.5 - W/2, 0.5 + W/2), p = U(0, 1): ratio <= 16, C = 4 bits


def _sample_u(k):
    return jax.random.uniform(k, (), jnp.float32)


def _log_ratio_window(y):
    return jnp.where(jnp.abs(y - 0.5) < W / 2, -math.log(W), -jnp.inf)


def _log_ratio_sine(y):  # q(y) = 1 + 0.9 sin(2 pi y) on [0, 1], ratio <= 1.9
    return jnp.log1p(0.9 * jnp.sin(2 * jnp.pi * y))


def _sine_cdf(y):
    return y + 0.9 * (1 - np.cos(2 * np.pi * y)) / (2 * np.pi)


@pytest.mark.parametrize("case", ["window", "sine"])
def test_exact_pfr_law_and_code_length(case):
    n = 2000
    base = SharedRandomness(11).key(PURPOSE_PFR, 0)
    lr, lrmax = (_log_ratio_window, -math.log(W)) if case == "window" else (_log_ratio_sine, math.log(1.9))
    # many independent simulations at once: the jitted search vmapped over keys (same code path)
    keys = jax.vmap(lambda t: jax.random.fold_in(base, t))(jnp.arange(n, dtype=jnp.uint32))
    idx, _ = jax.vmap(lambda k: pfr._pfr_exact_search(k, _sample_u, lr, lrmax, 256, 2**30))(keys)
    idx = np.asarray(idx)
    assert np.all(idx >= 0)
    ys = np.asarray(jax.vmap(lambda k, i: pfr.pfr_exact_decode(k, i, sample_fn=_sample_u))(keys, idx))
    # the public (single-call) API returns the same index as the batched search
    i0, y0, _ = pfr.pfr_exact_encode(keys[0], sample_fn=_sample_u, log_ratio_fn=lr, log_ratio_max=lrmax)
    assert i0 == idx[0] and float(y0) == ys[0]
    ys = np.asarray(ys)
    # output ~ q: KS at alpha = 1e-3 (n = 2000: detects a CDF error of ~0.05)
    if case == "window":
        p = stats.kstest(ys, "uniform", args=(0.5 - W / 2, W)).pvalue
        c = -math.log2(W)
    else:
        p = stats.kstest(ys, _sine_cdf).pvalue
        grid = (np.arange(100000) + 0.5) / 100000
        qg = 1 + 0.9 * np.sin(2 * np.pi * grid)
        c = float(np.mean(qg * np.log2(qg)))
    assert p > 1e-3
    # Eq. (12): E|M| <= C + log2(C + 2) + 3, with real bytes of all indices coded in one stream
    # (per-stream overhead ~100 bits amortised over n); the bound holds in expectation, mean of n samples
    bits = 8 * len(index_coding.encode_indices(idx, c)) / n
    assert bits <= c + math.log2(c + 2) + 3, (bits, c)


def _finite_n_law(kl_bits, dim, l2n, n, seed):
    """n independent finite-N PFR draws (N = 2**l2n) for N(mu, I) vs N(0, I) with |mu|^2/2 = kl_bits ln 2.

    Returns (KS statistic, KS p-value, mean bias, its standard error) of the component along mu.
    """
    mu = jnp.full((dim,), math.sqrt(2 * kl_bits * math.log(2) / dim), jnp.float32)
    base = SharedRandomness(seed).key(PURPOSE_PFR)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(n, dtype=jnp.uint32))
    blk = pfr._block_size(l2n, dim, 2**21)
    idx = jax.jit(jax.vmap(lambda k: pfr._orc_search(k, mu, l2n, blk)))(keys)
    ys = jax.vmap(lambda k, i: pfr.gaussian_candidate(k, i, dim))(keys, idx)
    e = np.asarray(ys - mu)
    u = e @ np.asarray(mu) / float(jnp.linalg.norm(mu))  # component along mu: where the bias lives
    ks = stats.kstest(u, "norm")
    return ks.statistic, ks.pvalue, float(u.mean()), float(u.std() / math.sqrt(n))


@pytest.mark.parametrize("dim", [1, 2])
def test_finite_n_default_padding_is_invisible(dim):
    """10^4 samples, KL = 1 bit.  The default (Renyi-2 rule, N = 2**ceil(2 KL + 8)) must be invisible:
    KS p > 0.01 and |mean bias| < 3 standard errors (measured bias ~0.004 sigma, i.e. 0.4 s.e.; table in
    pfr's docstring).  Power: the same test detects padding 0 (bias -0.79 sigma) and DiffC's 2 bits
    (-0.31 sigma, KS p ~ 1e-150) at p < 1e-6."""
    n, kl = 10_000, 1.0
    l2n_default = pfr.plan_chunks(pfr.quantize_kl(kl), dim).log2_candidates
    assert l2n_default == int(math.ceil(2 * kl + pfr.RENYI_MARGIN_BITS))
    l2n_diffc = pfr.plan_chunks(pfr.quantize_kl(kl), dim, padding_bits=pfr.DIFFC_PADDING_BITS).log2_candidates
    for l2n, visible in ((int(math.ceil(kl)), True), (l2n_diffc, True), (l2n_default, False)):
        ks, p, m, se = _finite_n_law(kl, dim, l2n, n, seed=100 + 10 * dim + l2n)
        print(f"dim={dim} N=2^{l2n} KS={ks:.4f} p={p:.2g} mean_bias={m:+.4f} ({m / se:+.1f} s.e.)")
        if visible:
            assert p < 1e-6 and abs(m) > 5 * se
        else:
            assert p > 0.01 and abs(m) < 3 * se


def test_chunked_65536_dims_two_processes(tmp_path):
    dim, seed, step = 65_536, 2**40 + 7, 3
    mu = np.random.default_rng(0).normal(0, 1, dim).astype(np.float32)
    mu *= math.sqrt(2 * 16.0 * math.log(2)) / np.linalg.norm(mu)  # KL = 16 bits -> 2 chunks of 8 bits, N = 2**10
    # DiffC's padding here (N = 2**10 per chunk); the default plan needs 2**15 candidates x 16384 dims per
    # chunk, too slow for a unit test - the default's code path is the same and is checked below.
    diffc = dict(padding_bits=pfr.DIFFC_PADDING_BITS)
    sample, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=SharedRandomness(seed), step=step, **diffc)
    data = index_coding.encode_gaussian_codes([code], [dim], **diffc)
    (tmp_path / "msg.bin").write_bytes(data)
    script = (
        "import sys, numpy as np, jax.numpy as jnp\n"
        "from gencomp_jax.channel import pfr, index_coding\n"
        "from gencomp_jax.channel.randomness import SharedRandomness\n"
        f"[c] = index_coding.decode_gaussian_codes(open(sys.argv[1], 'rb').read(), [{dim}], padding_bits=2)\n"
        f"y = pfr.gaussian_channel_decode(c, jnp.zeros({dim}), 1.0, randomness=SharedRandomness({seed}), step={step}, "
        "padding_bits=2)\n"
        "np.save(sys.argv[2], np.asarray(y))\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "msg.bin"), str(tmp_path / "y.npy")],
                   check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.asarray(sample))
    plan = pfr.plan_chunks(code.kl_q, dim, **diffc)
    assert plan.num_chunks == 2 and plan.chunk_dims.min() >= 1
    # the code length is tested against Eq. (12) in test_index_code_length_obeys_eq12


def _pfr_indices(kl_bits, log2_n, n, seed):
    """n independent finite-N PFR draws (1-D chunks, N = 2**log2_n) at KL = kl_bits, by the vectorised search of
    chunked simulation (the 1-D problem has the index law of any d: the score depends on z only via z . mu)."""
    mu = jnp.full((n, 1), math.sqrt(2 * kl_bits * math.log(2)), jnp.float32)
    skd, akd = pfr._chunk_key_words(SharedRandomness(seed).key(PURPOSE_PFR, 0), np.uint32(0), n)
    block = pfr._block_size(log2_n, n, 2**21)
    search = jax.jit(lambda s, a, m: pfr._search(a, pfr._dense_logw(s, m, block), log2_n, (1 << log2_n) // block, block))
    return np.asarray(search(skd, akd, mu)).astype(np.int64)


@pytest.mark.parametrize("kl", [0.5, 2.0, 4.0])
def test_index_code_length_obeys_eq12(kl):
    """Eq. (12) of the review: E|M| <= C + log2(C + 2) + 3 bits for a simulation of C bits of KL.  The chunk
    budget C of the default plan; n = 1500 independent chunks coded in one stream (real bytes, all framing
    included), so the mean has a stated tolerance: 3 standard errors of the per-chunk ideal code length
    (measured on the sample) plus the stream framing (3 varint lengths + 3 ANS flushes <= 3 x 72 bits) / n.
    Every index must decode exactly, and the bytes must realise the Zipf model's ideal length (below)."""
    n = 1500
    plan = pfr.plan_chunks(pfr.quantize_kl(kl), 1)
    assert plan.chunk_kl_bits[0] == kl and plan.log2_candidates == min(16, int(math.ceil(2 * kl + 8)))
    idx = _pfr_indices(kl, plan.log2_candidates, n, seed=int(8 * kl))
    nmax = float(1 << plan.log2_candidates)
    data = index_coding.encode_indices(idx, kl, nmax)
    np.testing.assert_array_equal(index_coding.decode_indices(data, n, kl, nmax), idx)
    ideal = index_coding.index_code_length_bits(idx, kl, nmax)
    mean_bits = 8 * len(data) / n
    bound = kl + math.log2(kl + 2) + 3
    tol = 3 * ideal.std() / math.sqrt(n) + 3 * 72 / n
    print(f"C={kl}: {mean_bits:.3f} bits per chunk (ideal {ideal.mean():.3f} +- {ideal.std() / math.sqrt(n):.3f}), "
          f"Eq. (12) bound {bound:.3f}, tolerance {tol:.3f}")
    assert mean_bits <= bound + tol, (mean_bits, bound, tol)
    # Eq. (12) is ~2.5 bits loose here (measured 2.39 / 4.61 / 6.88 bits vs 4.82 / 7.00 / 9.58 at C = 0.5 / 2 / 4),
    # so the real bytes are also held to the Zipf model's ideal length (index_code_length_bits, a closed form):
    # within the framing and < 0.1 bit of table quantization per index; a wasted bit per index fails this.
    assert mean_bits <= ideal.mean() + 3 * 72 / n + 0.1, (mean_bits, ideal.mean())


def test_step_vectorised_over_chunks_equals_each_chunk_alone():
    """One step's chunks are searched together (each chunk cut into rows of pfr._ROW entries, its last row
    padded, the rows padded to a bucket, the rows' scores summed per chunk): every chunk's index equals the
    single-chunk search of its own dimensions, and the sample holds exactly the candidate the decoder
    regenerates alone for that index."""
    dim, step, sr = 131, 2, SharedRandomness(99)
    mu = np.random.default_rng(3).normal(0, 1, dim).astype(np.float32)
    mu *= math.sqrt(2 * 5.9 * math.log(2)) / np.linalg.norm(mu)   # 5.9 bits -> 6 chunks of 21-22 dims
    sample, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=sr, step=step, max_chunk_bits=10)
    plan = pfr.plan_chunks(code.kl_q, dim, max_chunk_bits=10)
    perm = pfr._chunk_perm(sr, step, dim)
    rows, chunk, _ = pfr._step_rows(perm, plan)
    assert plan.num_chunks == 6 and rows.shape == (20, pfr._ROW) and np.sum(chunk == 0) == 3   # 18 rows + 2 padding
    for c in range(plan.num_chunks):
        sel = perm[plan.offsets[c]: plan.offsets[c + 1]]
        key = sr.key(PURPOSE_PFR, step, c)
        assert code.indices[c] == pfr.pfr_gaussian_chunk_encode(key, mu[sel], plan.log2_candidates), c
        np.testing.assert_array_equal(np.asarray(sample)[sel],
                                      np.asarray(pfr.gaussian_candidate(key, int(code.indices[c]), sel.shape[0])))
    np.testing.assert_array_equal(np.asarray(pfr.gaussian_channel_decode(code, jnp.zeros(dim), 1.0, randomness=sr,
                                                                         step=step, max_chunk_bits=10)),
                                  np.asarray(sample))


def test_candidate_counters_near_2_31_and_2_32():
    """The reference's int32 overflow (offset index * dim) cannot recur: a candidate is addressed by the pair
    (index, position), so a block of candidates straddling 2**31 (and ending at 2**32 - 1) equals the candidates
    regenerated one by one, and candidates 2**16 / 2**31 / 2**32 - 1 apart from each other all differ."""
    key, dim = SharedRandomness(123).key(PURPOSE_PFR, 0, 1), 4096
    for start in (2**31 - 3, 2**32 - 6):
        block = np.asarray(pfr.gaussian_candidates(key, start, 6, dim))
        for j in range(6):
            np.testing.assert_array_equal(block[j], np.asarray(pfr.gaussian_candidate(key, start + j, dim)))
    c0 = np.asarray(pfr.gaussian_candidate(key, 5, dim))
    for other in (5 + 2**15, 5 + 2**16, 5 + 2**31, 2**32 - 1):
        assert not np.allclose(c0, np.asarray(pfr.gaussian_candidate(key, other, dim)))
    # a wide candidate's first d entries are the d-dimensional candidate (what padded chunk rows rely on)
    np.testing.assert_array_equal(np.asarray(pfr.gaussian_candidate(key, 7, 9)),
                                  np.asarray(pfr.gaussian_candidate(key, 7, 16))[:9])


def test_default_plan_two_processes(tmp_path):
    """Default (Renyi-2) plan, 65 536 dims, KL = 0.45 bit: one chunk of N = 2**9; identical sample in another process."""
    dim, seed, step = 65_536, 2**33 + 1, 0
    mu = np.random.default_rng(1).normal(0, 1, dim).astype(np.float32)
    mu *= math.sqrt(2 * 0.45 * math.log(2)) / np.linalg.norm(mu)  # KL 0.45 -> quantized to 0.5 bit
    sample, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=SharedRandomness(seed), step=step)
    plan = pfr.plan_chunks(code.kl_q, dim)
    assert plan.num_chunks == 1 and plan.log2_candidates == 9
    (tmp_path / "msg.bin").write_bytes(index_coding.encode_gaussian_codes([code], [dim]))
    script = (
        "import sys, numpy as np, jax.numpy as jnp\n"
        "from gencomp_jax.channel import pfr, index_coding\n"
        "from gencomp_jax.channel.randomness import SharedRandomness\n"
        f"[c] = index_coding.decode_gaussian_codes(open(sys.argv[1], 'rb').read(), [{dim}])\n"
        f"y = pfr.gaussian_channel_decode(c, jnp.zeros({dim}), 1.0, randomness=SharedRandomness({seed}), step={step})\n"
        "np.save(sys.argv[2], np.asarray(y))\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "msg.bin"), str(tmp_path / "y.npy")],
                   check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.asarray(sample))


def test_zero_dimension_chunk_is_an_error():
    # default rule: chunks of <= (16 - 8) / 2 = 4 bits; 100 bits -> 25 chunks
    with pytest.raises(ValueError, match="zero dimensions"):
        pfr.plan_chunks(pfr.quantize_kl(100.0), 24)
    plan = pfr.plan_chunks(pfr.quantize_kl(100.0), 25)
    assert plan.num_chunks == 25 and plan.chunk_dims.min() == 1 and plan.log2_candidates == 16
    plan0 = pfr.plan_chunks(0, 10)  # KL 0: one chunk, N = 2**margin
    assert plan0.num_chunks == 1 and plan0.log2_candidates == pfr.RENYI_MARGIN_BITS
    # DiffC preset: chunks of <= 14 bits, N = 2**ceil(KL/C + 2)
    with pytest.raises(ValueError, match="zero dimensions"):
        pfr.plan_chunks(pfr.quantize_kl(100.0), 5, padding_bits=2)  # 100 bits needs 8 chunks, only 5 dims
    plan = pfr.plan_chunks(pfr.quantize_kl(100.0), 8, padding_bits=2)
    assert plan.num_chunks == 8 and plan.chunk_dims.min() == 1 and plan.log2_candidates <= 16
    assert pfr.plan_chunks(0, 10, padding_bits=2).log2_candidates == 2


def test_unrolled_threefry_is_jax_threefry_bit_for_bit():
    """The search's hash (pfr._threefry_words, written out in jnp so XLA fuses it) must give the bits of JAX's
    threefry2x32 primitive: the decoder of every existing file regenerates candidates from them."""
    from jax.extend.random import threefry2x32_p

    rng = np.random.default_rng(5)
    edges = np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 1], np.uint32)
    k = np.concatenate([edges, rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)])
    x = np.concatenate([edges, rng.integers(0, 2**32, 4091, dtype=np.uint64).astype(np.uint32)])
    k0, k1 = k[:, None], np.roll(k, 3)[:, None]
    x0, x1 = x[None, :], np.roll(x, 7)[None, :]
    shape = (k.shape[0], x.shape[0])
    want = jax.jit(lambda a, b, c, d: threefry2x32_p.bind(*[jnp.broadcast_to(t, shape) for t in (a, b, c, d)]))(
        k0, k1, x0, x1)
    got = jax.jit(pfr._threefry_words)(k0, k1, x0, x1)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))


def test_scoring_normals_within_stated_error_of_the_decoders():
    """The encoder scores candidates with a faster erfinv (Giles' polynomials, log for log1p); the decoder's
    values come from jax.lax.erf_inv.  Stated bound: |difference| <= 2.5e-5 on every uint32 word class (uniform
    words, both 2^-23 tails), and most values bit-equal.  A 1e-4 relative change of one central coefficient
    breaks the bound."""
    rng = np.random.default_rng(6)
    tails = np.arange(1 << 16, dtype=np.uint32) * np.uint32(512)
    w = np.concatenate([rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32), tails, ~tails])
    exact = np.asarray(jax.jit(pfr._std_normal)(w), np.float64)
    fast = np.asarray(jax.jit(pfr._std_normal_scoring)(w), np.float64)
    assert np.all(np.isfinite(fast)) and np.abs(exact).max() < 5.5
    assert np.abs(fast - exact).max() <= 2.5e-5, np.abs(fast - exact).max()
    assert np.mean(fast[: 1 << 20] == exact[: 1 << 20]) > 0.5


def test_codes_written_with_the_threefry_primitive_decode_bit_for_bit():
    """Golden codes of 7828c4d (candidates from JAX's threefry2x32 primitive and erf_inv): today's decoder gives
    the encoder's samples bit for bit, and today's encoder (fused hash, faster scoring normals) picks the same
    indices, so the same bytes (tests/golden/make_pfr_golden.py)."""
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    from make_pfr_golden import CASES

    gold = np.load(REPO / "tests" / "golden" / "pfr_golden_format2.npz")
    for n, (seed, step, dim, _, kw) in enumerate(CASES):
        data = gold[f"bytes{n}"].tobytes()
        [code] = index_coding.decode_gaussian_codes(data, [dim], **kw)
        y = pfr.gaussian_channel_decode(code, jnp.zeros(dim), 1.0, randomness=SharedRandomness(seed), step=step, **kw)
        np.testing.assert_array_equal(np.asarray(y), gold[f"sample{n}"])
        _, again = pfr.gaussian_channel_encode(gold[f"mu{n}"], 0.0, 1.0, randomness=SharedRandomness(seed), step=step,
                                               **kw)
        assert index_coding.encode_gaussian_codes([again], [dim], **kw) == data
