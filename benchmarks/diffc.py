"""DiffC benchmark: bits vs KL (Eq. 12 overhead), law of X_tau for both chunkings, ODE vs ancestral on a
Gaussian source, the speed of one chunked channel step, and encode / decode seconds of a 64x64 image with a
VDM; writes JSON.

    python benchmarks/diffc.py [--workdir runs/diffc] [--out benchmarks/results/diffc.json] [--quick]
    python benchmarks/diffc.py --skip-gaussian --workdir runs/diffc --setting renyi,16,8 --setting renyi,12,4 \
        --setting diffc,16 --setting diffc,12 --diffc num_steps=12 --diffc end=520

Channel part (`channel_speed`): one step of chunked Gaussian simulation over 64x64x3 = 12288 dimensions at a
saturated KL (every chunk at its budget, the cost of most steps of an image), per chunking setting: seconds
(warm), candidates scored per second and standard normals drawn per second (candidates x chunk dimensions).

Gaussian part: a 2-D Gaussian source (5000 samples = one array of 10^4 dimensions) with its exact
denoiser, coded by the codec's chain (codecs/diffc.py DiffCChain) from t = 1 to tau in 3 steps, for the
Renyi-2 default and DiffC's 2-bit rule. Per step: KL bits, real bits of the step's codes, chunks, the
Eq. (12) bound sum_c B_c + log2(B_c + 2) + 3; then the KS p-value of (X_tau - alpha x) / sigma against
N(0, 1) (10^4 values) and the bias of the chosen candidates along each chunk's mean direction (in
units of the step's std; s.e. = std / sqrt(chunks)). ODE vs ancestral: MSE of the flow (DDIM eta = 0)
and ancestral reconstructions from an ideal-chain X_tau at several tau, with the closed forms.

Image part: the 64x64 centre crop of Kodak kodim23 coded by the codec of `--workdir` (a trained
configs/diffc.py model; without it the runlocal VDM at initialisation, whose KLs are not meaningful);
encode and decode seconds (CPU model in the JSON), bits per segment (file) vs KL, candidates scored per
second, where a warm encode spends its time (cProfile: channel simulation, model calls, index coding), and
the PSNR of each reconstruction at every rate point; once per `--setting chunking,max_chunk_bits[,margin]`.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pathlib
import pstats
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _machine import describe, machine_info  # noqa: E402

from gencomp_jax import registry  # noqa: E402
from gencomp_jax.channel import index_coding, pfr  # noqa: E402
from gencomp_jax.channel.randomness import SharedRandomness  # noqa: E402
from gencomp_jax.codecs import bitstream, diffc, progressive  # noqa: E402
from gencomp_jax.diffusion import schedules  # noqa: E402
from gencomp_jax.theory import gaussian  # noqa: E402

MU = np.array([0.5, -0.3], np.float32)
COV = np.array([[1.0, 0.3], [0.3, 0.5]], np.float32)
ALPHA_SIGMA = schedules.get_alpha_sigma("linear")


def _source(n, seed):
    lam, u = np.linalg.eigh(COV)
    x = MU + (np.random.default_rng(seed).standard_normal((n, 2)) * np.sqrt(lam)) @ u.T
    return jnp.asarray(x[None], jnp.float32)


def _chunk_bias(sr, k, code, mq, mp, std, sample, max_chunk_bits, padding_bits):
    """Per-chunk component of the chosen standardised candidate minus the target mean, along that mean."""
    mu = (np.asarray(mq, np.float64).ravel() - np.asarray(mp, np.float64).ravel()) / float(std)
    z = (np.asarray(sample, np.float64).ravel() - np.asarray(mp, np.float64).ravel()) / float(std)
    plan = pfr.plan_chunks(code.kl_q, mu.size, max_chunk_bits=max_chunk_bits, padding_bits=padding_bits)
    perm = sr.permutation((pfr.PURPOSE_SHUFFLE, k), mu.size)
    out = []
    for c in range(plan.num_chunks):
        sel = perm[plan.offsets[c]: plan.offsets[c + 1]]
        m = mu[sel]
        nm = np.linalg.norm(m)
        if nm > 0:
            out.append(float((z[sel] - m) @ m / nm))
    return np.asarray(out)


def gaussian_chunking(chunking: str, max_chunk_bits: int, *, tau: float = 0.85, n: int = 5000) -> dict:
    x0 = _source(n, 1)
    sched = diffc.StepSchedule(base_steps=1000, num_steps=3, start=1000, end=int(round(1000 * tau)))
    model = diffc.gaussian_source_model(MU, COV, ALPHA_SIGMA)
    chain = diffc.DiffCChain(model, None, sched.times(), chunking=chunking, max_chunk_bits=max_chunk_bits)
    sr = SharedRandomness(7)
    z = chain.prior(sr, x0.shape)
    steps, biases = [], []
    t0 = time.perf_counter()
    for k in range(chain.num_steps):
        mu_p, std = chain.reverse(z, k)
        mu_q = chain.target_mean(z, x0, k)
        z_next, code, kl = chain.encode_step(z, x0, k, sr)
        b = _chunk_bias(sr, k, code, mu_q, mu_p, std, z_next, max_chunk_bits, chain.padding_bits)
        biases.append(b)
        plan = pfr.plan_chunks(code.kl_q, x0.size, max_chunk_bits=max_chunk_bits, padding_bits=chain.padding_bits)
        cb = plan.chunk_kl_bits
        real = 8 * len(chain.pack_steps([code], x0.size))
        steps.append(dict(t=float(chain.times[k]), s=float(chain.times[k + 1]), kl_bits=kl, real_bits=real,
                          chunks=plan.num_chunks, log2_candidates=plan.log2_candidates,
                          eq12_bound_bits=float(np.sum(cb + np.log2(cb + 2) + 3)),
                          real_over_kl=real / kl if kl > 0 else None,
                          bias_along_mu=float(b.mean()), bias_se=float(b.std() / math.sqrt(max(len(b), 1)))))
        z = z_next
    seconds = time.perf_counter() - t0
    a, s = ALPHA_SIGMA(jnp.float32(chain.times[-1]))
    r = np.asarray((z - a * x0) / s).ravel()
    allb = np.concatenate(biases)
    kl_tot, real_tot = sum(x["kl_bits"] for x in steps), sum(x["real_bits"] for x in steps)
    return dict(chunking=chunking, max_chunk_bits=max_chunk_bits, tau=float(chain.times[-1]), dims=int(x0.size),
                steps=steps, kl_bits=kl_tot, real_bits=real_tot, real_over_kl=real_tot / kl_tot,
                ks_pvalue=float(stats.kstest(r, "norm").pvalue), residual_mean=float(r.mean()),
                residual_std=float(r.std()), bias_along_mu=float(allb.mean()),
                bias_se=float(allb.std() / math.sqrt(len(allb))), chunks=int(len(allb)), encode_seconds=seconds)


def ode_vs_ancestral(*, n: int = 4000, recon_steps: int = 100) -> list[dict]:
    x0 = _source(n, 2)
    model = diffc.gaussian_source_model(MU, COV, ALPHA_SIGMA)
    out = []
    for end in (80, 60, 44, 30):   # tau = end / 100: SNR from ~0.03 to ~3000
        chain = diffc.DiffCChain(model, None, diffc.StepSchedule(base_steps=100, num_steps=100 - end, start=100,
                                                                 end=end).times())
        sr = SharedRandomness(3)
        z, _ = chain.ideal_chain(x0, sr, exact_prior=True)
        mse = {m: float(jnp.mean(jnp.sum((chain.reconstruct(z, chain.num_steps, method=m, steps=recon_steps,
                                                             shared=sr) - x0) ** 2, -1)))
               for m in ("denoise", "flow", "ancestral")}
        a, s = ALPHA_SIGMA(jnp.float32(end / 100))
        th = {"ancestral": 2 * float(jnp.trace(gaussian.posterior_cov(a, s, COV))),
              "flow": float(gaussian.pf_ode_mse(a, s, COV)),
              "denoise": float(jnp.trace(gaussian.posterior_cov(a, s, COV)))}
        out.append(dict(tau=end / 100, snr=float((a / s) ** 2),
                        rate_bits_per_sample=float(gaussian.mutual_information((a / s) ** 2, COV)),
                        mse=mse, mse_theory=th,
                        flow_gain_db=10 * math.log10(mse["ancestral"] / mse["flow"]),
                        flow_gain_db_theory=10 * math.log10(th["ancestral"] / th["flow"])))
    return out


SETTINGS = (("renyi", 16, 8), ("renyi", 12, 4), ("diffc", 16, 8), ("diffc", 12, 8))


def channel_speed(settings=SETTINGS, *, dim: int = 64 * 64 * 3, kl_bits: float = 400.0) -> list[dict]:
    """Seconds of one chunked channel step (gaussian_channel_encode + decode) at `kl_bits` over `dim` dims."""
    mu = np.random.default_rng(0).normal(0, 1, dim).astype(np.float32)
    mu *= math.sqrt(2 * kl_bits * math.log(2)) / np.linalg.norm(mu)
    out = []
    for chunking, mcb, margin in settings:
        kw = dict(max_chunk_bits=mcb, padding_bits=None if chunking == "renyi" else pfr.DIFFC_PADDING_BITS,
                  margin_bits=margin)
        sr = SharedRandomness(1)
        t0 = time.perf_counter()
        _, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=sr, step=0, **kw)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sample, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=sr, step=1, **kw)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = pfr.gaussian_channel_decode(code, jnp.zeros(dim), 1.0, randomness=sr, step=1, **kw)
        np.asarray(dec)
        dec_s = time.perf_counter() - t0
        assert np.array_equal(np.asarray(dec), np.asarray(sample))
        plan = pfr.plan_chunks(code.kl_q, dim, **kw)
        cands = plan.num_chunks << plan.log2_candidates
        bits = 8 * len(index_coding.encode_gaussian_codes([code], [dim], **kw))
        out.append(dict(chunking=chunking, max_chunk_bits=mcb, margin_bits=margin if chunking == "renyi" else None,
                        dims=dim, kl_bits=kl_bits, chunks=plan.num_chunks, log2_candidates=plan.log2_candidates,
                        encode_seconds_first=first, encode_seconds=warm, decode_seconds=dec_s,
                        candidates_per_second=cands / warm, normals_per_second=(1 << plan.log2_candidates) * dim / warm,
                        bits=bits, bits_over_kl=bits / kl_bits))
        print(f"channel step {chunking} max {mcb} margin {margin}: {plan.num_chunks} chunks x 2^{plan.log2_candidates}: "
              f"encode {warm:.2f} s (first {first:.1f} s), decode {dec_s:.3f} s, "
              f"{cands / warm / 1e6:.1f} M candidates/s, {(1 << plan.log2_candidates) * dim / warm / 1e6:.0f} M normals/s, "
              f"{bits / kl_bits:.2f} bits/KL", flush=True)
    return out


def _candidate_counts(codec, data) -> tuple[int, int]:
    """(candidates scored, standard normals drawn) by the encoder of `data` (from the file's chunk plans)."""
    header, segments = bitstream.unpack(data)
    meta = codec._parse_meta(header.meta)
    chain = codec.chain(meta)
    dim = int(np.prod(header.image_shape))
    k, cands, normals = 0, 0, 0
    for seg in segments:
        body = seg[:-2] if seg[:1] != b"\x00" else seg
        for code in chain.unpack_steps(body, dim, k):
            plan = pfr.plan_chunks(code.kl_q, dim, **chain._plan_kw)
            cands += plan.num_chunks << plan.log2_candidates
            normals += (1 << plan.log2_candidates) * dim
            k += 1
    return cands, normals


_PROFILED = {"gaussian_channel_encode": "channel simulation (PFR search + sample)",
             "reverse": "model: p(x_s | x_t) (UNet call)", "target_mean": "model: q(x_s | x_t, x_0)",
             "encode_gaussian_codes": "index coding", "_state_check": "x_t CRC"}


def _profile_encode(codec, img) -> dict:
    """cProfile of one warm encode: cumulative seconds of the encoder's parts."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    codec.compress(img)
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    out = {"total": total}
    for (filename, _, func), row in stats.stats.items():
        if func in _PROFILED and ("diffc" in filename or "pfr" in filename or "index_coding" in filename):
            out[_PROFILED[func]] = out.get(_PROFILED[func], 0.0) + row[3]
    return out


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def image_timing(workdir: str | None, *, reconstruction_steps: int = 20, overrides: dict | None = None) -> dict:
    from gencomp_jax.data import load_eval_set

    if workdir:
        from gencomp_jax.train import checkpoint

        config, params = checkpoint.load_params(pathlib.Path(workdir), ema=True)
    else:
        from gencomp_jax.config_utils import load_config

        config = load_config("diffc:runlocal")
        params = registry.make_method(config).init(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 32, 32, 3))})
    config.method = "diffc"
    for k, v in (overrides or {}).items():
        config.model.diffc[k] = v
    codec = registry.make_codec(config, params)
    img = dict(load_eval_set("kodak"))["kodim23"]
    h, w = img.shape[:2]
    img = np.ascontiguousarray(img[h // 2 - 32: h // 2 + 32, w // 2 - 32: w // 2 + 32])
    t0 = time.perf_counter()
    data, seg_kl = codec.compress_with_bits(img)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    codec.decompress(data)
    dec_denoise = time.perf_counter() - t0
    # a second encode of the same image: compiled programs warm (the first pays XLA compiles), profiled
    prof = _profile_encode(codec, img)
    enc_warm = prof["total"]
    cands, normals = _candidate_counts(codec, data)
    t0 = time.perf_counter()
    codec.decompress(data)
    dec_warm = time.perf_counter() - t0
    header = bitstream.unpack(data)[0]
    sizes = progressive.segment_sizes(data)
    head = len(data) - sum(sizes)
    points = []
    for k in range(header.num_segments + 1):
        steps, tau = codec.steps_received(data, steps=k)
        pt = dict(segments=k, diffusion_steps=steps, tau=tau, bpp=8 * (head + sum(sizes[:k])) / (64 * 64), kl_bpp=sum(seg_kl[:k]) / (64 * 64))
        for r in ("denoise", "flow", "ancestral"):
            t0 = time.perf_counter()
            out = codec.decompress(data, steps=k, reconstruction=r, reconstruction_steps=reconstruction_steps)
            pt[f"psnr_{r}"] = _psnr(out, img)
            pt[f"decode_seconds_{r}"] = time.perf_counter() - t0
        points.append(pt)
    ideal = codec.ideal(img)[0]
    return dict(workdir=workdir, settings=dict(codec.settings), image="kodim23 centre 64x64",
                encode_seconds_first=enc, encode_seconds_warm=enc_warm, decode_seconds_first=dec_denoise,
                decode_seconds_warm=dec_warm, file_bytes=len(data), file_bpp=8 * len(data) / (64 * 64),
                kl_bpp=sum(seg_kl) / (64 * 64), file_over_kl=8 * len(data) / max(sum(seg_kl), 1e-9),
                candidates=cands, normals=normals, candidates_per_second_warm=cands / enc_warm,
                normals_per_second_warm=normals / enc_warm, encode_profile_seconds=prof,
                ideal_kl_bpp_all_steps=sum(ideal) / (64 * 64), segment_kl_bits=seg_kl, points=points)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "diffc.json"))
    ap.add_argument("--quick", action="store_true", help="Gaussian part only at max_chunk_bits 12")
    ap.add_argument("--skip-gaussian", action="store_true")
    ap.add_argument("--skip-image", action="store_true")
    ap.add_argument("--skip-channel", action="store_true")
    ap.add_argument("--setting", action="append", default=[],
                    help="chunking,max_chunk_bits[,margin_bits] of one image run (repeatable; default: the config's)")
    ap.add_argument("--diffc", action="append", default=[],
                    help="KEY=VALUE overrides of config.model.diffc for the image codec (repeatable), e.g. "
                         "max_chunk_bits=12, chunking=diffc, num_steps=15, end=400")
    args = ap.parse_args()
    res = dict(cpu=describe(machine_info(jax=False)), cores=os.cpu_count(), jax=jax.__version__, backend=jax.default_backend(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               load_average=os.getloadavg()[0])
    if not args.skip_gaussian:
        configs = [("renyi", 12), ("diffc", 12)] if args.quick else [("renyi", 12), ("renyi", 16), ("diffc", 16)]
        res["gaussian_chunking"] = []
        for ch, mcb in configs:
            r = gaussian_chunking(ch, mcb)
            res["gaussian_chunking"].append(r)
            print(f"{ch:5s} max {mcb}: KL {r['kl_bits']:.0f} bits, real {r['real_bits']} bits "
                  f"({r['real_over_kl']:.2f}x), KS p {r['ks_pvalue']:.3g}, bias along mu {r['bias_along_mu']:+.3f} "
                  f"+- {r['bias_se']:.3f} ({r['chunks']} chunks), {r['encode_seconds']:.1f} s", flush=True)
        res["ode_vs_ancestral"] = ode_vs_ancestral()
        for r in res["ode_vs_ancestral"]:
            print(f"tau {r['tau']:.2f} SNR {r['snr']:.3g}: flow gain {r['flow_gain_db']:.2f} dB "
                  f"(theory {r['flow_gain_db_theory']:.2f}); MSE {r['mse']}", flush=True)
    if not (args.quick or args.skip_channel):
        res["channel_step"] = channel_speed()
    if not (args.quick or args.skip_image):
        from gencomp_jax.config_utils import parse_value

        ov = {k: parse_value(v) for k, v in (o.split("=", 1) for o in args.diffc)}
        res["image"] = []
        for setting in args.setting or [None]:
            o = dict(ov)
            if setting:
                parts = setting.split(",")
                o.update(chunking=parts[0], max_chunk_bits=int(parts[1]))
                if len(parts) > 2:
                    o["margin_bits"] = int(parts[2])
            im = image_timing(args.workdir, overrides=o)
            res["image"].append(im)
            print(f"64x64 {setting or 'config'}: encode {im['encode_seconds_first']:.1f} s (warm "
                  f"{im['encode_seconds_warm']:.1f} s), decode {im['decode_seconds_first']:.1f} s (warm "
                  f"{im['decode_seconds_warm']:.1f} s), {im['file_bpp']:.3f} bpp file vs {im['kl_bpp']:.3f} bpp KL, "
                  f"{im['candidates_per_second_warm'] / 1e6:.1f} M candidates/s; profile "
                  f"{ {k: round(v, 2) for k, v in im['encode_profile_seconds'].items()} }", flush=True)
            for p in im["points"]:
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()}, flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
