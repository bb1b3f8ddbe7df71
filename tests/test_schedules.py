"""Exact values of the clipped cosine schedule: the table is λ(t) = -2 log tan(a t + b) and α = sqrt(sigmoid(λ))
evaluated in float64 with NumPy from the closed form (chapter 01), λ clipped to [-20, 20]."""

import jax.numpy as jnp
import numpy as np
import pytest

from ivlib.schedules import alpha_sigma, cosine_logsnr, cosine_t, snr

TABLE_T = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
TABLE_LOGSNR = [20.0, 3.684990, 1.762619, 0.0, -1.762619, -3.684990, -20.0]
TABLE_ALPHA = [1.0, 0.987683, 0.923871, 0.707107, 0.382704, 0.156470, 4.54e-5]


def test_cosine_logsnr_reference_values():
    np.testing.assert_allclose(cosine_logsnr(jnp.array(TABLE_T)), TABLE_LOGSNR, atol=2e-5)


def test_alpha_reference_values():
    alpha, _ = alpha_sigma(cosine_logsnr(jnp.array(TABLE_T)))
    np.testing.assert_allclose(alpha, TABLE_ALPHA, rtol=1e-3, atol=1e-6)


def test_antisymmetry_and_monotone():
    t = jnp.linspace(0.0, 1.0, 101)
    logsnr = cosine_logsnr(t)
    np.testing.assert_allclose(cosine_logsnr(1.0 - t), -logsnr, atol=2e-4)
    assert bool(jnp.all(jnp.diff(logsnr) < 0))
    assert float(logsnr.max()) <= 20.0 and float(logsnr.min()) >= -20.0


def test_other_clipping_range_hits_endpoints():
    np.testing.assert_allclose(cosine_logsnr(jnp.array([0.0, 1.0]), -10.0, 15.0), [15.0, -10.0], atol=1e-4)


def test_alpha_sigma_identities():
    logsnr = jnp.linspace(-20.0, 20.0, 81)
    alpha, sigma = alpha_sigma(logsnr)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
    np.testing.assert_allclose(jnp.log(alpha**2) - jnp.log(sigma**2), logsnr, atol=1e-4)
    np.testing.assert_allclose(snr(logsnr), alpha**2 / sigma**2, rtol=1e-4)


def test_cosine_t_inverts_schedule():
    t = jnp.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(cosine_t(cosine_logsnr(t)), t, atol=1e-5)


@pytest.mark.parametrize("t", [0.3, 0.7])
def test_shapes_broadcast(t):
    assert cosine_logsnr(t).shape == ()
    assert cosine_logsnr(jnp.full((4,), t)).shape == (4,)
