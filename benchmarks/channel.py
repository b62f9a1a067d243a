"""Channel-simulation benchmark: DQ throughput, finite-N PFR time/bits vs KL, padding-vs-bias table,
and the entropy coder's escape code (what DQ and every table coder fall back on out of support).

Writes benchmarks/results/channel.json and benchmarks/results/channel.png.
Run: PYTHONPATH=. .venv/bin/python benchmarks/channel.py [section ...]
(sections: dq pfr_chunk chunked padding escapes; naming some re-runs only those and updates their
entries in channel.json).
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
from gencomp_jax.entropy import coder  # noqa: E402

from _machine import machine_info  # noqa: E402  (benchmarks/ is sys.path[0]: the one "which CPU" helper)

OUT = pathlib.Path(__file__).resolve().parent / "results"


def _time_dq(x, loc, scale, w, family, delta=1.0):
    k = x.shape[0]
    dq.dq_encode(x, loc, scale, delta, w=w, family=family)  # warm-up: same shapes -> compiled tables
    load = os.getloadavg()[0]
    t = time.perf_counter(); data, y = dq.dq_encode(x, loc, scale, delta, w=w, family=family); te = time.perf_counter() - t
    t = time.perf_counter(); y2 = dq.dq_decode(data, loc, scale, delta, w=w, family=family); td = time.perf_counter() - t
    assert np.array_equal(np.asarray(y), np.asarray(y2))
    ideal = float(jnp.mean(dq.dq_bits(dq.dq_quantize(x, w, delta), w, loc, scale, delta, family=family)))
    return {"k": k, "family": family, "encode_s": te, "decode_s": td,
            "elements_per_s_encode_plus_decode": k / (te + td), "bits_per_element": 8 * len(data) / k,
            "ideal_bits_per_element": ideal, "load_avg_1min": load}


def bench_dq(k=10**6):
    """k = 10^6 elements: N(0, 9) source with a matched model (scale/delta = 3), and a UQDM-like mix
    with scale/delta log-uniform in [0.05, 50] (adaptive supports: many classes)."""
    rng = np.random.default_rng(0)
    w = dq.dither(jax.random.key(0), (k,), 1.0)
    rows = []
    for fam, s in (("gaussian", 3.0), ("logistic", 3.0 * math.sqrt(3) / math.pi)):
        x = (rng.normal(0, 3.0, k)).astype(np.float32)
        rows.append(dict(_time_dq(x, jnp.zeros(k), s, w, fam), case="scale/delta = 3"))
    sc = np.exp(rng.uniform(math.log(0.05), math.log(50), k)).astype(np.float32)
    x = (rng.normal(0, 1, k) * sc).astype(np.float32)
    for fam in ("gaussian", "logistic"):
        rows.append(dict(_time_dq(x, jnp.zeros(k), sc, w, fam), case="scale/delta log-uniform [0.05, 50]"))
    for r in rows:
        print(f"DQ {r['family']:8s} {r['case']:36s} enc {r['encode_s']:.3f} s dec {r['decode_s']:.3f} s "
              f"{r['elements_per_s_encode_plus_decode']:,.0f} el/s  bits/el {r['bits_per_element']:.4f} "
              f"(ideal {r['ideal_bits_per_element']:.4f})  load {r['load_avg_1min']:.1f}")
    return rows


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


def bench_chunked(dim=1024):
    """Time and bits vs KL for the default (Renyi-2, N = 2**ceil(2 KL_c + 8), chunks <= 4 bits) and DiffC's
    padding (N = 2**ceil(KL_c + 2), chunks <= 14 bits): ~2**(2 KL) per chunk until the cap, then linear
    in the number of chunks."""
    rows = []
    r = SharedRandomness(2)
    for rule, opts in (("renyi2_default", {}), ("diffc_padding2", {"padding_bits": pfr.DIFFC_PADDING_BITS})):
        for kl in (1, 2, 3, 4, 8, 14, 28, 56):
            mu = np.full(dim, math.sqrt(2 * kl * math.log(2) / dim), np.float32)
            pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=r, step=0, **opts)  # compile
            t = time.perf_counter()
            _, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=r, step=1, **opts)
            dt = time.perf_counter() - t
            plan = pfr.plan_chunks(code.kl_q, dim, **opts)
            # bits averaged over 4 steps (index code lengths are random)
            codes = [pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=r, step=s, **opts)[1] for s in range(2, 6)]
            nbits = 8 * len(index_coding.encode_gaussian_codes(codes, [dim] * len(codes), **opts)) / len(codes)
            rows.append({"rule": rule, "kl_bits": kl, "dim": dim, "num_chunks": plan.num_chunks,
                         "log2_candidates": plan.log2_candidates, "encode_s": dt, "bits": nbits,
                         "load_avg_1min": os.getloadavg()[0]})
            print(f"{rule:15s} KL={kl:3d} chunks={plan.num_chunks:2d} N=2^{plan.log2_candidates} encode {dt:7.3f} s "
                  f"bits/step={nbits:6.1f}")
    return rows


def padding_table(n=10_000):
    """Bias of the component along mu (sigma units; s.e. 0.01 at n = 10^4) and KS vs log2 N.

    Rule "kl+p": log2 N = ceil(KL + p) (DiffC: p = 2); rule "2kl+m": log2 N = ceil(2 KL + m) (the default,
    m = 8).  At fixed m the bias is ~KL-independent (~0.9 * 2^-m sigma): the Renyi-2 law."""
    rows = []
    base = SharedRandomness(3).key(PURPOSE_PFR)
    cases = ([(1.0, "kl+p", p) for p in (0, 1, 2, 4, 8)] + [(kl, "2kl+m", m) for kl in (1.0, 2.0) for m in (2, 4, 6, 8)]
             + [(4.0, "kl+p", 2), (4.0, "2kl+m", 2), (4.0, "2kl+m", 4)])
    for dim in (1, 2):
        for ci, (kl, rule, v) in enumerate(cases):
            mu = jnp.full((dim,), math.sqrt(2 * kl * math.log(2) / dim), jnp.float32)
            l2n = int(math.ceil((kl if rule == "kl+p" else 2 * kl) + v))
            keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(base, 100 * dim + ci),
                                                           jnp.arange(n, dtype=jnp.uint32))
            idx = jax.jit(jax.vmap(lambda k: pfr._orc_search(k, mu, l2n, pfr._block_size(l2n, dim, 2**21))))(keys)
            e = np.asarray(jax.vmap(lambda k, i: pfr.gaussian_candidate(k, i, dim))(keys, idx) - mu)
            u = e @ np.asarray(mu) / float(jnp.linalg.norm(mu))
            ks = stats.kstest(u, "norm")
            rows.append({"dim": dim, "kl_bits": kl, "rule": rule, "extra_bits": v, "log2_candidates": l2n,
                         "ks": ks.statistic, "ks_p": ks.pvalue, "mean_bias": float(u.mean()),
                         "bias_se": float(u.std() / math.sqrt(n)), "var": float(u.var())})
            print(f"dim={dim} KL={kl} {rule}={v} N=2^{l2n} KS={ks.statistic:.4f} p={ks.pvalue:.2g} "
                  f"bias={u.mean():+.4f} var={u.var():.3f}")
    return rows


def bench_escapes(n=200_000, reps=3):
    """encode_indexed / decode_indexed of n symbols (4 tables of 9 entries) with a fraction of escapes
    (values up to 10^12 away: 3 chunks each), best of `reps`."""
    rng = np.random.default_rng(0)
    tables = coder.quantize_pmf(rng.random((4, 9)) + 0.1)
    offsets, ti = np.full(4, -4), rng.integers(0, 4, n)
    rows = []
    for frac in (0.0, 0.01, 0.2):
        vals = rng.integers(-4, 4, n)
        esc = rng.random(n) < frac
        vals[esc] = rng.integers(-10**12, 10**12, int(esc.sum()))
        te = td = float("inf")
        for _ in range(reps):
            t = time.perf_counter(); data = coder.encode_indexed(vals, tables, offsets, ti); te = min(te, time.perf_counter() - t)
            t = time.perf_counter(); out = coder.decode_indexed(data, tables, offsets, ti); td = min(td, time.perf_counter() - t)
        assert np.array_equal(out, vals)
        rows.append({"n": n, "escape_fraction": frac, "encode_s": te, "decode_s": td, "bytes": len(data)})
        print(f"escapes {frac:.0%} of {n}: encode {te:.3f}s decode {td:.3f}s ({len(data)} bytes)")
    return rows


SECTIONS = {"dq": lambda: bench_dq(), "pfr_chunk": lambda: bench_pfr_chunk(), "chunked": lambda: bench_chunked(),
            "padding": lambda: padding_table(), "escapes": lambda: bench_escapes()}


def main(sections=()):
    OUT.mkdir(exist_ok=True)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    machine = {**machine_info(), "date": time.strftime("%Y-%m-%d")}
    path = OUT / "channel.json"
    res = json.loads(path.read_text()) if sections and path.exists() else {}
    for name in sections or SECTIONS:
        res[name] = SECTIONS[name]()
        res.setdefault("machine_by_section", {})[name] = machine
    res["machine"] = res.get("machine", machine) if sections else machine
    path.write_text(json.dumps(res, indent=1, default=float))
    if "pfr_chunk" not in res or "chunked" not in res:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for b in (8, 12, 16):
            rr = [r for r in res["pfr_chunk"] if r["log2_candidates"] == b]
            ax[0].semilogy([r["kl_bits"] for r in rr], [r["encode_s"] for r in rr], "o-", label=f"N=2^{b}")
        ax[0].set_xlabel("chunk KL [bits]"); ax[0].set_ylabel("encode time per chunk [s]"); ax[0].legend()
        for rule in ("renyi2_default", "diffc_padding2"):
            rr = [r for r in res["chunked"] if r["rule"] == rule]
            ax[1].semilogy([r["kl_bits"] for r in rr], [r["encode_s"] for r in rr], "o-", label=rule)
        ax[1].set_xlabel(f"total KL [bits], dim={rr[0]['dim']}"); ax[1].set_ylabel("encode [s]"); ax[1].legend()
        fig.tight_layout(); fig.savefig(OUT / "channel.png", dpi=100)
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main(tuple(sys.argv[1:]))
