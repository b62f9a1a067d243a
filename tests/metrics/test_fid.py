"""Fréchet distance (closed forms), KID (unbiasedness), patches and realism_metrics wiring."""

import numpy as np
import pytest
import scipy.linalg

from gencomp_jax.metrics.fid import (extract_patches, feature_statistics, fid_from_features, frechet_distance, kid_from_features,
                                     realism_metrics)


def _spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def test_fid_zero_for_identical_feature_sets():
    rng = np.random.default_rng(0)
    for n, d in ((500, 16), (20, 64)):  # full rank and rank-deficient (N < D) covariances
        f = rng.normal(size=(n, d)) * 3 + 1
        assert abs(fid_from_features(f, f)) < 1e-8 * d * 9


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # diagonal (commuting) covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # equal covariances: the mean term only
    s = _spd(rng, d)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9, abs=1e-9)
    # general (non-commuting) covariances vs scipy's Schur-based sqrtm of S1 S2
    s1, s2 = _spd(rng, d), _spd(rng, d, 2.0)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    # 1-D Gaussians: (m1-m2)^2 + (sd1-sd2)^2
    assert frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(1.0 + 1.0)


def test_sample_space_path_equals_covariance_path():
    # fid_from_features uses an N1 x N2 SVD when N << D; it must equal the D x D covariance formula
    rng = np.random.default_rng(8)
    f1 = rng.normal(size=(30, 100)) @ rng.normal(size=(100, 100)) * 0.1
    f2 = rng.normal(size=(25, 100)) * 1.3 + 0.2
    want = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    # rank-deficient covs: the D x D path carries sqrt(round-off eigenvalues) ~1e-8 relative error
    assert fid_from_features(f1, f2) == pytest.approx(want, rel=1e-7)


def test_fid_from_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    d, n = 4, 40_000
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    want = frechet_distance(mu1, s1, mu2, s2)
    f1 = rng.multivariate_normal(mu1, s1, n)
    f2 = rng.multivariate_normal(mu2, s2, n)
    # sampling error of the plug-in estimate at n=40k, d=4 is O(1e-2) of the value
    assert fid_from_features(f1, f2) == pytest.approx(want, rel=0.05)


def test_kid_unbiased_and_has_power():
    # Pool of 400 samples from one distribution, split at random into two halves 200 times: the mean
    # KID over splits must be 0 within 4 standard errors of that mean (the biased MMD^2 would be
    # clearly > 0 here). A shifted distribution must give KID far above that noise.
    rng = np.random.default_rng(3)
    d = 16
    pool = rng.normal(size=(400, d))
    vals = []
    for s in range(200):
        perm = rng.permutation(400)
        k, _ = kid_from_features(pool[perm[:200]], pool[perm[200:]], num_subsets=1, subset_size=1000, seed=s)
        vals.append(k)
    vals = np.asarray(vals)
    se = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean()) < 4 * se, (vals.mean(), se)
    shifted = rng.normal(size=(200, d)) + 0.3
    kid, kid_std = kid_from_features(pool[:200], shifted, num_subsets=20, seed=0)
    assert kid > 20 * se and kid > 5 * kid_std / np.sqrt(20)


def test_kid_deterministic_and_checks_input():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(60, 8))
    assert kid_from_features(a, b, seed=1) == kid_from_features(a, b, seed=1)
    with pytest.raises(ValueError, match="dims differ"):
        kid_from_features(a, b[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        kid_from_features(np.full((10, 8), np.nan), b)


def test_extract_patches_grid_plus_half_shifted_grid():
    img = np.random.default_rng(5).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    p = extract_patches(img, 256)
    assert p.shape == (8, 256, 256, 3)  # Kodak: 2x3 grid + 1x2 shifted grid
    np.testing.assert_array_equal(p[0], img[:256, :256])
    np.testing.assert_array_equal(p[5], img[256:512, 512:768])
    np.testing.assert_array_equal(p[6], img[128:384, 128:384])
    np.testing.assert_array_equal(p[7], img[128:384, 384:640])
    with pytest.raises(ValueError, match="smaller than patch_size"):
        extract_patches(img[:100], 256)


class _ColourStats:
    """Tiny deterministic extractor: per-channel mean and std (for wiring tests)."""
    name, dim = "colour", 6
    metric_names = {"fd": "fd-colour", "kid": "kid-colour", "kid_std": "kid_std-colour"}

    def __call__(self, x):
        x = np.asarray(x, np.float32) / 255.0
        return np.concatenate([x.mean((1, 2)), x.std((1, 2))], -1)


def test_realism_metrics_wiring_and_names():
    rng = np.random.default_rng(6)
    refs = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    recs_same = [r.copy() for r in refs]
    recs_dark = [(r // 2).astype(np.uint8) for r in refs]
    same = realism_metrics(refs, recs_same, features=_ColourStats(), patch_size=32)
    assert set(same) == {"fd-colour", "kid-colour", "kid_std-colour", "num_patches"}
    assert same["num_patches"] == 3 * (2 * 3 + 1 * 2)
    assert abs(same["fd-colour"]) < 1e-10
    dark = realism_metrics(refs, recs_dark, features=_ColourStats(), patch_size=32)
    assert dark["fd-colour"] > 0.01 and dark["kid-colour"] > 0
    with pytest.raises(ValueError, match="equally many"):
        realism_metrics(refs, recs_same[:2], features=_ColourStats())


def test_vgg16_features_are_named_fd_vgg16_never_fid():
    rng = np.random.default_rng(7)
    refs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    out = realism_metrics(refs, [r.copy() for r in refs], features="vgg16", patch_size=32, kid_subsets=5)
    assert set(out) == {"fd-vgg16", "kid-vgg16", "kid_std-vgg16", "num_patches"}
    assert abs(out["fd-vgg16"]) < 1e-6 * 512


def test_fid_warns_below_feature_dimension_and_recommends_kid():
    from gencomp_jax.metrics.fid import FewSamplesWarning

    rng = np.random.default_rng(8)
    few, many = rng.normal(size=(15, 16)), rng.normal(size=(40, 16))
    with pytest.warns(FewSamplesWarning, match="15 samples of 16-dimensional.*KID"):
        fid_from_features(few, many)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid_from_features(many[:16], many[16:32])  # 16 samples, 16 dimensions: no warning
