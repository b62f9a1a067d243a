"""UQDM progressive codec: exact lossless round trips, progressive prefixes, rates vs the loss, bit-exactness.

The model is the `runlocal` tiny network at initialisation with small random perturbations of every
parameter (so that predictions depend on the input); rate properties hold for any model, and a
trained model's numbers are in the engineer's report (experiments/uqdm_rd.py).
"""

import json
import os
import pathlib
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from PIL import Image

from gencomp_jax.channel import randomness
from gencomp_jax.codecs import bitstream, progressive
from gencomp_jax.config_utils import load_config
from gencomp_jax.codecs import uqdm as C
from gencomp_jax.models import uqdm as M

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
T = 4


def _config():
    return load_config("uqdm:runlocal")


def _params(cfg):
    model = M.UQDM(cfg.model)
    params = jax.jit(model.init)({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 32, 32, 3)),
                                 jax.random.PRNGKey(1))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    leaves = [a + 0.02 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


@pytest.fixture(scope="module")
def setup():
    cfg = _config()
    params = _params(cfg)
    return cfg, params, C.make_codec(cfg, params)


def _images():
    rng = np.random.default_rng(0)
    # smooth random images (closer to photos than white noise)
    base = rng.integers(0, 256, (4, 6, 6, 3)).astype(np.float64)
    big = np.kron(base, np.ones((1, 16, 16, 1)))[:, :64, :64]
    return np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)


def test_lossless_roundtrip_exact_any_size(setup):
    _, _, codec = setup
    imgs = _images()
    for img in (imgs[0, :32, :32], imgs[1, :20, :45]):   # one tile; padded to 2 tiles
        data = codec.compress(img)
        out = codec.decompress(data)
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(out, img)
        h, segs = bitstream.unpack(data)
        assert h.codec == "uqdm" and h.seed != 0 and len(segs) == T + 1


def test_progressive_prefixes(setup):
    _, _, codec = setup
    img = _images()[2, :32, :32]
    data = codec.compress(img)
    sizes = progressive.segment_sizes(data)
    header = len(data) - sum(sizes)
    assert header < 40
    psnr = []
    for k in range(T + 2):
        prefix = codec.truncate(data, steps=k)
        assert len(prefix) == header + sum(sizes[:k])          # prefix bits = sum of those segments
        for r in C.RECONSTRUCTIONS:
            a = codec.decompress(prefix, reconstruction=r)      # truncated file: complete segments only
            b = codec.decompress(data, steps=k, reconstruction=r)
            np.testing.assert_array_equal(a, b)
        # a cut inside segment k + 1 decodes like steps=k
        if k <= T:
            cut = data[:len(prefix) + sizes[k] // 2]
            np.testing.assert_array_equal(codec.decompress(cut), codec.decompress(data, steps=k))
        mse = np.mean((codec.decompress(data, steps=k).astype(float) - img) ** 2)
        psnr.append(10 * np.log10(255 ** 2 / mse) if mse else np.inf)
    assert psnr[-1] == np.inf and psnr[T] > psnr[1] + 10      # lossless at the end, sharper with bytes
    with pytest.raises(ValueError, match="steps"):
        codec.decompress(codec.truncate(data, steps=2), steps=3)
    with pytest.raises(ValueError, match="reconstruction"):
        codec.decompress(data, reconstruction="magic")


def test_rates_match_model(setup):
    """Real bytes per segment vs the ideal code length on the same path (coder overhead), and the real
    bytes per step (constriction's ANS on dq's integer tables: no bin_probability) vs the per-step KL terms
    of the loss (Monte Carlo, codec's z_T ~ N(0, I) path)."""
    cfg, params, codec = setup
    img = _images()[3]                                           # 64x64: 4 tiles
    seeds = [11, 12, 13, 14]
    real, ideal = [], []
    for s in seeds:
        data = codec.compress(img, seed=s)
        real.append([8 * len(x) for x in bitstream.unpack(data)[1]])
        ideal.append(codec.step_bits(img, seed=s))
        if s == seeds[0]:
            file_bits = 8 * len(data) - 32 * len(bitstream.unpack(data)[0].checks)  # the segments' checks apart
    real, ideal = np.array(real, float), np.array(ideal)
    # coder overhead per segment: < 0.5% + 8 bytes (ANS flush, dq's length prefix)
    assert np.all(np.abs(real - ideal) <= 0.005 * ideal + 64), (real, ideal)

    model = M.UQDM(cfg.model)
    x = jnp.asarray(np.repeat(img[None], 4, 0), jnp.float32) / 127.5 - 1.0
    terms = jax.jit(lambda p, k: model.apply(p, x, k, False, "prior"))(params, jax.random.PRNGKey(5))
    kl_bits = np.concatenate([np.asarray(terms["steps"]).mean(1), [np.asarray(terms["recon"]).mean()]])
    kl_bits = kl_bits / np.log(2)
    per_step = real.mean(0) - 48                                 # minus the ANS flush (~32-64 bits per segment)
    np.testing.assert_allclose(per_step, kl_bits, rtol=0.02)     # real bytes per step == per-step KL term
    nelbo = kl_bits.sum()
    assert abs(file_bits - nelbo) / nelbo < 0.01                 # real file size within 1% of the NELBO
    # the estimate of a 2-step prefix against the bytes of that prefix (independent of the ideal-bits path)
    est = codec.estimate_bits(img, seed=seeds[0], steps=2)
    assert abs(est - real[0, :2].sum()) <= 0.005 * est + 2 * 64


def test_errors(setup):
    cfg, params, codec = setup
    img = _images()[0, :16, :16]
    data = codec.compress(img)
    other = C.make_codec(cfg, jax.tree_util.tree_map(lambda a: a * 1.01, params))
    with pytest.raises(bitstream.BitstreamError, match="model"):
        other.decompress(data)
    with pytest.raises(ValueError, match="uint8"):
        codec.compress(img.astype(np.float32))
    with pytest.raises(ValueError, match="seed"):
        codec.compress(img, seed=0)
    bad = bytearray(data)
    bad[-3] ^= 0xFF
    with pytest.raises(bitstream.BitstreamError):
        codec.decompress(bytes(bad))
    assert len(codec.rate_points()) == 3 * (T + 2)


_CHILD = r"""
import json, sys
import jax, flax.serialization, numpy as np
jax.config.update("jax_compilation_cache_dir", sys.argv[4])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
sys.path.insert(0, sys.argv[5])
import importlib.util
spec = importlib.util.spec_from_file_location("c", sys.argv[5] + "/configs/uqdm.py")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from gencomp_jax.codecs import uqdm as C
from gencomp_jax.models import uqdm as M
import jax.numpy as jnp
cfg = mod.get_config("runlocal")
tmpl = jax.jit(M.UQDM(cfg.model).init)({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 32, 32, 3)), jax.random.PRNGKey(1))
params = flax.serialization.from_bytes(tmpl, open(sys.argv[1], "rb").read())
codec = C.make_codec(cfg, params)
img = np.load(sys.argv[2])
data = codec.compress(img)
other = open(sys.argv[3], "rb").read()
rec = [codec.decompress(other, steps=k, reconstruction=r).tolist() for k, r in [(2, "denoise"), (1, "ancestral"), (1, "flow")]]
print(json.dumps({"data": data.hex(), "rec": rec}))
"""


def test_bit_exact_across_processes_and_batches(setup, tmp_path):
    cfg, params, codec = setup
    imgs = _images()
    img = imgs[0, :32, :48]
    data = codec.compress(img)
    # same bytes after coding other images and shapes with the same codec (no hidden state / batching)
    codec.compress(imgs[1])
    codec.compress(imgs[2, :17, :9])
    assert codec.compress(img) == data
    # at the canonical shape, a tile's network output depends neither on its position in the chunk
    # nor on the other tiles (so tiles of any image size are coded identically on both sides)
    lay = codec.layout((64, 64, 3))
    z = randomness.SharedRandomness(5).normal(progressive.PATH_PRIOR, lay.tiles_shape)
    together = codec._net_reverse(z, 1, 4)[0]                    # 4 tiles in one call
    alone = jnp.concatenate([codec._net_reverse(z[j:j + 1], 1, 4)[0] for j in range(4)])  # + 3 zero tiles
    np.testing.assert_array_equal(together, alone)
    # another process (fresh jit, fresh RNG state) writes the same bytes and decodes ours identically
    (tmp_path / "p.msgpack").write_bytes(flax.serialization.to_bytes(params))
    np.save(tmp_path / "img.npy", img)
    (tmp_path / "f.gcz").write_bytes(data)
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "p.msgpack"), str(tmp_path / "img.npy"),
                          str(tmp_path / "f.gcz"), cache, str(REPO)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert bytes.fromhex(child["data"]) == data
    for got, (k, r) in zip(child["rec"], [(2, "denoise"), (1, "ancestral"), (1, "flow")]):
        np.testing.assert_array_equal(np.array(got, np.uint8), codec.decompress(data, steps=k, reconstruction=r))


def _golden_codec(**kwargs):
    """The codec of tests/golden/make_uqdm_golden.py, built from its config.json (old key names)."""
    import ml_collections

    cfg = ml_collections.ConfigDict(json.loads((GOLDEN / "uqdm_config.json").read_text()))
    assert "num_steps" in cfg.model and "unet" in cfg.model            # written with the old names
    params = flax.serialization.from_bytes(C.initial_params(cfg), (GOLDEN / "uqdm_params.msgpack").read_bytes())
    return C.make_codec(cfg, params, **kwargs)


def test_golden_file_of_44b2816_decodes_identically():
    """A file written by the code of commit 44b2816 (tests/golden/make_uqdm_golden.py) decodes to the same
    images at every stored (steps, reconstruction), and today's compress writes the same segments."""
    codec = _golden_codec()
    data = (GOLDEN / "uqdm_golden.gcz").read_bytes()
    img = np.asarray(Image.open(GOLDEN / "uqdm_image.png"))
    for png in sorted(GOLDEN.glob("uqdm_steps*_*.png")):
        k, r = png.stem[len("uqdm_steps"):].split("_")
        ref = np.asarray(Image.open(png))
        np.testing.assert_array_equal(codec.decompress(data, steps=int(k), reconstruction=r), ref, err_msg=png.name)
    np.testing.assert_array_equal(codec.decompress(data), img)          # lossless
    # today's compress in the file's table coding (CODING_FLOAT: no grid) writes the same header meta and
    # segments, as format version 2 with each segment's check
    old = bitstream.unpack(data)
    assert old[0].version == 1
    header, segments = bitstream.unpack(_golden_codec(coding=C.CODING_FLOAT).compress(img))
    assert segments == old[1] and header.meta == old[0].meta
    assert header.version == 2 and len(header.checks) == len(segments)
    # the default (quantized tables) is another file, recorded in the meta; it decodes losslessly
    new = codec.compress(img)
    header, segments = bitstream.unpack(new)
    assert header.meta == old[0].meta + bytes([C.CODING_GRID]) and segments != old[1]
    np.testing.assert_array_equal(codec.decompress(new), img)
