"""Fuzzing every registered codec's decompress and data.read_image (issue 16): decode or fail loudly.

Each codec gets a tiny random-init model (its runlocal config shrunk by fuzz.TINY) and two seed
files; CASES[codec] structure-aware mutations (header fields, payloads re-packed with valid CRCs,
segment splices, raw bytes) run under a 20 s watchdog. Only the library's errors may escape; every
decoded image has the declared shape. The long run is experiments/fuzz.py (>= 10^5 cases per codec).
"""

import time

import numpy as np
import pytest

from gencomp_jax import registry
from gencomp_jax.codecs import bitstream, fuzz

registry.discover()
CODECS = sorted(n for n, e in registry.discover().items() if e.is_codec and e.module.startswith("gencomp_jax."))
# cases per codec (cheap decoders get more) + IMAGE_CASES: >= 10^3 cases in make test
CASES = {"hyperprior": 300, "mean_scale": 300}
SLOW_CASES = 60
IMAGE_CASES = 300
HOSTILE = [(65535, 65535, 3), (2**20, 2**20, 3), (64, 2**24, 3)]


@pytest.fixture(scope="module", params=CODECS)
def target(request):
    decode, files = fuzz.codec_target(request.param)
    return request.param, decode, files


def _check(outcomes, what):
    summary = fuzz.summarize(outcomes)
    assert summary["num_failures"] == 0, (what, summary["failures"][:3])
    return summary


def test_every_codec_decodes_or_refuses_mutated_files(target, monkeypatch):
    name, decode, files = target
    monkeypatch.setenv(bitstream.MAX_PIXELS_ENV, str(fuzz.FUZZ_MAX_PIXELS))
    n = CASES.get(name, SLOW_CASES)
    for f in files:  # the seed files decode to their declared shape
        out = decode(f)
        assert out.dtype == np.uint8 and out.shape == bitstream.peek(f).image_shape
    outcomes = fuzz.run_cases(decode, fuzz.cases(files, n, seed=sum(map(ord, name))), timeout_s=20.0)
    summary = _check(outcomes, name)
    assert summary["cases"] == n
    kinds = {o.kind for o in outcomes}
    assert kinds == set(fuzz.KINDS), kinds  # every kind of mutation ran
    # mutations reach the decoder: not everything stops at the container
    assert summary["status"].get("decoded", 0) + sum(
        1 for o in outcomes if o.status == "refused" and o.error != "BitstreamError") > 0, summary


def test_hostile_headers_are_refused_by_every_codec(target):
    name, decode, files = target
    for shape in HOSTILE:
        f = fuzz.parse_raw(files[0])
        f.shape = shape
        with pytest.raises(bitstream.BitstreamError, match="pixels.*refused before decoding"):
            decode(fuzz.raw_pack(f))  # the container's limit: nothing was allocated from the header


@pytest.mark.parametrize("name", ["uqdm", "diffc"])
def test_progressive_header_meta_is_bounded(name, monkeypatch):
    """Found by the long run: a meta varint of 2^62 (UQDM tile_batch) made XLA abort the process
    ('overflow in static extent product'), 2^32 (DiffC num_steps) a MemoryError."""
    monkeypatch.setenv(bitstream.MAX_PIXELS_ENV, str(fuzz.FUZZ_MAX_PIXELS))
    decode, files = fuzz.codec_target(name)
    f = fuzz.parse_raw(files[0])
    from gencomp_jax.entropy.varint import read_varint, write_varint
    values, pos = [], 0
    while pos < len(f.meta):
        v, pos = read_varint(f.meta, pos)
        values.append(v)
    outcomes = []
    for i in range(len(values)):
        for big in (2**32, 2**62):
            f.meta = b"".join(write_varint(big if j == i else v) for j, v in enumerate(values))
            outcomes.append(fuzz.run_case(decode, f"meta{i}={big}", fuzz.raw_pack(f), timeout_s=20.0))
    _check(outcomes, name)


def test_read_image_decodes_or_refuses_mutated_images(tmp_path):
    decode, files = fuzz.image_target(str(tmp_path))
    outcomes = fuzz.run_cases(decode, fuzz.cases(files, IMAGE_CASES, seed=1, png=True), timeout_s=20.0,
                              expect_shape=None)
    summary = _check(outcomes, "read_image")
    assert summary["status"].get("refused", 0) > 0 and summary["status"].get("decoded", 0) > 0, summary
    assert {"png_ihdr", "png_chunk", "raw"} <= {o.kind for o in outcomes}


# ---------------------------------------------------------------------------------------------------
# The fuzzer itself


def test_raw_pack_rebuilds_files_exactly_and_keeps_crcs_valid():
    header = bitstream.Header(codec="uqdm", params_hash=bytes(range(8)), image_shape=(20, 30, 3), seed=99,
                              meta=b"\x04\x20\x01")
    for checks in ((), (5, 6, 2**32 - 1)):
        data = bitstream.pack(dataclasses_replace(header, checks=checks), [b"abc", b"", b"\x00" * 70])
        assert fuzz.raw_pack(fuzz.parse_raw(data)) == data
    rng = np.random.default_rng(0)
    for _ in range(50):  # payload mutations pass the container's CRCs: they reach the codec
        kind, bad = fuzz.mutate(data, rng, kind="payload")
        header2, segs = bitstream.unpack(bad)
        assert header2.checks == (5, 6, 2**32 - 1) and len(segs) == 3


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_library_errors_are_told_from_crashes():
    def numpy_error(_):
        np.zeros(6).reshape(4, 4)

    def library_error(_):
        raise bitstream.BitstreamError("bad file")

    def index_error(_):
        return [][1]

    def sleeper(_):
        time.sleep(30)

    out = fuzz.run_cases(lambda d: [numpy_error, library_error, index_error, sleeper][d[0]](d),
                         [("a", b"\0"), ("b", b"\1"), ("c", b"\2"), ("d", b"\3")], timeout_s=0.5,
                         expect_shape=None)
    assert [o.status for o in out] == ["crash", "refused", "crash", "hang"]
    assert out[0].error == "ValueError" and out[2].error == "IndexError" and out[3].seconds < 5
    wrong = fuzz.run_case(lambda d: np.zeros((2, 2, 3), np.uint8), "w", b"",
                          expect_shape=lambda d: (2, 3, 3))
    assert wrong.status == "crash" and wrong.error == "WrongOutput"


def test_worker_survives_hangs_and_deaths():
    w = fuzz.Worker("tests.codecs.fuzz_toy:toy_target", timeout_s=0.5, hard_timeout_s=3.0)
    try:
        assert w.start() == [b"seed"]
        out = [w.run_one(k, d) for k, d in [("ok", b"x"), ("hang", b"hang"), ("ok", b"y"), ("die", b"die"),
                                             ("ok", b"z")]]
    finally:
        w.close()
    assert [o.status for o in out] == ["refused", "hang", "refused", "died", "refused"], out
    assert w.restarts == 2
