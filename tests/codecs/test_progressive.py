"""The progressive base (codecs/progressive.py) on a toy codec with no network: a real file per image,
truncation == steps, steps=0, rate points, options, tiling / whole-image layouts, and ideal bits checked
against the formula written here (scipy, float64), not through the codec's helpers.

The toy codec is also the smallest example of a progressive codec: one module-level registration, and
the per-step encode/decode and the reconstruction are all it implements.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gencomp_jax.channel import dq, randomness
from gencomp_jax.codecs import bitstream, progressive
from gencomp_jax.codecs.base import STEPS_OPTION, OptionError, register
from gencomp_jax.data import images

K = 3


def _width(i):
    return 0.25 ** i


def _scale(i):
    return 0.6 * _width(max(i - 1, 0))


def _factor(i):
    return 0.0 if i == 0 else 1.0


class ToyCodec(progressive.ProgressiveBase):
    """Step i moves z towards the image by dithered quantization of x on a cell 4^-i wide, coded under
    N(loc, s_i^2) convolved with the cell, loc = 0 at step 0 and z afterwards (the "network"):
    a diffusion-free Algorithm 1."""

    name = "toy_progressive"
    decode_options = (STEPS_OPTION, progressive.reconstruction_option(("plain", "half"), default="plain"))
    meta_fields = ("steps", "tile", "tile_batch")

    def __init__(self, *, tile=8, tile_batch=2, stride=1, params=None):
        super().__init__(params or {"w": np.zeros(2, np.float32)}, tile=tile, tile_batch=tile_batch,
                         stride=stride)
        self.calls = []                                   # chunk shapes the "network" saw

    def _meta(self):
        return {"steps": K}

    def _check_meta(self, meta):
        if meta["steps"] != K:
            raise bitstream.BitstreamError(f"toy file has {meta['steps']} steps, this codec {K}")
        super()._check_meta(meta)

    def num_segments(self, meta):
        return meta["steps"]

    def _loc(self, ctx, i, z):
        def net(zc, c):
            self.calls.append(zc.shape)
            return _factor(i) * zc
        return progressive.map_tiles(net, z, ctx.layout.batch)

    def _step(self, ctx, i, z):
        width = _width(i)
        w = dq.dither(ctx.shared.key(randomness.PURPOSE_DQ, i), ctx.layout.tiles_shape, width)
        loc = self._loc(ctx, i, z)
        return width, w, loc

    def _encode_step(self, ctx, i, z, *, code):
        width, w, loc = self._step(ctx, i, z)
        x_v, w_v, loc_v = ctx.at_valid(ctx.x, w, loc)
        scale_v = np.full_like(loc_v, _scale(i))
        if code:
            seg, y_v = dq.dq_encode(x_v, loc_v, scale_v, width, w=w_v, family="gaussian")
        else:
            seg, y_v = None, dq.dq_reconstruct(dq.dq_quantize(x_v, w_v, width), w_v, width)
        bits = float(np.sum(np.asarray(dq.dq_rate_proxy_bits(y_v, loc_v, scale_v, width), np.float64)))
        return seg, progressive.scatter_valid(loc, ctx.valid, y_v), bits

    def _decode_step(self, ctx, i, z, segment):
        width, w, loc = self._step(ctx, i, z)
        w_v, loc_v = ctx.at_valid(w, loc)
        y_v = dq.dq_decode(segment, loc_v, np.full_like(loc_v, _scale(i)), width, w=w_v, family="gaussian")
        return progressive.scatter_valid(loc, ctx.valid, y_v)

    def _reconstruct(self, ctx, z, steps, *, reconstruction):
        return images.to_uint8(z if reconstruction == "plain" else 0.5 * z, grid=self.grid)


register("toy_progressive", method=lambda config: None, codec=ToyCodec, codec_id=237)


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (-(-h // 8), -(-w // 8), 3)).astype(float)
    img = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _psnr(a, b):
    mse = np.mean((a.astype(float) - b) ** 2)
    return 10 * np.log10(255 ** 2 / mse) if mse else np.inf


def test_truncate_equals_steps_and_zero_steps():
    codec = ToyCodec()
    img = _image(13, 21)                                  # 2 x 3 tiles of 8, padded; 6 tiles in 3 chunks of 2
    data = codec.compress(img)
    sizes = progressive.segment_sizes(data)
    header, segs = bitstream.unpack(data)
    assert header.codec == "toy_progressive" and len(segs) == K and header.seed == progressive.DEFAULT_SEED
    head = len(data) - sum(sizes)
    assert sizes == [bitstream.framed_size(s) for s in segs]
    psnr = []
    for k in range(K + 1):
        prefix = codec.truncate(data, steps=k)
        assert len(prefix) == head + sum(sizes[:k]) and data.startswith(prefix)
        for r in ("plain", "half"):
            a = codec.decompress(prefix, reconstruction=r)            # truncated file: its complete segments
            np.testing.assert_array_equal(a, codec.decompress(data, steps=k, reconstruction=r))
        if k < K:                                                     # a cut inside segment k + 1
            np.testing.assert_array_equal(codec.decompress(data[:len(prefix) + sizes[k] // 2]),
                                          codec.decompress(data, steps=k))
        psnr.append(_psnr(codec.decompress(data, steps=k), img))
    assert psnr[0] < psnr[1] < psnr[2] < psnr[3] and psnr[3] > 40, psnr
    # steps=0 is X_T alone, drawn from the header's seed at zero rate
    lay = codec.layout(img.shape)
    x_T = randomness.SharedRandomness(header.seed).normal(progressive.PATH_PRIOR, lay.tiles_shape)
    np.testing.assert_array_equal(codec.decompress(data, steps=0),
                                  lay.from_tiles(images.to_uint8(x_T)))
    assert codec.truncate(data) == data and codec.truncate(codec.truncate(data, steps=1)) == data[:head + sizes[0]]
    with pytest.raises(ValueError, match="complete segments"):
        codec.decompress(codec.truncate(data, steps=1), steps=2)
    with pytest.raises(ValueError, match=r"steps must be in \[0, 3\]"):
        codec.decompress(data, steps=4)


def test_options_are_checked():
    codec = ToyCodec()
    data = codec.compress(_image(8, 8))
    with pytest.raises(OptionError, match="reconstruction"):
        codec.decompress(data, reconstruction="flow")
    with pytest.raises(OptionError, match="no decode option 'tau'"):
        codec.decompress(data, tau=1)
    with pytest.raises(OptionError, match=">= 0"):
        codec.truncate(data, steps=-1)
    with pytest.raises(OptionError, match="reconstruction"):
        codec.estimate_bits(_image(8, 8), reconstruction="nope")
    with pytest.raises(ValueError, match="seed"):
        codec.compress(_image(8, 8), seed=0)
    with pytest.raises(images.ImageError, match="uint8"):
        codec.compress(_image(8, 8).astype(np.float32))
    other = ToyCodec(params={"w": np.ones(2, np.float32)})
    with pytest.raises(bitstream.BitstreamError, match="model"):
        other.decompress(data)
    with pytest.raises(bitstream.BitstreamError, match="tile size"):
        ToyCodec(tile=16).decompress(data)


def test_rate_points():
    codec = ToyCodec()
    points = codec.rate_points()
    assert points == [{"steps": k, "reconstruction": r} for r in ("plain", "half") for k in range(K + 1)]
    assert codec.rate_points(reconstruction=["half"]) == [{"steps": k, "reconstruction": "half"}
                                                          for k in range(K + 1)]
    with pytest.raises(ValueError, match="steps"):
        codec.rate_points(steps=[1])
    with pytest.raises(OptionError):
        codec.rate_points(reconstruction=["flow"])


def _bits_by_formula(codec, data, k):
    """-log2 of the N(loc, s^2) * U(+-width/2) mass of the cell around z_k, from the decoded chain
    (scipy's normal CDF in float64)."""
    ctx, z_prev, _ = codec.decode(data, steps=k - 1)
    _, z, _ = codec.decode(data, steps=k)
    width, s = _width(k - 1), _scale(k - 1)
    y = np.asarray(z, np.float64)[ctx.valid]
    loc = _factor(k - 1) * np.asarray(z_prev, np.float64)[ctx.valid]
    mass = special.ndtr((y + width / 2 - loc) / s) - special.ndtr((y - width / 2 - loc) / s)
    return float(-np.sum(np.log2(mass)))


def test_estimate_bits_is_the_sum_of_independently_computed_step_bits():
    codec = ToyCodec()
    img = _image(16, 11, seed=3)
    data, bits = codec.compress_with_bits(img, seed=99)
    formula = [_bits_by_formula(codec, data, k) for k in range(1, K + 1)]
    np.testing.assert_allclose(bits, formula, rtol=1e-4)
    assert codec.step_bits(img, seed=99) == bits                       # no hidden state, same path
    for k in range(K + 1):
        assert codec.estimate_bits(img, seed=99, steps=k, reconstruction="half") == pytest.approx(
            sum(formula[:k]), rel=1e-4)
    assert codec.estimate_bits(img, seed=99) == pytest.approx(sum(formula), rel=1e-4)
    assert codec.bits_at(bits, steps=2, reconstruction="half") == pytest.approx(sum(formula[:2]), rel=1e-4)
    real = [8 * len(s) for s in bitstream.unpack(data)[1]]
    assert all(b - 64 <= r <= 1.02 * b + 64 for r, b in zip(real, bits)), (real, bits)


def test_layouts_and_fixed_shape_batches():
    for shape, tile, stride in [((13, 21), 8, 1), ((8, 8), 8, 4), ((17, 9), 0, 4), ((5, 7), 0, 1)]:
        lay = progressive.Layout.make(shape, tile=tile, stride=stride, batch=2)
        img = _image(*shape)
        tiles = lay.to_tiles(lay.pad(img))
        assert tiles.shape == lay.tiles_shape
        np.testing.assert_array_equal(lay.from_tiles(tiles), img)
        assert lay.valid().sum() == img.size
        np.testing.assert_array_equal(tiles[lay.valid()], lay.to_tiles(lay.pad(img))[lay.valid()])
        if not tile:
            assert lay.whole and lay.batch == 1 and lay.tile_h % stride == 0 and lay.tile_w % stride == 0
    with pytest.raises(ValueError, match="stride"):
        progressive.Layout.make((8, 8), tile=6, stride=4)
    codec = ToyCodec(tile=8, tile_batch=4)
    data = codec.compress(_image(13, 21))                  # 6 tiles: chunks of 4 and 2 (+2 zero tiles)
    assert set(codec.calls) == {(4, 8, 8, 3)}
    assert bitstream.unpack(data)[0].meta == b"\x03\x08\x04"        # steps, tile, tile_batch as varints


def test_whole_image_mode():
    codec = ToyCodec(tile=0, stride=4)
    img = _image(17, 9, seed=5)
    data = codec.compress(img)
    assert set(codec.calls) == {(1, 20, 12, 3)}                     # one piece, padded to the stride
    rec = codec.decompress(data)
    assert rec.shape == img.shape and _psnr(rec, img) > 40
    np.testing.assert_array_equal(codec.decompress(codec.truncate(data, steps=1)), codec.decompress(data, steps=1))
    assert math.isclose(codec.estimate_bits(img), sum(codec.step_bits(img)))
    assert ToyCodec(tile=0, stride=4).compress(img) == data          # deterministic, in a fresh codec
    with pytest.raises(bitstream.BitstreamError, match="tile size"):
        ToyCodec(tile=8).decompress(data)
    assert jnp.asarray(codec.decompress(data, steps=0)).dtype == jnp.uint8
