"""diffusion/schedules.py: the cosine log-SNR schedule and its shift (HFD) against closed forms."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.diffusion import schedules

T = np.linspace(0.05, 0.95, 19)


@pytest.mark.parametrize("shift", [0.0, 2.0, -1.5])
def test_untruncated_shifted_cosine_is_the_closed_form(shift):
    """With a (numerically) untruncated range, the shifted cosine is 2 log tan(pi t / 2) - s: SNR(t) is e^s times
    the plain cosine schedule's (Nichol & Dhariwal; the 'shifted cosine' of simple diffusion)."""
    g = np.asarray(schedules.cosine_gamma(jnp.asarray(T, jnp.float32), gamma_min=-60.0, gamma_max=60.0,
                                          shift=shift), np.float64)
    np.testing.assert_allclose(g, 2 * np.log(np.tan(np.pi * T / 2)) - shift, atol=2e-5)


def test_shift_keeps_the_endpoints_and_lowers_the_noise_inside():
    lo, hi = -13.3, 5.0
    t = jnp.asarray(np.concatenate([[0.0], T, [1.0]]), jnp.float32)
    plain = np.asarray(schedules.cosine_gamma(t, gamma_min=lo, gamma_max=hi))
    shifted = np.asarray(schedules.cosine_gamma(t, gamma_min=lo, gamma_max=hi, shift=2.0))
    np.testing.assert_allclose([shifted[0], shifted[-1]], [lo, hi], atol=1e-4)
    np.testing.assert_allclose([plain[0], plain[-1]], [lo, hi], atol=1e-4)
    assert np.all(np.diff(shifted) > 0)                                     # still a schedule: increasing in t
    assert np.all(shifted[1:-1] < plain[1:-1] - 0.5)                        # less noise at every interior time
    mid = float(schedules.cosine_gamma(jnp.float32(0.5), gamma_min=lo, gamma_max=hi, shift=2.0))
    # the shifted curve is at -s where the cosine's u is 1/2 (alpha = sigma), u spanning the shifted endpoints
    u_min, u_max = (2 / math.pi * math.atan(math.exp(0.5 * (g + 2.0))) for g in (lo, hi))
    t0 = (0.5 - u_min) / (u_max - u_min)
    assert abs(float(schedules.cosine_gamma(jnp.float32(t0), gamma_min=lo, gamma_max=hi, shift=2.0)) + 2.0) < 1e-4
    assert mid < float(schedules.cosine_gamma(jnp.float32(0.5), gamma_min=lo, gamma_max=hi))


def test_shift_through_named_schedules():
    a, s = schedules.get_alpha_sigma("cosine", shift=2.0)(jnp.float32(0.5))
    g = float(schedules.cosine_gamma(jnp.float32(0.5), shift=2.0))
    np.testing.assert_allclose([float(a) ** 2, float(s) ** 2], [1 / (1 + math.exp(g)), 1 / (1 + math.exp(-g))],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="cosine"):
        schedules.get_alpha_sigma("linear", shift=1.0)
