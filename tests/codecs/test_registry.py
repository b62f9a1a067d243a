"""One registration: a codec defined here, registered by one module-level `register(...)` call, with no
edit of the registry, the container or the CLI, is packed by the container, loaded from a real workdir,
and driven by `gencomp compress | decompress | info | evaluate` with its declared decode options.
Also: DecodeOption parsing/checking, check_options errors and clashing registrations."""

import json
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gencomp_jax import cli, registry
from gencomp_jax.codecs import base, bitstream
from gencomp_jax.codecs.base import DecodeOption, OptionError, RegistryError
from gencomp_jax.data import images as data_images
from gencomp_jax.eval import evaluate as ev
from gencomp_jax.eval import loading
from tests.eval.toy_codecs import save_workdir

TOY_ID = 242


class ToyMethod:
    """A uniform scalar quantizer of the pixels with a learned step (config.model.step initialises it)."""

    def __init__(self, config):
        self.step = float(config.model.step)

    def init(self, rng, batch):
        del rng, batch
        return {"params": {"step": jnp.float32(self.step / 127.5)}}

    def loss(self, params, batch, rng, train):
        del rng, train
        step = params["params"]["step"]
        x = batch["image"]
        mse = jnp.mean((x - jnp.round(x / step) * step) ** 2)
        return mse, {"mse": mse}


class ToyCodec:
    """Pixels quantized to multiples of the step; the indices zlib-compressed into one segment."""

    name = "toy_registry"
    decode_options = (
        DecodeOption("reconstruction", str, "mid", "low: the bin's lower edge; mid: its centre",
                     choices=("low", "mid")),
        DecodeOption("invert", bool, False, "return the negative image"),
    )

    def __init__(self, config, params):
        self.step = max(1, int(round(float(params["params"]["step"]) * 127.5)))
        self.fingerprint = bitstream.params_fingerprint(params)

    def _segment(self, image):
        return zlib.compress((np.asarray(image) // self.step).astype(np.uint8).tobytes(), 9)

    def compress(self, image):
        header = bitstream.Header(codec=self.name, params_hash=self.fingerprint, image_shape=image.shape)
        return bitstream.pack(header, [self._segment(image)])

    def decompress(self, data, **options):
        opts = base.check_options(self, options)
        header, (seg,) = bitstream.unpack(data, codec=self.name, params_hash=self.fingerprint)
        q = np.frombuffer(zlib.decompress(seg), np.uint8).reshape(header.image_shape).astype(np.int64)
        rec = q * self.step + (self.step // 2 if opts["reconstruction"] == "mid" else 0)
        rec = np.clip(rec, 0, 255).astype(np.uint8)
        return 255 - rec if opts["invert"] else rec

    def estimate_bits(self, image, **options):
        base.check_options(self, options)
        return 8.0 * len(self._segment(image))

    def rate_points(self):
        return [{}]


base.register("toy_registry", method=ToyMethod, codec=ToyCodec, codec_id=TOY_ID)


def _expected(image, step, reconstruction="mid", invert=False):
    """The toy's reconstruction, computed independently of its code."""
    rec = (image.astype(np.int64) // step) * step + (step // 2 if reconstruction == "mid" else 0)
    rec = np.minimum(rec, 255).astype(np.uint8)
    return 255 - rec if invert else rec


@pytest.fixture(scope="module")
def toy_wd(tmp_path_factory):
    """A workdir saved as training saves one: config.json + checkpoint of the Method's init params."""
    wd = tmp_path_factory.mktemp("toy_registry")
    config = ml_collections.ConfigDict({"method": "toy_registry", "model": {"step": 32}})
    method = registry.make_method(config)
    params = jax.tree.map(np.asarray, method.init(jax.random.PRNGKey(0), {}))
    save_workdir(wd, config, params)
    return wd


def _image(h=12, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_one_registration_reaches_registry_and_container():
    entries = registry.discover()
    assert {"hyperprior", "uqdm", "toy_registry"} <= set(entries)
    entry = registry.get("toy_registry")
    assert entry.is_codec and not entry.progressive and entry.codec_id == TOY_ID
    assert entry.decode_options == ToyCodec.decode_options and entry.module == __name__
    assert base.codec_id("toy_registry") == TOY_ID and base.codec_name(TOY_ID) == "toy_registry"
    assert "toy_registry" in registry.codec_names()
    assert isinstance(registry.make_method(ml_collections.ConfigDict({"method": "toy_registry",
                                                                       "model": {"step": 8}})), base.Method)
    image = _image()
    codec = ToyCodec(None, {"params": {"step": np.float32(8 / 127.5)}})
    assert isinstance(codec, base.Codec) and not isinstance(codec, base.ProgressiveCodec)
    data = codec.compress(image)
    assert data[:4] == bitstream.MAGIC and data[5] == TOY_ID  # the registered id is the header's codec byte
    header, segments = bitstream.unpack(data, codec="toy_registry")
    assert header.image_shape == image.shape and len(segments) == 1
    np.testing.assert_array_equal(codec.decompress(data), _expected(image, 8))
    np.testing.assert_array_equal(codec.decompress(data, reconstruction="low", invert=True),
                                  _expected(image, 8, "low", True))
    with pytest.raises(OptionError, match="no decode option 'steps'"):
        codec.decompress(data, steps=1)


def test_cli_compress_decompress_info_with_declared_options(toy_wd, tmp_path, capsys):
    image = _image(seed=1)
    png, gcz, out = tmp_path / "in.png", tmp_path / "x.gcz", tmp_path / "out.png"
    data_images.write_png(png, image)
    assert cli.main(["compress", "--checkpoint", str(toy_wd), str(png), str(gcz)]) == 0
    assert bitstream.peek(gcz.read_bytes()).codec == "toy_registry"
    assert cli.main(["decompress", "--checkpoint", str(toy_wd), str(gcz), str(out)]) == 0
    np.testing.assert_array_equal(data_images.read_image(out), _expected(image, 32))
    assert cli.main(["decompress", "--checkpoint", str(toy_wd), "--option", "reconstruction=low",
                     "--option", "invert=yes", str(gcz), str(out)]) == 0
    np.testing.assert_array_equal(data_images.read_image(out), _expected(image, 32, "low", True))
    assert cli.main(["info", str(gcz)]) == 0
    info = capsys.readouterr().out
    assert f"codec:       toy_registry (id {TOY_ID}" in info
    assert "  reconstruction: low: the bin's lower edge; mid: its centre [one of ['low', 'mid'], default 'mid']" in info
    assert "  invert: return the negative image [bool, default False]" in info
    # an undeclared option, a value outside the choices, a bad bool: one line naming the codec's options
    for argv, message in [(["--steps", "1"], "the 'toy_registry' codec has no decode option 'steps'. Its options: "
                                             "reconstruction: "),
                          (["--option", "reconstruction=high"], "option reconstruction='high': use one of ['low', 'mid']"),
                          (["--option", "invert=maybe"], "option invert='maybe': expected bool")]:
        assert cli.main(["decompress", "--checkpoint", str(toy_wd), *argv, str(gcz), str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gencomp decompress: error: ") and message in err and err.count("\n") == 1


def test_cli_evaluate_sweeps_declared_options(toy_wd, tmp_path, capsys):
    folder = tmp_path / "set"
    imgs = [_image(20, 24, seed=s) for s in range(2)]
    for i, im in enumerate(imgs):
        data_images.write_png(folder / f"{i}.png", im)
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "--checkpoint", str(toy_wd), "--dataset", str(folder), "--out", str(out),
                     "--metrics", "psnr-rgb", "--no-progress", "--option", "reconstruction=low,mid",
                     "--option", "invert=0"]) == 0
    res = json.loads(out.read_text())
    assert res["rate_points"] == [{"reconstruction": "low", "invert": False},
                                  {"reconstruction": "mid", "invert": False}]
    codec = loading.load_codec(toy_wd)
    files = [codec.compress(im) for im in imgs]
    bpp = np.mean([len(f) * 8 / (20 * 24) for f in files])
    assert res["results"]["bpp"] == [pytest.approx(bpp)] * 2  # the options do not change the file
    from gencomp_jax.metrics import psnr

    for k, r in enumerate(("low", "mid")):
        expect = np.mean([psnr(im, _expected(im, 32, r)) for im in imgs])
        assert res["results"]["psnr-rgb"][k] == pytest.approx(expect, abs=1e-9)
    assert res["results"]["psnr-rgb"][1] > res["results"]["psnr-rgb"][0] + 3  # bin centres are much better
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(toy_wd), "--dataset", str(folder), "--out", str(out),
                     "--no-progress", "--option", "realism=0,1"]) == 2
    assert "the 'toy_registry' codec has no decode option 'realism'" in capsys.readouterr().err


def test_clashing_registrations_are_refused():
    def other_method(config):
        return ToyMethod(config)

    other_method.__module__ = "somebody.else"
    before = base.registered()
    with pytest.raises(RegistryError, match="'toy_registry' is already registered by tests.codecs.test_registry"):
        base.register("toy_registry", method=other_method, codec=ToyCodec, codec_id=243)
    with pytest.raises(RegistryError, match=f"codec id {TOY_ID} of 'toy_other' is already used by 'toy_registry'"):
        base.register("toy_other", method=other_method, codec=ToyCodec, codec_id=TOY_ID)
    with pytest.raises(RegistryError, match="codec id 1 of 'toy_other' is already used by 'hyperprior'"):
        base.register("toy_other", method=other_method, codec=ToyCodec, codec_id=1)
    with pytest.raises(RegistryError, match="codec and codec_id together"):
        base.register("toy_other", method=other_method, codec=ToyCodec)
    for bad in (0, 256, "7"):
        with pytest.raises(RegistryError, match="codec_id must be an int in 1..255"):
            base.register("toy_other", method=other_method, codec=ToyCodec, codec_id=bad)
    with pytest.raises(RegistryError, match="duplicate decode options"):
        base.register("toy_other", method=other_method, codec=ToyCodec, codec_id=243,
                      decode_options=ToyCodec.decode_options * 2)
    with pytest.raises(RegistryError, match="non-empty identifier"):
        base.register("toy other", method=other_method)
    assert base.registered() == before  # a refused registration changes nothing
    with pytest.raises(RegistryError, match="Unknown method 'nope'"):
        registry.get("nope")
    with pytest.raises(RegistryError, match="unknown codec 'nope'"):
        base.codec_id("nope")
    with pytest.raises(RegistryError, match="generative model, not a codec"):
        registry.make_codec(ml_collections.ConfigDict({"method": "vdm"}), {})


def test_file_of_an_unregistered_codec_id(tmp_path, capsys):
    data = bytearray(ToyCodec(None, {"params": {"step": np.float32(0.1)}}).compress(_image()))
    data[5] = 199  # no codec has this id; fix the header CRC so only the id is wrong
    import binascii
    import struct

    end = 15 + 3 + 1  # magic+version+id+flags+hash, 3 one-byte shape varints, segment count
    data[end:end + 2] = struct.pack("<H", binascii.crc_hqx(bytes(data[:end]), 0))
    (tmp_path / "f.gcz").write_bytes(bytes(data))
    assert cli.main(["info", str(tmp_path / "f.gcz")]) == 2
    assert "unknown codec (id 199)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# DecodeOption and check_options


def test_decode_option_parse_and_check():
    steps = base.STEPS_OPTION
    assert steps.parse("0") == 0 and steps.parse(" 7 ") == 7 and steps.rate
    assert steps.check(None) is None and steps.check(3.0) == 3
    for bad, message in [("-1", "must be >= 0"), ("1.5", "expected int"), ("", "expected int")]:
        with pytest.raises(OptionError, match=message):
            steps.parse(bad)
    with pytest.raises(OptionError, match="expected an integer"):
        steps.check(2.5)
    with pytest.raises(OptionError, match="expected an integer"):
        steps.check(True)
    flag = DecodeOption("invert", bool, False, "negative")
    assert [flag.parse(t) for t in ("1", "TRUE", "yes", "0", "false", "No")] == [True] * 3 + [False] * 3
    with pytest.raises(OptionError, match="expected bool"):
        flag.parse("2")
    with pytest.raises(OptionError, match="expected a bool"):
        flag.check(2)
    knob = DecodeOption("realism", float, 0.0, "p", minimum=0, maximum=1)
    assert knob.parse("0.25") == 0.25 and knob.check(1) == 1.0 and isinstance(knob.check(1), float)
    with pytest.raises(OptionError, match="must be <= 1"):
        knob.parse("1.5")
    choice = ToyCodec.decode_options[0]
    assert choice.parse("low") == "low"
    with pytest.raises(OptionError, match=r"use one of \['low', 'mid'\]"):
        choice.parse("LOW")
    assert choice.describe() == ("reconstruction: low: the bin's lower edge; mid: its centre "
                                 "[one of ['low', 'mid'], default 'mid']")
    with pytest.raises(TypeError, match="kind must be one of"):
        DecodeOption("x", list, None, "a list")


def test_check_options():
    assert base.check_options(ToyCodec, {}) == {"reconstruction": "mid", "invert": False}
    assert base.check_options(ToyCodec, {"invert": 1}, fill_defaults=False) == {"invert": True}
    assert base.check_options(ToyCodec.decode_options, {"reconstruction": "low"})["reconstruction"] == "low"
    assert base.check_options(registry.get("toy_registry"), {}) == base.check_options(ToyCodec, {})
    with pytest.raises(OptionError) as e:
        base.check_options(ToyCodec, {"steps": 2})
    assert str(e.value) == ("the 'toy_registry' codec has no decode option 'steps'. Its options: "
                            + "; ".join(o.describe() for o in ToyCodec.decode_options))
    with pytest.raises(OptionError, match="Its options: none"):
        base.check_options((), {"steps": 1})
    with pytest.raises(OptionError, match="use one of"):
        base.check_options(ToyCodec, {"reconstruction": "flow"})


def test_rate_points_from_options():
    """evaluate.rate_points: the codec's points, overridden/extended by every combination of given values."""
    class Progressive(ToyCodec):
        decode_options = (base.STEPS_OPTION, ToyCodec.decode_options[0])

        def rate_points(self):  # like UQDM: steps x reconstruction
            return [{"steps": k, "reconstruction": r} for r in ("low", "mid") for k in range(3)]

    codec = Progressive(None, {"params": {"step": np.float32(0.1)}})
    assert ev.rate_points(codec) == codec.rate_points()
    assert ev.rate_points(codec, {"reconstruction": ["mid"]}) == [
        {"steps": k, "reconstruction": "mid"} for k in range(3)]
    assert ev.rate_points(codec, {"steps": "2", "reconstruction": ["mid", "low"]}) == [
        {"steps": 2, "reconstruction": "mid"}, {"steps": 2, "reconstruction": "low"}]
    plain = ToyCodec(None, {"params": {"step": np.float32(0.1)}})
    assert ev.rate_points(plain, {"invert": [0, "yes"], "reconstruction": ("low",)}) == [
        {"invert": False, "reconstruction": "low"}, {"invert": True, "reconstruction": "low"}]
    with pytest.raises(OptionError, match="no decode option 'steps'"):
        ev.rate_points(plain, {"steps": [1]})
    with pytest.raises(OptionError, match="no values given"):
        ev.rate_points(plain, {"invert": []})
    assert ev.parse_option_args(["steps=0, 2", "reconstruction=flow"]) == {"steps": ["0", "2"],
                                                                            "reconstruction": ["flow"]}
    with pytest.raises(OptionError, match="given twice"):
        ev.parse_option_args(["steps=1", "steps=2"])
