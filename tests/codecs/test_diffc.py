"""DiffC: I-MMSE on a Gaussian source, the law of the decoded X_tau, bits vs KL (Eq. 12), ODE vs ancestral
(3 dB), and real progressive files with a tiny VDM (prefixes, other processes, clear errors).

Gaussian tests use the exact denoiser E[X_0 | X_t] of a 2-D Gaussian source (theory/gaussian.py) as the
"model"; a batch of n source samples is one array [1, n, 2] (one "image" of 2n dimensions), coded by the
same chain (codecs/diffc.py `DiffCChain`) as an image.
"""

import dataclasses
import hashlib
import math
import pathlib
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gencomp_jax import registry
from gencomp_jax.channel import pfr
from gencomp_jax.channel.randomness import SharedRandomness
from gencomp_jax.codecs import bitstream, diffc
from gencomp_jax.codecs.base import OptionError
from gencomp_jax.config_utils import load_config
from gencomp_jax.diffusion import schedules
from gencomp_jax.entropy.varint import write_varint
from gencomp_jax.theory import gaussian

REPO = pathlib.Path(__file__).resolve().parents[2]
MU = np.array([0.5, -0.3], np.float32)
COV = np.array([[1.0, 0.3], [0.3, 0.5]], np.float32)
ALPHA_SIGMA = schedules.get_alpha_sigma("linear")   # VDM: log-SNR 13.3 at t = 0 to -5 at t = 1


def _source(n, seed=0):
    lam, u = np.linalg.eigh(COV)
    x = MU + (np.random.default_rng(seed).standard_normal((n, 2)) * np.sqrt(lam)) @ u.T
    return jnp.asarray(x[None], jnp.float32)


def _chain(schedule, **kw):
    return diffc.DiffCChain(diffc.gaussian_source_model(MU, COV, ALPHA_SIGMA), None, schedule.times(), **kw)


def _mi(t):
    a, s = ALPHA_SIGMA(jnp.float32(t))
    return float(gaussian.mutual_information((a / s) ** 2, COV))


# ---------------------------------------------------------------------------------------------------
# schedule


def test_step_schedules():
    u = diffc.StepSchedule.uniform(10)
    np.testing.assert_array_equal(u.grid(), np.arange(10, -1, -1))
    p = diffc.StepSchedule(base_steps=1000, num_steps=161, start=973, end=0, power=2.0)
    j = p.grid()
    assert j[0] == 1000 and j[1] == 973 and j[-1] == 0 and np.all(np.diff(j) < 0)
    gaps = -np.diff(j)
    assert gaps[1] > 10 and gaps[-1] == 1          # coarse near t = 1, every base step near t = 0
    assert np.all(j[-7:] == np.arange(6, -1, -1)) and len(j) == 156
    assert p.times().dtype == np.float32 and p.times()[1] == np.float32(0.973)
    with pytest.raises(ValueError, match="end < start"):
        diffc.StepSchedule(start=10, end=10)


# ---------------------------------------------------------------------------------------------------
# Gaussian source: I-MMSE, law of X_tau, bits vs KL, ODE vs ancestral


def test_immse_sum_of_step_kls_is_mutual_information():
    """Eq. (26): with the exact denoiser and a fine grid, E[sum of step KLs] from X_T ~ q(x_T | x_0) to
    tau equals I(X_0; X_tau) - I(X_0; X_T) (ideal chain: exact sampling of each step's q)."""
    n, tau = 20000, 0.5
    x0 = _source(n)
    target = _mi(tau) - _mi(1.0)
    sums = {}
    for k in (14, 350):
        chain = _chain(diffc.StepSchedule(base_steps=1000, num_steps=k, start=1000, end=int(1000 * tau)))
        _, bits = chain.ideal_chain(x0, SharedRandomness(5), exact_prior=True)
        sums[k] = sum(bits) / n
    assert abs(sums[350] / target - 1) < 0.02, (sums, target)
    # a coarse grid costs more (the Gaussian ELBO improves with more steps), by more than the MC error
    assert sums[14] > sums[350] * 1.02, sums


@pytest.fixture(scope="module")
def coded_gaussian():
    """10^4 dimensions coded by the real chain (chunked PFR, Renyi-2 default rule) in 3 steps 1 -> 0.85."""
    n = 5000
    x0 = _source(n, seed=1)
    chain = _chain(diffc.StepSchedule(base_steps=1000, num_steps=3, start=1000, end=850), max_chunk_bits=12)
    sr = SharedRandomness(7)
    z = chain.prior(sr, x0.shape)
    codes, kls = [], []
    for k in range(chain.num_steps):
        z, code, kl = chain.encode_step(z, x0, k, sr)
        codes.append(code)
        kls.append(kl)
    return x0, chain, sr, z, codes, kls


def test_decoded_x_tau_has_the_forward_law(coded_gaussian):
    x0, chain, _, z, _, _ = coded_gaussian
    a, s = ALPHA_SIGMA(jnp.float32(chain.times[-1]))
    r = np.asarray((z - a * x0) / s).ravel()
    assert r.size == 10**4
    assert stats.kstest(r, "norm").pvalue > 0.01
    assert abs(r.mean()) < 3 / math.sqrt(r.size) * 1.5 and abs(r.std() - 1) < 0.03


def test_decoder_reproduces_encoder_and_bits_obey_eq12(coded_gaussian):
    x0, chain, sr, z_enc, codes, kls = coded_gaussian
    dim = x0.size
    z = chain.prior(sr, x0.shape)
    for k, code in enumerate(chain.unpack_steps(chain.pack_steps(codes, dim), dim, 0)):
        z = chain.decode_step(z, k, code, sr)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_enc))  # bit-exact
    for code, kl in zip(codes, kls):
        plan = pfr.plan_chunks(code.kl_q, dim, max_chunk_bits=12)
        assert plan.num_chunks == len(code.indices)
        b = plan.chunk_kl_bits
        bound = float(np.sum(b + np.log2(b + 2) + 3))          # Eq. (12), per chunk
        real = 8 * len(chain.pack_steps([code], dim))
        # step count, KL varint and 3 stream lengths (bytes), and 3 ANS streams of whole 32-bit words
        framing = 8 * (1 + 2 + 3) + 3 * 32
        assert kl <= code.kl_q / pfr.KL_QUANT + 1e-6
        assert real <= bound + framing, (real, bound, kl)


def test_flow_beats_ancestral_by_3db_at_high_rate():
    """Theis et al.: at high rate the probability-flow reconstruction has half the MSE of ancestral
    sampling (exact denoiser: ancestral -> 2 tr Cov[X_0 | X_tau], flow -> pf_ode_mse)."""
    n, tau = 4000, 0.44                                          # SNR(tau) = e^5.25 ~ 190
    x0 = _source(n, seed=2)
    chain = _chain(diffc.StepSchedule(base_steps=100, num_steps=14, start=100, end=44))
    sr = SharedRandomness(3)
    z, _ = chain.ideal_chain(x0, sr, exact_prior=True)
    assert chain.times[-1] == np.float32(tau)
    mse = {m: float(jnp.mean(jnp.sum((chain.reconstruct(z, chain.num_steps, method=m, steps=100, shared=sr)
                                        - x0) ** 2, -1)))
           for m in ("flow", "ancestral", "denoise")}
    a, s = ALPHA_SIGMA(jnp.float32(tau))
    theory_anc = 2 * float(jnp.trace(gaussian.posterior_cov(a, s, COV)))
    theory_flow = float(gaussian.pf_ode_mse(a, s, COV))
    gain_db = 10 * math.log10(mse["ancestral"] / mse["flow"])
    assert abs(gain_db - 10 * math.log10(theory_anc / theory_flow)) < 0.5 and abs(gain_db - 3.0) < 0.5, mse
    assert abs(mse["flow"] / theory_flow - 1) < 0.1 and abs(mse["ancestral"] / theory_anc - 1) < 0.1, mse
    assert mse["denoise"] < mse["flow"]                          # the MMSE estimate is the best in MSE


# ---------------------------------------------------------------------------------------------------
# real files with a tiny VDM


def _config():
    cfg = load_config("diffc:runlocal")
    cfg.model.net = dict(arch="unet", ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), norm_groups=4)
    cfg.model.prediction = "x0"   # an untrained x0-predictor guesses ~0: small KLs
    d = cfg.model.diffc
    d.num_steps, d.end, d.segments, d.max_chunk_bits, d.first_bpp = 4, 840, 3, 12, 0.02
    return cfg


def _params(cfg):
    params = registry.make_method(cfg).init(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 16, 16, 3))})
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [a + 0.02 * jax.random.normal(k, a.shape)
                                               for a, k in zip(leaves, keys)])


def _image():
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, (2, 3, 3)), np.ones((8, 8, 1)))[:13, :21]
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def vdm_file():
    cfg = _config()
    params = _params(cfg)
    codec = registry.make_codec(cfg, params)
    img = _image()
    data, bits = codec.compress_with_bits(img)
    return cfg, params, codec, img, data, bits


def test_registration():
    entry = registry.get("diffc")
    assert entry.codec_id == 3 and entry.progressive and bitstream.base.codec_id("diffc") == 3
    assert {o.name for o in entry.decode_options} == {"steps", "reconstruction", "reconstruction_steps"}


def test_file_prefixes_decode_like_steps(vdm_file):
    _, _, codec, img, data, bits = vdm_file
    header = bitstream.unpack(data)[0]
    assert header.codec == "diffc" and header.num_segments == 3 and header.image_shape == img.shape
    ks = [codec.steps_received(data, steps=k)[0] for k in range(4)]
    assert ks[0] == 0 and ks[-1] == 4 and ks == sorted(ks)
    assert sum(bits) > 0 and len(bits) == 3
    for k, r in ((0, "denoise"), (1, "flow"), (2, "denoise"), (3, "ancestral")):
        prefix = codec.truncate(data, steps=k)
        out = codec.decompress(data, steps=k, reconstruction=r, reconstruction_steps=3)
        assert out.shape == img.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(codec.decompress(prefix, reconstruction=r, reconstruction_steps=3), out)
    assert len(codec.truncate(data, steps=1)) < len(data)
    assert codec.estimate_bits(img, steps=2) == pytest.approx(sum(bits[:2]))
    with pytest.raises(OptionError):
        codec.decompress(data, reconstruction="sde")
    with pytest.raises(OptionError):
        codec.decompress(data, lossless=True)


def test_decode_identical_in_another_process(vdm_file, tmp_path):
    cfg, params, codec, _, data, _ = vdm_file
    (tmp_path / "p.msgpack").write_bytes(flax.serialization.to_bytes(params))
    (tmp_path / "f.gcz").write_bytes(data)
    mine = codec.decompress(data)
    script = f"""
import hashlib, pathlib, jax, jax.numpy as jnp, flax.serialization, numpy as np
import sys; sys.path.insert(0, {str(REPO / 'tests' / 'codecs')!r})
from test_diffc import _config, _params
from gencomp_jax import registry
cfg = _config()
params = flax.serialization.from_bytes(_params(cfg), pathlib.Path({str(tmp_path / 'p.msgpack')!r}).read_bytes())
codec = registry.make_codec(cfg, params)
out = codec.decompress(pathlib.Path({str(tmp_path / 'f.gcz')!r}).read_bytes())
print(hashlib.sha256(out.tobytes()).hexdigest())
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == hashlib.sha256(mine.tobytes()).hexdigest()


def test_corrupt_truncated_foreign_and_diverged_files(vdm_file):
    cfg, params, codec, _, data, _ = vdm_file
    with pytest.raises(bitstream.BitstreamError, match="not a gencomp file"):
        codec.decompress(b"PNG and other things" * 3)
    with pytest.raises(bitstream.BitstreamError, match="truncated"):
        codec.decompress(data[:20])
    bad = bytearray(data)
    bad[-3] ^= 0x10
    with pytest.raises(bitstream.BitstreamError, match="checksum"):
        codec.decompress(bytes(bad))
    other = registry.make_codec(cfg, jax.tree_util.tree_map(lambda a: a * 1.01, params))
    with pytest.raises(bitstream.BitstreamError, match="model"):
        other.decompress(data)
    # a decoder whose floats differ in the last bits (another backend) must say so, not return an image
    m = codec.model
    nudged = diffc.DiffusionModel(apply=lambda p, z, t: m.apply(p, z, t) * (1 + 2**-20),
                                  alpha_sigma=m.alpha_sigma, prediction=m.prediction)
    diverged = diffc.DiffCCodec(cfg, params, model=nudged)
    with pytest.raises(bitstream.BitstreamError, match="diverged"):
        diverged.decompress(data)


def test_format1_file_is_refused_with_a_clear_error(vdm_file):
    """Files of the first DiffC format (other candidates, 11 meta fields) must not decode to a wrong image."""
    _, _, codec, _, data, _ = vdm_file
    header, segments = bitstream.unpack(data)
    meta = codec._parse_meta(header.meta)
    assert meta["format"] == diffc.FORMAT == 2
    old = [meta[f] for f in codec.meta_fields if f not in ("format", "margin_bits")]
    assert len(old) == diffc._FORMAT1_META_FIELDS
    old_file = bitstream.pack(dataclasses.replace(header, meta=b"".join(write_varint(v) for v in old)), segments)
    with pytest.raises(bitstream.BitstreamError, match="old DiffC format 1"):
        codec.decompress(old_file)
    with pytest.raises(bitstream.BitstreamError, match="old DiffC format 1"):   # a format-1 number, too
        codec.decompress(bitstream.pack(dataclasses.replace(header, meta=write_varint(1) + header.meta[1:]), segments))


def test_margin_bits_travels_in_the_file(vdm_file):
    """margin_bits (Renyi rule N = 2^ceil(2 B + margin)) is a header field: a file written with margin 4 has other
    chunk plans, and a codec configured with the default margin decodes it exactly like its writer."""
    cfg, params, codec, img, data, _ = vdm_file
    cfg4 = _config()
    cfg4.model.diffc.margin_bits = 4
    codec4 = registry.make_codec(cfg4, params)
    data4 = codec4.compress(img)
    meta4 = codec._parse_meta(bitstream.unpack(data4)[0].meta)
    assert meta4["margin_bits"] == 4 and codec.settings["margin_bits"] == pfr.RENYI_MARGIN_BITS
    assert codec4.chain(meta4)._plan_kw["margin_bits"] == 4
    assert data4 != data
    np.testing.assert_array_equal(codec.decompress(data4), codec4.decompress(data4))


def test_too_much_kl_for_the_dimensions_is_a_clear_error():
    """DiffC's empty-chunk bug: a step whose KL needs more chunks than dimensions must fail loudly."""
    cfg = _config()
    cfg.model.prediction = "eps"           # untrained eps-predictor: x0_hat = z / alpha, enormous KLs
    d = cfg.model.diffc
    d.num_steps, d.end, d.max_chunk_bits = 2, 0, 10
    codec = registry.make_codec(cfg, _params(cfg))
    with pytest.raises(ValueError, match="zero dimensions"):
        codec.compress(_image()[:8, :8])
