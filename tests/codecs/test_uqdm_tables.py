"""UQDM quantized coding tables (issue 16 item 3): the grid, its record in the file, and perturbed decoders.

The grid is checked against its definition written here in float64 (not through uqdm.table_grid's
helpers); decoders are perturbed with codecs/perturb.py (+-1 ulp on every loc and scale of the network).
"""

import dataclasses
import math

import numpy as np
import pytest

from gencomp_jax.codecs import bitstream, perturb
from gencomp_jax.codecs import uqdm as C
from tests.codecs.test_uqdm import _config, _images, _params


@pytest.fixture(scope="module")
def codecs():
    cfg = _config()
    params = _params(cfg)
    return {c: C.make_codec(cfg, params, coding=c) for c in C.CODINGS}


def test_grid_definition_float64():
    """scale on a 1/16-octave grid of Delta, loc on a grid of 1/8 of that quantized scale (units of Delta)."""
    width = np.float32(0.0073)
    d = float(width)
    rng = np.random.default_rng(0)
    s = d * np.exp2(rng.uniform(-3, 3, 2000))
    loc = rng.uniform(-1, 1, 2000)
    kt, ks = C.table_grid(loc.astype(np.float32), s.astype(np.float32), width)
    for j in range(0, 2000, 97):                       # the definition, element by element, in Python floats
        sj, lj = float(np.float32(s[j])) / d, float(np.float32(loc[j])) / d
        k_s = round(16 * math.log2(sj))
        spacing = 2.0 ** (k_s / 16) / 8
        assert (kt[j], ks[j]) == (round(lj / spacing), k_s)
    lq, sq = C.grid_values(kt, ks, width)
    spacing = sq.astype(np.float64) / 8
    assert np.all(np.abs(lq - loc) <= 0.5 * spacing * (1 + 1e-5) + 1e-7)
    assert np.all(np.abs(np.log2(sq / s)) <= 1 / 32 + 1e-6)
    # the grid values are fixed points: quantizing them again gives the same indexes
    np.testing.assert_array_equal(np.stack(C.table_grid(lq, sq, width)), np.stack([kt, ks]))


def test_meta_records_the_coding(codecs):
    img = _images()[0, :16, :16]
    old, new = codecs[C.CODING_FLOAT].compress(img), codecs[C.CODING_GRID].compress(img)
    m_old, m_new = bitstream.peek(old).meta, bitstream.peek(new).meta
    assert m_new == m_old + bytes([C.CODING_GRID])       # float-table files keep the meta of older files
    for codec in codecs.values():                        # either codec decodes either file, as written
        np.testing.assert_array_equal(codec.decompress(old), img)
        np.testing.assert_array_equal(codec.decompress(new), img)
    h, segs = bitstream.unpack(new)
    for bad in (m_old + bytes([7]), m_new + bytes([0])):
        data = bitstream.pack(dataclasses.replace(h, meta=bad), segs)
        with pytest.raises(bitstream.BitstreamError, match="meta"):
            codecs[C.CODING_GRID].decompress(data)
    with pytest.raises(ValueError, match="coding"):
        C.make_codec(_config(), codecs[0].params, coding=5)


def test_one_ulp_changes_every_float_table_and_few_grid_tables(codecs):
    """+-1 ulp on every loc and scale of the decoder's network: every table of a float-table file changes
    (detected), while a quantized-table table changes only where a value sits within an ulp of a grid
    boundary (rare); a decode with no changed table is bit-exact, and no decode is silently wrong."""
    img = _images()[1, :16, :16]
    for coding in C.CODINGS:
        codec = codecs[coding]
        data = codec.compress(img)
        outcomes, changed, elements = [], 0, 0
        for seed in range(3):
            with perturb.perturbed_uqdm(codec, ulps=1, seed=seed) as stats:
                outcomes.append(perturb.classify(codec, data, img))
            changed, elements = changed + stats.changed, elements + stats.elements
            if stats.changed == 0:
                assert outcomes[-1] == "same"
        assert "silent_wrong" not in outcomes and "other_error" not in outcomes
        if coding == C.CODING_FLOAT:
            assert outcomes == ["detected"] * 3 and changed == elements > 0
        else:
            assert elements >= 3 * 32 * 32 * 3 and changed <= 1e-3 * elements and "same" in outcomes


def test_a_changed_grid_index_is_detected(codecs, monkeypatch):
    """A value that lands on the other side of a grid boundary on the decoder changes that element's
    table: the segment's check stops the decoder (never a silently wrong image)."""
    codec = codecs[C.CODING_GRID]
    img = _images()[2, :16, :16]
    data = codec.compress(img)
    grid = C.table_grid

    def flipped(loc, scale, width, **kw):
        kt, ks = grid(loc, scale, width, **kw)
        kt = kt.copy()
        kt.flat[5] += 1                                 # one (unpadded) element, one grid step
        return kt, ks

    monkeypatch.setattr(C, "table_grid", flipped)
    with pytest.raises(bitstream.DecodeMismatchError, match="step 1"):
        codec.decompress(data)
