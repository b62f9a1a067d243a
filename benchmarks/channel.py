"""Channel-simulation benchmark: DQ throughput, finite-N PFR time/bits vs KL, padding-vs-bias table.

Writes benchmarks/results/channel.json and benchmarks/results/channel.png.
Run: PYTHONPATH=. .venv/bin/python benchmarks/channel.py
"""

import json
import math
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from gencomp_jax.channel import dq, index_coding, pfr  # noqa: E402
from gencomp_jax.channel.randomness import PURPOSE_PFR, SharedRandomness  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results"


def bench_dq(k=10**6):
    x = np.random.default_rng(0).normal(0, 3.0, k).astype(np.float32)
    w = dq.dither(jax.random.key(0), (k,), 1.0)
    dq.dq_encode(x[:1000], 0.0, 3.0, 1.0, w=w[:1000])  # warm-up compile (batch shape differs; see note)
    t = time.perf_counter(); data, y = dq.dq_encode(x, 0.0, 3.0, 1.0, w=w); te = time.perf_counter() - t
    t = time.perf_counter(); y2 = dq.dq_decode(data, jnp.zeros(k), 3.0, 1.0, w=w); td = time.perf_counter() - t
    assert np.array_equal(np.asarray(y), np.asarray(y2))
    return {"k": k, "encode_s": te, "decode_s": td, "elements_per_s_encode_plus_decode": k / (te + td),
            "bits_per_element": 8 * len(data) / k}


def bench_pfr_chunk(dim=64, reps=20):
    rows = []
    r = SharedRandomness(1)
    for b in (8, 12, 16):
        for kl in sorted({1.0, 2.0, 4.0, b - 4.0, b - 2.0}):
            mu = jnp.full((dim,), math.sqrt(2 * kl * math.log(2) / dim), jnp.float32)
            pfr.pfr_gaussian_chunk_encode(r.key(PURPOSE_PFR, 0, 0), mu, b)  # compile
            idx, t0 = [], time.perf_counter()
            for s in range(reps):
                idx.append(pfr.pfr_gaussian_chunk_encode(r.key(PURPOSE_PFR, 1, s), mu, b))
            dt = (time.perf_counter() - t0) / reps
            bits = 8 * len(index_coding.encode_indices(idx, kl, 2**b)) / reps
            ideal = float(np.mean(index_coding.index_code_length_bits(idx, kl, 2**b)))
            rows.append({"log2_candidates": b, "kl_bits": kl, "dim": dim, "encode_s": dt,
                         "bits_real": bits, "bits_ideal_zipf": ideal})
            print(f"b={b:2d} KL={kl:5.1f} encode {dt * 1e3:8.2f} ms  bits(real)={bits:6.2f} ideal={ideal:6.2f}")
    return rows


def bench_chunked(dim=4096):
    """Time vs KL (chunked: N = 2**ceil(KL/C + 2), so ~2**KL per chunk until 14 bits) and vs #chunks."""
    rows = []
    r = SharedRandomness(2)
    for kl in (4, 6, 8, 10, 12, 14, 28, 42, 56):
        mu = np.full(dim, math.sqrt(2 * kl * math.log(2) / dim), np.float32)
        pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=r, step=0)  # compile
        t = time.perf_counter()
        _, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=r, step=1)
        dt = time.perf_counter() - t
        plan = pfr.plan_chunks(code.kl_q, dim)
        nbits = 8 * len(index_coding.encode_gaussian_codes([code], [dim]))
        rows.append({"kl_bits": kl, "dim": dim, "num_chunks": plan.num_chunks,
                     "log2_candidates": plan.log2_candidates, "encode_s": dt, "bits": nbits})
        print(f"KL={kl:3d} chunks={plan.num_chunks} N=2^{plan.log2_candidates} encode {dt:7.3f} s bits={nbits}")
    return rows


def padding_table(n=10_000, kl=1.0):
    rows = []
    base = SharedRandomness(3).key(PURPOSE_PFR)
    for dim in (1, 2):
        mu = jnp.full((dim,), math.sqrt(2 * kl * math.log(2) / dim), jnp.float32)
        for pad in (0, 1, 2, 4, 8):
            l2n = int(math.ceil(kl + pad))
            keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(base, 10 * dim + pad),
                                                           jnp.arange(n, dtype=jnp.uint32))
            idx = jax.jit(jax.vmap(lambda k: pfr._orc_search(k, mu, l2n, pfr._block_size(l2n, dim, 2**21))))(keys)
            e = np.asarray(jax.vmap(lambda k, i: pfr.gaussian_candidate(k, i, dim))(keys, idx) - mu)
            u = e @ np.asarray(mu) / float(jnp.linalg.norm(mu))
            ks = stats.kstest(u, "norm")
            rows.append({"dim": dim, "kl_bits": kl, "padding_bits": pad, "ks": ks.statistic, "ks_p": ks.pvalue,
                         "mean_bias": float(u.mean()), "var": float(u.var())})
            print(f"dim={dim} pad={pad} KS={ks.statistic:.4f} p={ks.pvalue:.2g} bias={u.mean():+.4f} var={u.var():.3f}")
    return rows


def main():
    OUT.mkdir(exist_ok=True)
    res = {"machine": {"devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
                       "jax": jax.__version__}}
    res["dq"] = bench_dq(); print(res["dq"])
    res["pfr_chunk"] = bench_pfr_chunk()
    res["chunked"] = bench_chunked()
    res["padding"] = padding_table()
    (OUT / "channel.json").write_text(json.dumps(res, indent=1, default=float))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for b in (8, 12, 16):
            rr = [r for r in res["pfr_chunk"] if r["log2_candidates"] == b]
            ax[0].semilogy([r["kl_bits"] for r in rr], [r["encode_s"] for r in rr], "o-", label=f"N=2^{b}")
        ax[0].set_xlabel("chunk KL [bits]"); ax[0].set_ylabel("encode time per chunk [s]"); ax[0].legend()
        rr = res["chunked"]
        ax[1].semilogy([r["kl_bits"] for r in rr], [r["encode_s"] for r in rr], "o-")
        ax[1].set_xlabel(f"total KL [bits], dim={rr[0]['dim']} (chunks of <=14 bits)"); ax[1].set_ylabel("encode [s]")
        fig.tight_layout(); fig.savefig(OUT / "channel.png", dpi=100)
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main()
