"""The integer hyperprior (issue 16 item 2): gencomp_jax/entropy/integer.py and the integer path of
codecs/latent.py / codecs/ntc.py.

References written here, independent of the module: integer (transposed) convolutions as int64 einsums
over explicitly dilated and padded inputs; the float path's own scale indexes (float32 h_s + float64
nearest-in-log-space rule) for the agreement rate and the rate in bits; a second Python process for
the round trip of a real file.
"""

import flax.serialization
import jax
import numpy as np
import pytest

from gencomp_jax import registry
from gencomp_jax.codecs import bitstream, fuzz, ntc
from gencomp_jax.codecs.latent import LatentCodec
from gencomp_jax.entropy import gaussian_conditional as gc
from gencomp_jax.entropy import integer
from gencomp_jax.models.hyperprior import HyperpriorLatent, hyper_synthesis_layers
from tests.codecs import generative_helpers

N, M = 8, 8


def _int_conv_reference(x, kernel, stride, lead):
    """int64 correlation of x [H, W, Cin] with kernel [k, k, Cin, Cout] after dilating x by `stride` and padding
    it by `lead` before / (k - 1 - lead + stride - 1) after (lax.conv_transpose "SAME" for k=5, s=2: lead 3;
    a stride-1 "SAME" conv: lead (k - 1) // 2)."""
    k = kernel.shape[0]
    h, w, c = x.shape
    d = np.zeros((stride * (h - 1) + 1, stride * (w - 1) + 1, c), x.dtype)
    d[::stride, ::stride] = x
    tail = k - 1 - lead + stride - 1
    d = np.pad(d, ((lead, tail), (lead, tail), (0, 0)))
    out = np.zeros((stride * h, stride * w, kernel.shape[-1]), np.result_type(x, kernel))
    for i in range(k):
        for j in range(k):
            out += np.einsum("hwc,co->hwo", d[i:i + stride * h, j:j + stride * w], kernel[i, j])
    return out


def test_integer_layers_equal_an_int64_reference_exactly():
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.3, (5, 5, 3, 6)).astype(np.float32)
    w1 = rng.normal(0, 0.3, (3, 3, 6, 5)).astype(np.float32)
    b0, b1 = rng.normal(0, 1, 6).astype(np.float32), rng.normal(0, 1, 5).astype(np.float32)
    net = integer.IntegerNetwork.convert([integer.Layer(w0, b0, stride=2), integer.Layer(w1, b1)],
                                         num_scales=64, lo=0.11, hi=256.0)
    x_sym = rng.integers(-40, 40, (3, 4, 3))
    offsets = rng.normal(0, 1, 3).astype(np.float32)
    accs, (f0, f1) = net.forward(x_sym, offsets)
    k0, k1 = net.weight_exponents
    # the formulas of the module docstring, evaluated here in int64 (float64 only to scale by 2^k, exact)
    q = lambda v, e: np.round(np.ldexp(np.asarray(v, np.float64), e)).astype(np.int64)  # noqa: E731
    a0 = np.clip((x_sym.astype(np.int64) << f0) + q(offsets, f0), -(2**23 - 1), 2**23 - 1)
    ref0 = _int_conv_reference(a0, q(w0, k0), 2, 3) + q(b0, f0 + k0)
    np.testing.assert_array_equal(accs[0], ref0)
    assert np.abs(ref0).max() > 2**35  # large accumulators: float64 rounding would show if it happened
    shift = f0 + k0 - f1
    a1 = np.clip((ref0 + (1 << (shift - 1))) >> shift, 0, 2**24 - 1)
    assert a1.max() >= 2**22  # the encoder's exponent uses the range (one bit of margin)
    np.testing.assert_array_equal(accs[1], _int_conv_reference(a1, q(w1, k1), 1, 1) + q(b1, f1 + k1))
    # the same network in floats, to within its rounding (16-bit weights: ~1e-4 of the output range; a wrong
    # exponent would be off by powers of 2)
    xf = (x_sym + offsets).astype(np.float64)
    hid = np.maximum(_int_conv_reference(xf, w0.astype(np.float64), 2, 3) + b0, 0)
    out = _int_conv_reference(hid, w1.astype(np.float64), 1, 1) + b1
    np.testing.assert_allclose(np.ldexp(accs[1].astype(np.float64), -(f1 + k1)), out, rtol=0,
                               atol=1e-3 * np.abs(out).max())


def test_thresholds_reproduce_the_float_index_rule():
    for rule, num in (("nearest", 256), ("ceil", 64)):
        table = gc.scale_table(num)
        for u in (20, 30):  # accumulator units 2^-u finer than the table spacing
            t = integer.thresholds(num, gc.SCALE_MIN, gc.SCALE_MAX, rule, u)
            for i in range(0, num - 1, 7):  # just below and at each threshold
                below, at = (gc.scale_indexes(np.ldexp(np.float64(v), -u), table, rule=rule) for v in (t[i] - 1, t[i]))
                assert (below, at) == (i, i + 1), (rule, u, i)


@pytest.fixture(scope="module")
def latent_codecs():
    """A random-init scale hyperprior with scales spread over the table, and its float / integer codecs."""
    latent = HyperpriorLatent(N=N, M=M)
    y = np.random.default_rng(1).normal(0, 4, (1, 16, 16, M)).astype(np.float32)
    variables = jax.device_get(latent.init(jax.random.PRNGKey(0), y, train=False))
    variables["params"]["h_s"]["conv2"]["bias"] = np.linspace(0.5, 6.0, M).astype(np.float32)
    return latent, variables, LatentCodec(latent, variables), LatentCodec(latent, variables, integer=True)


def test_integer_indexes_agree_with_the_float_path_and_cost_almost_no_bits(latent_codecs):
    _, _, flt, itg = latent_codecs
    rng = np.random.default_rng(2)
    z_sym = rng.integers(-6, 7, (8, 8, N))
    _, idx_f = flt._y_parameters(z_sym)
    idx_i, _ = itg._integer_indexes(z_sym, itg.z_tables(True)["medians"])
    agree = np.mean(idx_i == idx_f)
    print(f"integer == float index on {agree:.5f} of {idx_f.size} elements")
    assert agree >= 0.995 and np.abs(idx_i - idx_f).max() <= 1 and len(np.unique(idx_f)) > 30
    # ideal code length of y ~ N(0, scale) under each path's tables: within 0.05%
    y_sym = np.round(rng.normal(0, 1, idx_f.shape) * flt._y["scales"][idx_f]).astype(np.int64)
    t = flt._y

    def bits(idx):
        col = np.clip(y_sym - t["offsets"][idx], 0, t["lengths"][idx] - 1)
        return -np.log2(t["tables"][idx, col] / 2.0**16).sum()
    assert abs(bits(idx_i) / bits(idx_f) - 1) < 5e-4, (bits(idx_i), bits(idx_f))


def test_float_perturbations_leave_integer_decodes_bit_exact(latent_codecs):
    """The decoder's float h_s weights moved (1 ulp, then 1e-3 relative: another platform's float arithmetic,
    and one strong enough that the float path certainly changes indexes): float decodes of checked codes are
    refused, integer decodes stay exact."""
    latent, variables, flt, itg = latent_codecs
    ys = np.random.default_rng(3).normal(0, 4, (3, 16, 16, M)).astype(np.float32)
    header = lambda checks: bitstream.Header("hyperprior", b"\0" * 8, (64, 64, 3), checks=checks)  # noqa: E731
    coded = {name: c.encode_batch(ys, checks=True) for name, c in (("float", flt), ("integer", itg))}
    refused = 0
    for rel in (None, 1e-3):
        moved = jax.tree_util.tree_map(np.copy, variables)
        for layer in moved["params"]["h_s"].values():
            for key, v in layer.items():
                layer[key] = (np.nextafter(v, np.inf) if rel is None else v * (1 + rel)).astype(np.float32)
        dec_f = LatentCodec(latent, moved)
        dec_i = LatentCodec(latent, variables, integer=True)
        dec_i.variables = moved  # what its float functions would see: the integer path must not use them
        dec_i._integer_net = itg.integer_network
        for y, (segs, checks) in zip(ys, coded["integer"]):
            np.testing.assert_array_equal(dec_i.decode(segs, y.shape, header=header(checks)), np.round(y))
        for y, (segs, checks) in zip(ys, coded["float"]):
            try:
                np.testing.assert_array_equal(dec_f.decode(segs, y.shape, header=header(checks)), np.round(y))
            except bitstream.DecodeMismatchError:
                refused += 1
    assert refused >= 1  # the perturbation reaches the float path (the test has power)
    # conversion from 1-ulp-moved weights: a few kernel entries may round differently (a different model,
    # which the file's parameter fingerprint refuses); report how many
    moved = jax.tree_util.tree_map(lambda v: np.nextafter(v, np.inf).astype(np.float32), variables)
    net2 = integer.IntegerNetwork.convert(hyper_synthesis_layers(moved), num_scales=256, lo=gc.SCALE_MIN,
                                          hi=gc.SCALE_MAX, weight_bits=16, activation_bits=24)
    changed = sum(int(np.sum(a[0] != b[0])) for la, lb in zip(itg.integer_network.kernels, net2.kernels)
                  for a, b in zip(la, lb))
    print(f"kernel entries changed by converting 1-ulp-moved weights: {changed}")


def test_integer_file_round_trip_in_a_second_process_and_old_float_files(tmp_path):
    config = fuzz.tiny_config("hyperprior")
    params = fuzz.tiny_params(config)
    codec = registry.make_codec(config, params)
    image = fuzz.seed_images(1, 64)[0]
    data = codec.compress(image)
    header = bitstream.peek(data)
    assert codec.latent.integer and header.meta == ntc.INTEGER_META
    rec, again = generative_helpers.decode_in_fresh_process(config, params, data, tmp_path, encode=image)
    np.testing.assert_array_equal(rec, codec.decompress(data))
    assert again == data
    # float-path files (every file before the integer path) still decode, to the same image (same y symbols)
    with config.unlocked():
        config.model.integer_entropy = False
    flt = registry.make_codec(config, params)
    old = flt.compress(image)
    assert bitstream.peek(old).meta == b""
    np.testing.assert_array_equal(codec.decompress(old), rec)
    np.testing.assert_array_equal(flt.decompress(data), rec)
    # a damaged exponent byte is a clear error, never an overflow
    h, segs = bitstream.unpack(data)
    bad = bitstream.pack(h, [segs[0], bytes([255]) + segs[1][1:]])
    with pytest.raises(bitstream.BitstreamError, match="exponents"):
        codec.decompress(bad)


def test_thresholds_at_a_large_unit_exponent_saturate_instead_of_overflowing():
    """A near-zero h_s output (an untrained model) makes the encoder choose a large exponent u; hi * 2^u then
    exceeds int64 (a CLI evaluation crashed with OverflowError at u = 56). Thresholds beyond 2^62 saturate
    there, which no accumulator (< 2^52) reaches, so the indexes are those of the exact thresholds."""
    t = integer.thresholds(256, 0.11, 256.0, "nearest", 56)
    assert t.dtype == np.int64 and t[-1] == 2 ** 62 and np.all(np.diff(t) >= 0)
    acc = np.array([0, 2 ** 40, 2 ** 51], np.int64)  # scales 2^-56, 2^-16, 2^-5: all below lo = 0.11
    assert list(np.searchsorted(t, acc, side="right")) == [0, 0, 0]
