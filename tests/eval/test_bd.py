"""Bjøntegaard deltas (eval/bd.py): the `bjontegaard` package on its own examples, closed forms, errors."""

import math
import warnings

import numpy as np
import pytest

from gencomp_jax.eval import bd

# The examples of the bjontegaard package (FAU-LMS/bjontegaard README.md and example_usage.py): x265 rates
# (kbit/s) and PSNR (dB), anchor then test.
PACKAGE_EXAMPLES = {
    "readme": ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851],
               [9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]),
    "high_bitrates": ([82472.76, 26875.24, 9487.76, 4593.6], [43.825, 41.404, 40.037, 38.615],
                      [99896.96, 33952.04, 9787.8, 4469.0], [44.731, 41.875, 40.121, 38.651]),
    "more_points": ([82472.76, 26875.24, 9487.76, 4593.6, 3600, 2900], [43.825, 41.404, 40.037, 38.615, 36.5, 35.1],
                    [99896.96, 33952.04, 9787.8, 4469.0, 4040, 3300], [44.731, 41.875, 40.121, 38.651, 37, 36.5]),
    # two points per curve: the package's Akima falls back to the straight line
    "two_points": ([9487.76, 1358.24], [40.037, 34.851], [9787.80, 1356.24], [40.121, 34.987]),
}


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
@pytest.mark.parametrize("example", sorted(PACKAGE_EXAMPLES))
def test_equals_bjontegaard_package(example, method):
    import bjontegaard  # the `test` extra installs it (setup.cfg, constraints.txt)
    if method == "cubic" and example == "two_points":
        return
    ra, pa, rt, pt = PACKAGE_EXAMPLES[example]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn alike on a small overlap
        want_rate = bjontegaard.bd_rate(ra, pa, rt, pt, method=method)
        want_psnr = bjontegaard.bd_psnr(ra, pa, rt, pt, method=method)
        got_rate = bd.bd_rate(ra, pa, rt, pt, method=method)
        got_psnr = bd.bd_quality(ra, pa, rt, pt, method=method)
    assert math.isfinite(want_rate) and math.isfinite(want_psnr)
    assert got_rate == pytest.approx(want_rate, rel=1e-4)  # 0.01%
    assert got_psnr == pytest.approx(want_psnr, rel=1e-4)
    # order of the points does not matter
    rev = [list(v)[::-1] for v in (ra, pa, rt, pt)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bd.bd_rate(*rev, method=method) == pytest.approx(got_rate, rel=1e-12)


def test_package_readme_values():
    """The numbers the example prints, to 4 decimals, independent of the package being installed."""
    ra, pa, rt, pt = PACKAGE_EXAMPLES["readme"]
    assert bd.bd_rate(ra, pa, rt, pt, method="akima") == pytest.approx(-4.4252, abs=5e-5)
    assert bd.bd_quality(ra, pa, rt, pt, method="akima") == pytest.approx(0.1194, abs=5e-5)
    assert bd.bd_rate(ra, pa, rt, pt, method="pchip") == pytest.approx(-4.4175, abs=5e-5)


@pytest.mark.parametrize("method", ["pchip", "akima", "cubic"])
def test_two_straight_lines_closed_form(method):
    """PSNR = a + b log10 R for the anchor and a2 + b2 log10 R for the test: every interpolant reproduces a
    straight line, so both deltas are integrals of linear functions.

    BD-rate: log10 R_t(p) - log10 R_a(p) = p (1/b2 - 1/b) - a2/b2 + a/b, averaged over the common PSNR range
    [lo, hi] = its value at the midpoint m; BD-rate = 10^(that) - 1. BD-PSNR: (a2 - a) + (b2 - b) l averaged
    over the common log-rate range = its value at the midpoint of that range.
    """
    a, b, a2, b2 = 35.0, 10.0, 35.6, 9.0
    la = np.array([-1.0, -0.7, -0.4, -0.1, 0.2])  # log10 bpp of the anchor: 0.1 .. 1.58 bpp
    lt = np.array([-0.95, -0.5, -0.3, 0.0, 0.15])
    pa, pt = a + b * la, a2 + b2 * lt
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    m = (lo + hi) / 2
    want_rate = (10 ** (m * (1 / b2 - 1 / b) - a2 / b2 + a / b) - 1) * 100
    ml = (max(la[0], lt[0]) + min(la[-1], lt[-1])) / 2
    want_q = (a2 - a) + (b2 - b) * ml
    assert bd.bd_rate(10 ** la, pa, 10 ** lt, pt, method=method) == pytest.approx(want_rate, abs=1e-9)
    assert bd.bd_quality(10 ** la, pa, 10 ** lt, pt, method=method) == pytest.approx(want_q, abs=1e-9)
    # a metric that falls with rate (LPIPS-like): the same lines mirrored, the same BD-rate
    assert bd.bd_rate(10 ** la, -pa, 10 ** lt, -pt, method=method) == pytest.approx(want_rate, abs=1e-9)
    assert bd.bd_quality(10 ** la, -pa, 10 ** lt, -pt, method=method) == pytest.approx(-want_q, abs=1e-9)


def test_errors():
    r, q = [0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0]
    with pytest.raises(ValueError, match="at least 2 points"):
        bd.bd_rate([0.1], [30.0], r, q)
    with pytest.raises(ValueError, match="at least 4 points"):
        bd.bd_quality(r[:3], q[:3], r, q, method="cubic")
    with pytest.raises(ValueError, match="not monotone"):
        bd.bd_rate(r, [28.0, 31.0, 30.0, 34.0], r, q, method="akima")
    with pytest.raises(ValueError, match="repeated"):
        bd.bd_quality(r, q, [0.1, 0.1, 0.4, 0.8], q)
    with pytest.raises(ValueError, match="do not overlap"):
        bd.bd_rate(r, q, [1.0, 2.0], [35.0, 37.0])
    with pytest.raises(ValueError, match="do not overlap"):
        bd.bd_quality(r, q, [1.0, 2.0], [35.0, 37.0])
    with pytest.raises(ValueError, match="same metric"):
        bd.bd_rate(r, q, r, [-x for x in q])
    with pytest.raises(ValueError, match="positive"):
        bd.bd_rate([0.0, 0.2], [28.0, 30.0], r, q)
    with pytest.raises(ValueError, match="unknown BD method"):
        bd.bd_rate(r, q, r, q, method="spline")
    with pytest.warns(UserWarning, match="overlap over only"):
        bd.bd_rate(r, q, [0.7, 1.0, 2.0], [33.5, 35.0, 37.0])
