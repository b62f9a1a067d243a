"""Every decoder mismatch is detected (issue 16, item 1): perturbing the decoder's float entropy-parameter
path (what another CPU type, GPU or XLA version does) never yields a silently wrong image from a file
with segment checks; the same perturbations on a file without checks do.

The NTC decoder's scale indexes come from float32 h_s outputs; the perturbation adds noise to those
scales on the decoder only (the encoder ran unperturbed): +-1 ulp (what a different platform does)
and larger relative noise (so that indexes certainly change and the test has power).
"""

import numpy as np
import pytest

from gencomp_jax.codecs import bitstream, fuzz
from gencomp_jax.entropy.coder import CodingError


@pytest.fixture(scope="module", params=["hyperprior", "mean_scale"])
def coded(request):
    from gencomp_jax import registry

    config = fuzz.tiny_config(request.param)
    # the float entropy-parameter path (new hyperprior files use the integer one, which never calls the
    # float function perturbed here: tests/codecs/test_integer_hyperprior.py perturbs its weights)
    config.model.integer_entropy = False
    codec = registry.make_codec(config, fuzz.tiny_params(config))
    images = fuzz.seed_images(24, 3)
    files = [codec.compress(im) for im in images]
    return codec, files, [codec.decompress(f) for f in files]


def _perturbed(codec, rng, ulps: int = 0, rel: float = 0.0, frac: float = 1.0):
    """Wraps the decoder's entropy-parameter function: scales moved by `ulps` ulps or by a relative
    `rel`, at a random fraction `frac` of the elements."""
    original = codec.latent._params_fn

    def fn(*args):
        mean, scale = original(*args)
        s = np.asarray(scale)
        hit = rng.random(s.shape) < frac
        if ulps:
            steps = rng.integers(-ulps, ulps + 1, s.shape)
            moved = s.copy()
            for k in range(1, ulps + 1):
                moved = np.where(np.abs(steps) >= k, np.nextafter(moved, np.where(steps > 0, np.inf, -np.inf),
                                                                  dtype=np.float32), moved)
            s = np.where(hit, moved, s)
        if rel:
            s = np.where(hit, s * (1 + rel * rng.standard_normal(s.shape)).astype(np.float32), s)
        return mean, s.astype(np.float32)
    return original, fn


def _decode_all(codec, files, refs, fn, *, checks: bool):
    """-> counts {same, detected, coding_error, silent_wrong} over the files."""
    counts = {"same": 0, "detected": 0, "coding_error": 0, "silent_wrong": 0}
    original = codec.latent._params_fn
    codec.latent._params_fn = fn
    try:
        for data, ref in zip(files, refs):
            if not checks:  # the same segments in a version-1 file (no checks)
                header, segs = bitstream.unpack(data)
                import dataclasses
                data = bitstream.pack(dataclasses.replace(header, checks=()), segs)
            try:
                out = codec.decompress(data)
            except bitstream.DecodeMismatchError:
                counts["detected"] += 1
                continue
            except CodingError:
                counts["coding_error"] += 1
                continue
            counts["same" if np.array_equal(out, ref) else "silent_wrong"] += 1
    finally:
        codec.latent._params_fn = original
    return counts


def test_perturbed_decoder_never_returns_a_wrong_image(coded):
    codec, files, refs = coded
    rng = np.random.default_rng(0)
    total = {"same": 0, "detected": 0, "coding_error": 0, "silent_wrong": 0}
    unchecked = dict(total)
    for trial in range(6):
        for kw in ({"ulps": 1}, {"ulps": 4, "frac": 0.5}, {"rel": 0.05, "frac": 0.2}, {"rel": 0.3}):
            _, fn = _perturbed(codec, np.random.default_rng(trial), **kw)
            for k, v in _decode_all(codec, files, refs, fn, checks=True).items():
                total[k] += v
            _, fn = _perturbed(codec, np.random.default_rng(trial), **kw)
            for k, v in _decode_all(codec, files, refs, fn, checks=False).items():
                unchecked[k] += v
    # with checks: an image is either exactly the encoder's or refused with the mismatch error
    assert total["silent_wrong"] == 0 and total["coding_error"] == 0, total
    assert total["detected"] > 0, total        # the perturbations did change tables (the test has power)
    # without checks the same perturbations give wrong images silently (why the checks exist)
    assert unchecked["silent_wrong"] > 0, unchecked
    print(codec.name, "checked", total, "unchecked", unchecked)


def test_mismatch_error_names_segment_and_cause(coded):
    codec, files, refs = coded
    _, fn = _perturbed(codec, np.random.default_rng(1), rel=0.3)
    original = codec.latent._params_fn
    codec.latent._params_fn = fn
    try:
        with pytest.raises(bitstream.DecodeMismatchError, match=r"segment 2 of 2.*(CPU type|platform)"):
            codec.decompress(files[0])
    finally:
        codec.latent._params_fn = original
    np.testing.assert_array_equal(codec.decompress(files[0]), refs[0])


@pytest.fixture(scope="module")
def uqdm_coded():
    codec = fuzz.tiny_codec("uqdm")
    images = [im[:, :32] for im in fuzz.seed_images(24, 2)]
    files = [codec.compress(im) for im in images]
    return codec, files, [codec.decompress(f, steps=codec.T) for f in files]


def test_uqdm_perturbed_network_never_decodes_a_wrong_image(uqdm_coded):
    """UQDM builds its coding tables from the network's float loc/scale: perturb them on the decoder
    (rel = 0: unperturbed, 1e-7: about one float32 ulp)."""
    import dataclasses

    codec, files, refs = uqdm_coded
    original = codec._net_reverse
    counts = {"checked": {"same": 0, "detected": 0, "silent_wrong": 0, "other": 0},
              "plain": {"same": 0, "detected": 0, "silent_wrong": 0, "other": 0}}
    for trial, rel in enumerate([0.0, 1e-7, 1e-4, 3e-2, 3e-1]):
        rng = np.random.default_rng(trial)

        def noisy(z, i, batch):
            loc, scale, width, x_hat = original(z, i, batch)
            loc = np.asarray(loc)
            return (loc * (1 + rel * rng.standard_normal(loc.shape))).astype(np.float32), scale, width, x_hat
        codec._net_reverse = noisy
        try:
            for data, ref in zip(files, refs):
                header, segs = bitstream.unpack(data)
                for tag, f in (("checked", data), ("plain", bitstream.pack(dataclasses.replace(header, checks=()), segs))):
                    try:
                        out = codec.decompress(f, steps=codec.T)
                        counts[tag]["same" if np.array_equal(out, ref) else "silent_wrong"] += 1
                    except bitstream.DecodeMismatchError:
                        counts[tag]["detected"] += 1
                    except ValueError:
                        counts[tag]["other"] += 1
        finally:
            codec._net_reverse = original
    print("uqdm", counts)
    assert counts["checked"]["silent_wrong"] == 0 and counts["checked"]["other"] == 0, counts
    assert counts["checked"]["detected"] > 0 and counts["checked"]["same"] >= len(files), counts
    # without checks the same decodes fail as "corrupted" data or return wrong images
    assert counts["plain"]["detected"] == 0 and counts["plain"]["same"] == counts["checked"]["same"], counts
