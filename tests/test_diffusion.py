"""The diffusion core against hand-computed values and the exact denoiser of Gaussian data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivlib import diffusion as D
from ivlib.schedules import alpha_sigma, cosine_logsnr

SHAPE = (2, 3, 4, 4, 3)
LOGSNR_T, LOGSNR_S = 0.0, 1.762619  # t = 0.5 -> s = 0.25 on the cosine schedule


def _normal(seed, shape=SHAPE):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_round_trips_between_x_eps_v():
    x, eps, logsnr = _normal(0), _normal(1), jnp.array([-4.0, 3.0])
    z = D.diffuse(x, logsnr, eps)
    v = D.v_target(x, eps, logsnr)
    np.testing.assert_allclose(D.x_from_v(z, v, logsnr), x, atol=1e-5)
    np.testing.assert_allclose(D.eps_from_v(z, v, logsnr), eps, atol=1e-5)
    np.testing.assert_allclose(D.x_from_eps(z, eps, logsnr), x, atol=1e-3)
    np.testing.assert_allclose(D.eps_from_x(z, x, logsnr), eps, atol=1e-3)
    np.testing.assert_allclose(D.v_from_x(z, x, logsnr), v, atol=1e-3)
    for target in D.TARGETS:
        out = D.prediction_target(x, eps, logsnr, target)
        np.testing.assert_allclose(D.x_from_prediction(z, out, logsnr, target), x, atol=1e-3)


def test_v_is_the_rotation_of_x_and_eps():
    # (z, v) is (x, eps) rotated by the angle phi with alpha = cos(phi), sigma = sin(phi): norms agree.
    x, eps = _normal(2), _normal(3)
    z, v = D.diffuse(x, 0.7, eps), D.v_target(x, eps, 0.7)
    np.testing.assert_allclose(z**2 + v**2, x**2 + eps**2, rtol=1e-4, atol=1e-5)


def test_ddim_step_reference_value():
    x_pred = D.x_from_v(jnp.ones((1, 1)), jnp.full((1, 1), 0.5), LOGSNR_T)
    np.testing.assert_allclose(x_pred, 0.353553, atol=1e-6)
    np.testing.assert_allclose(D.eps_from_v(jnp.ones((1, 1)), jnp.full((1, 1), 0.5), LOGSNR_T), 1.060660, atol=1e-6)
    np.testing.assert_allclose(D.ddim_step(jnp.ones((1, 1)), x_pred, LOGSNR_T, LOGSNR_S), 0.732557, atol=1e-5)


def test_ancestral_step_reference_values():
    z, x_pred = jnp.ones((1, 1)), jnp.full((1, 1), 0.353553)
    mean = D.ancestral_step(z, x_pred, LOGSNR_T, LOGSNR_S, jnp.zeros((1, 1)), 0.3)
    np.testing.assert_allclose(mean, 0.494786, atol=1e-5)
    for gamma, var in [(0.0, 0.121330), (1.0, 0.414203), (0.3, 0.175365)]:
        one_sigma = D.ancestral_step(z, x_pred, LOGSNR_T, LOGSNR_S, jnp.ones((1, 1)), gamma) - mean
        np.testing.assert_allclose(one_sigma**2, var, atol=1e-5)


def test_per_sample_logsnr_broadcasts():
    x, eps = _normal(4), _normal(5)
    logsnr = jnp.array([-2.0, 5.0])
    z = D.diffuse(x, logsnr, eps)
    for b in range(2):
        np.testing.assert_allclose(z[b], D.diffuse(x[b:b + 1], logsnr[b], eps[b:b + 1])[0], atol=1e-6)


def test_loss_weight_identities():
    x, eps = _normal(6), _normal(7)
    logsnr = jnp.array([-3.0, 2.0])
    z = D.diffuse(x, logsnr, eps)
    x_hat = x + 0.1 * _normal(8)  # any model, expressed as its x prediction
    x_mse = D.prediction_loss(x_hat, x, eps, logsnr, "x")
    eps_mse = D.prediction_loss(D.eps_from_x(z, x_hat, logsnr), x, eps, logsnr, "eps")
    v_mse = D.prediction_loss(D.v_from_x(z, x_hat, logsnr), x, eps, logsnr, "v")
    np.testing.assert_allclose(eps_mse, D.x_mse_weight(logsnr, "eps") * x_mse, rtol=1e-3)
    np.testing.assert_allclose(v_mse, D.x_mse_weight(logsnr, "v") * x_mse, rtol=1e-3)
    np.testing.assert_allclose(D.x_mse_weight(logsnr, "truncated_snr"), [1.0, np.exp(2.0)], rtol=1e-6)
    assert x_mse.shape == (2,)


# ---- the whole samplers with the exact denoiser of Gaussian data -------------------------------
MU, STD = 0.4, 0.3


def gaussian_denoiser(z, logsnr):
    """E[x | z_t] for x ~ N(MU, STD^2) per dimension: MU + alpha STD^2 / (alpha^2 STD^2 + sigma^2) (z - alpha MU)."""
    alpha, sigma = alpha_sigma(logsnr.reshape((-1,) + (1,) * (z.ndim - 1)))
    return MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (z - alpha * MU)


def _moment_errors(num_steps, sampler, gamma=0.3):
    x = D.sample(gaussian_denoiser, (4096, 16), jax.random.PRNGKey(0), num_steps, sampler, gamma)
    return abs(float(x.mean()) - MU), abs(float(x.std()) - STD)


@pytest.mark.parametrize("sampler,gamma", [("ddim", 0.0), ("ancestral", 0.0), ("ancestral", 0.3), ("ancestral", 1.0),
                                           ("stochastic", 0.0)])
def test_samplers_reproduce_gaussian_data_as_steps_grow(sampler, gamma):
    few = _moment_errors(2, sampler, gamma)
    many = _moment_errors(256, sampler, gamma)
    assert many[0] < 0.01 and many[1] < 0.01, many
    assert many[1] < few[1], (few, many)


def test_ddim_is_deterministic_and_seeded():
    a = D.sample(gaussian_denoiser, (8, 4), jax.random.PRNGKey(1), 16, "ddim")
    b = D.sample(gaussian_denoiser, (8, 4), jax.random.PRNGKey(1), 16, "ddim")
    c = D.sample(gaussian_denoiser, (8, 4), jax.random.PRNGKey(2), 16, "ddim")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_x_transform_and_step_aware_hooks():
    seen = []

    def denoise(z, logsnr, step):
        seen.append(step)  # traced once
        return jnp.full_like(z, 5.0) * (step + 1)

    x = D.sample(denoise, (2, 3), jax.random.PRNGKey(0), 4, "ddim", x_transform=lambda x: jnp.clip(x, -1, 1),
                 step_aware=True)
    np.testing.assert_allclose(x, 1.0)
    assert len(seen) == 1


def test_step_aware_hook_counts_steps_from_the_noisiest():
    """Step 0 is the first, noisiest step (t = 1): per-step guidance weights (oscillating guidance,
    chapter 08) are indexed by it, so a reversed count would swap which steps get the high weight."""
    calls = []

    def denoise(z, logsnr, step):
        jax.debug.callback(lambda s, l: calls.append((int(s), float(l[0]))), step, logsnr, ordered=True)
        return jnp.zeros_like(z)

    num_steps = 5
    D.sample(denoise, (2, 3), jax.random.PRNGKey(0), num_steps, "ddim", step_aware=True)
    jax.effects_barrier()
    assert [s for s, _ in calls] == list(range(num_steps))
    t = 1.0 - np.arange(num_steps) / num_steps  # the step that goes from t to t - 1/N
    np.testing.assert_allclose([l for _, l in calls], cosine_logsnr(jnp.asarray(t)), rtol=1e-5, atol=1e-4)


def test_one_step_sampler_returns_the_denoiser_output():
    x = D.sample(lambda z, logsnr: jnp.full_like(z, 0.25), (3, 2), jax.random.PRNGKey(0), 1, "ancestral")
    np.testing.assert_allclose(x, 0.25)


@pytest.mark.parametrize("kwargs,match", [
    ({"sampler": "euler"}, "sampler"),
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": 2.5}, "num_steps"),
    ({"gamma": 1.5}, "gamma"),
    ({"gamma": -0.1}, "gamma"),
])
def test_sample_rejects_bad_arguments(kwargs, match):
    args = dict(num_steps=4, sampler="ancestral", gamma=0.3) | kwargs
    with pytest.raises(ValueError, match=match):
        D.sample(gaussian_denoiser, (2, 3), jax.random.PRNGKey(0), **args)


def test_logsnr_batch_mismatch_raises():
    with pytest.raises(ValueError, match="batch size 3"):
        D.diffuse(_normal(0), jnp.zeros(3), _normal(1))
    with pytest.raises(ValueError, match="target"):
        D.prediction_target(_normal(0), _normal(1), 0.0, "score")


def test_final_logsnr_grid_uses_cosine_endpoints():
    assert float(cosine_logsnr(1.0)) == pytest.approx(-20.0, abs=1e-3)
