"""Bjøntegaard deltas: BD-rate and BD-quality (BD-PSNR, or of any other metric) between two RD curves.

Defined as the `bjontegaard` package (FAU-LMS, PyPI 1.3.0) defines them (VCEG-M33 with the
interpolants of the JCT-VC / JVET common test conditions and of Herglotz et al. 2022):

  bd_rate(rate_anchor, dist_anchor, rate_test, dist_test)   log10(rate) is interpolated as a function
      of the quality; its mean difference (test - anchor) over the quality range both curves cover is
      turned into a rate ratio: (10^mean - 1) * 100 percent. Negative = the test codec needs fewer bits
      for the same quality.
  bd_quality(rate_anchor, dist_anchor, rate_test, dist_test)  the quality is interpolated as a function
      of log10(rate); its mean difference (test - anchor) over the log-rate range both curves cover, in
      the metric's unit (dB for PSNR: BD-PSNR). Positive = the test codec scores higher (better for
      PSNR / MS-SSIM, worse for lower-is-better metrics such as LPIPS).

Interpolants (`method`), and the fewest points per curve each accepts:
  "pchip"  monotone piecewise-cubic Hermite (scipy PchipInterpolator): the CTC standard; >= 2 points.
  "akima"  Akima 1970 (scipy Akima1DInterpolator, method "akima"); with exactly 2 points the straight
           line between them, as the `bjontegaard` package does; >= 2 points.
  "cubic"  the original VCEG-M33 least-squares cubic polynomial; >= 4 points.

Unlike the `bjontegaard` package (which warns and returns NaN), curves BD is undefined for raise
ValueError: fewer points than the method needs, rates that are not positive and distinct, a quality
that is not strictly monotone in the rate (a flat or zig-zag curve cannot be inverted), anchor and test
that disagree on the direction (one curve improves with rate, the other worsens), or ranges that do
not overlap. An overlap below MIN_OVERLAP of the union of the two ranges (the package's 75%) gives a
warning, as there: the delta then describes only a small part of either curve.

Pure numpy/scipy; rates in any unit (bpp, bits, kbit/s), the same for both curves.
For MS-SSIM the usual convention is to compute deltas on -10 log10(1 - MS-SSIM) (results.ms_ssim_db).
"""

from __future__ import annotations

import warnings

import numpy as np

METHODS = {"pchip": 2, "akima": 2, "cubic": 4}  # interpolation method -> fewest points per curve
MIN_OVERLAP = 0.75


def _curve(rate, quality, *, method: str, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(log10 rate, quality) sorted by rate, and the direction of the quality (+1 rises, -1 falls)."""
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}: use one of {sorted(METHODS)}")
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.ndim != 1 or r.shape != q.shape:
        raise ValueError(f"{what}: rates and qualities must be 1-D lists of the same length, "
                         f"got shapes {r.shape} and {q.shape}")
    need = METHODS[method]
    if len(r) < need:
        raise ValueError(f"{what}: method={method!r} needs at least {need} points per curve, got {len(r)}"
                         + ("; use method='pchip' or 'akima'" if method == "cubic" else ""))
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{what}: rates and qualities must be finite, got rates {r} and qualities {q}")
    if np.any(r <= 0):
        raise ValueError(f"{what}: rates must be positive (BD works on log rate), got {r}")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    if np.any(np.diff(r) == 0):
        raise ValueError(f"{what}: repeated rate values {r}; BD needs distinct points (merge or drop duplicates)")
    dq = np.diff(q)
    if np.any(dq == 0):
        raise ValueError(f"{what}: repeated quality values {q} at rates {r}; BD needs a strictly monotone "
                         "curve (drop the flat points)")
    if not (np.all(dq > 0) or np.all(dq < 0)):
        raise ValueError(f"{what}: quality {q} is not monotone in rate {r}; BD needs a strictly monotone "
                         "curve (drop the points that break it, e.g. a noisy measurement)")
    return np.log10(r), q, int(np.sign(dq[0]))


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of the `method` interpolant through (x, y), x strictly increasing."""
    from scipy import interpolate

    if method == "pchip":
        return float(interpolate.PchipInterpolator(x, y).integrate(lo, hi))
    if method == "akima":
        f = interpolate.Akima1DInterpolator(x, y) if len(x) > 2 else interpolate.make_interp_spline(x, y, k=1)
        return float(f.integrate(lo, hi))
    p = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(p, hi) - np.polyval(p, lo))


def _mean_difference(x_a, y_a, x_b, y_b, method: str, what: str, axis: str) -> float:
    """Mean of (interpolant_b - interpolant_a) over the overlap of the x ranges (each x increasing)."""
    lo, hi = max(x_a[0], x_b[0]), min(x_a[-1], x_b[-1])
    if not hi > lo:
        raise ValueError(f"{what}: the two curves do not overlap in {axis} ([{x_a[0]:.4g}, {x_a[-1]:.4g}] vs "
                         f"[{x_b[0]:.4g}, {x_b[-1]:.4g}]); BD deltas are undefined")
    overlap = (hi - lo) / (max(x_a[-1], x_b[-1]) - min(x_a[0], x_b[0]))
    if overlap < MIN_OVERLAP:
        warnings.warn(f"{what}: the curves overlap over only {overlap:.0%} of their {axis} range "
                      f"(< {MIN_OVERLAP:.0%}); the delta describes a small part of them", stacklevel=3)
    return (_integral(x_b, y_b, lo, hi, method) - _integral(x_a, y_a, lo, hi, method)) / (hi - lo)


def _curves(rate_anchor, dist_anchor, rate_test, dist_test, method, what):
    la, qa, sa = _curve(rate_anchor, dist_anchor, method=method, what=f"{what} (anchor)")
    lb, qb, sb = _curve(rate_test, dist_test, method=method, what=f"{what} (test)")
    if sa != sb:
        raise ValueError(f"{what}: the anchor's quality {'rises' if sa > 0 else 'falls'} with rate but the "
                         f"test's {'rises' if sb > 0 else 'falls'}; both curves must be of the same metric")
    return la, qa, lb, qb, sa


def bd_rate(rate_anchor, dist_anchor, rate_test, dist_test, *, method: str = "pchip") -> float:
    """BD-rate of the test curve against the anchor, in percent (negative = the test saves bits).

    rate_*: positive rates (e.g. bpp); dist_*: a quality or distortion metric at those rates, strictly
    monotone in the rate (PSNR, MS-SSIM in dB, LPIPS, ...). method: "pchip" | "akima" | "cubic".
    """
    la, qa, lb, qb, direction = _curves(rate_anchor, dist_anchor, rate_test, dist_test, method, "bd_rate")
    if direction < 0:  # interpolate over increasing quality values
        la, qa, lb, qb = la[::-1], qa[::-1], lb[::-1], qb[::-1]
    avg = _mean_difference(qa, la, qb, lb, method, "bd_rate", "quality")
    return float((10.0 ** avg - 1.0) * 100.0)


def bd_quality(rate_anchor, dist_anchor, rate_test, dist_test, *, method: str = "pchip") -> float:
    """BD-quality of the test curve against the anchor (BD-PSNR in dB for PSNR), test minus anchor.

    Same arguments and checks as bd_rate.
    """
    la, qa, lb, qb, _ = _curves(rate_anchor, dist_anchor, rate_test, dist_test, method, "bd_quality")
    return float(_mean_difference(la, qa, lb, qb, method, "bd_quality", "log rate"))


bd_psnr = bd_quality
