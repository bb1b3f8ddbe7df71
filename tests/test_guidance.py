"""Guidance formulas, thresholds and oscillating weights against their definitions (paper §2.6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivlib.diffusion import eps_from_v, v_from_x, x_from_v
from ivlib.guidance import dynamic_threshold, guide, oscillating_weights, static_clip


def test_guide_formula_and_w_zero():
    cond, uncond = jnp.array([[1.0, 2.0]]), jnp.array([[0.5, -1.0]])
    np.testing.assert_allclose(guide(cond, uncond, 2.0), [[2.0, 8.0]])
    np.testing.assert_array_equal(guide(cond, uncond, 0.0), cond)


def test_guide_per_sample_weights():
    cond, uncond = jnp.ones((2, 3)), jnp.zeros((2, 3))
    np.testing.assert_allclose(guide(cond, uncond, jnp.array([0.0, 3.0])), [[1.0] * 3, [4.0] * 3])
    with pytest.raises(ValueError, match="batch size"):
        guide(cond, uncond, jnp.array([1.0, 2.0, 3.0]))


def test_guidance_is_the_same_in_x_v_and_eps_space():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    z, v_c, v_u = (jax.random.normal(k, (2, 3, 4, 4, 3)) for k in (k1, k2, k3))
    logsnr, w = jnp.array([-1.0, 2.5]), 3.0
    via_v = x_from_v(z, guide(v_c, v_u, w), logsnr)
    via_x = guide(x_from_v(z, v_c, logsnr), x_from_v(z, v_u, logsnr), w)
    eps_guided = guide(eps_from_v(z, v_c, logsnr), eps_from_v(z, v_u, logsnr), w)
    np.testing.assert_allclose(via_v, via_x, atol=1e-5)
    np.testing.assert_allclose(eps_from_v(z, v_from_x(z, via_x, logsnr), logsnr), eps_guided, atol=1e-4)


def test_dynamic_threshold_per_sample():
    x = jnp.stack([jnp.linspace(-0.5, 0.5, 1000), jnp.linspace(-3.0, 3.0, 1000)]).reshape(2, 10, 10, 10, 1)
    out = dynamic_threshold(x, 0.995)
    np.testing.assert_array_equal(out[0], x[0])  # s = max(1, 0.5) = 1: unchanged
    s = np.quantile(np.abs(np.asarray(x[1])), 0.995)
    np.testing.assert_allclose(out[1], np.clip(x[1], -s, s) / s, atol=1e-6)
    assert float(jnp.abs(out[1]).max()) == pytest.approx(1.0)


def test_static_clip():
    np.testing.assert_array_equal(static_clip(jnp.array([-2.0, 0.25, 1.5])), [-1.0, 0.25, 1.0])


def test_oscillating_weights():
    np.testing.assert_array_equal(oscillating_weights(6, 15.0, 1.0, 0), [15, 1, 15, 1, 15, 1])
    np.testing.assert_array_equal(oscillating_weights(7, 7.0, 2.0, 3), [7, 7, 7, 7, 2, 7, 2])
    with pytest.raises(ValueError, match="num_steps"):
        oscillating_weights(0)


def test_one_batched_forward_equals_two_separate_calls():
    from ivlib.guidance import classifier_free_prediction

    calls = []

    def model_fn(z, logsnr, text, text_mask, cond=None):
        calls.append(z.shape[0])
        pooled = jnp.sum(text * text_mask[..., None], axis=(1, 2))       # depends on the prompt
        return jnp.tanh(z * logsnr[:, None] + pooled[:, None] + (0 if cond is None else cond))

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    z, text, cond = jax.random.normal(k1, (3, 5)), jax.random.normal(k2, (3, 4, 2)), jax.random.normal(k3, (3, 5))
    mask, logsnr, w = jnp.ones((3, 4), bool), jnp.array([0.5, -1.0, 2.0]), jnp.array([0.0, 1.5, 7.0])
    batched = classifier_free_prediction(model_fn, z, logsnr, text, mask, w, cond=cond)
    assert calls == [6]
    cond_pred = model_fn(z, logsnr, text, mask, cond=cond)
    uncond_pred = model_fn(z, logsnr, jnp.zeros_like(text), jnp.zeros_like(mask), cond=cond)
    np.testing.assert_allclose(batched, guide(cond_pred, uncond_pred, w), atol=1e-6)
    np.testing.assert_allclose(batched[0], cond_pred[0], atol=1e-6)  # w = 0 is the conditional model
