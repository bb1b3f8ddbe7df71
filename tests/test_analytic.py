"""The exact denoisers against their closed forms and what sampling with them must give."""

import jax
import jax.numpy as jnp
import numpy as np

from ivlib.analytic import dataset_denoiser, gaussian_denoiser, mixture_denoiser
from ivlib.diffusion import diffuse, sample
from ivlib.schedules import alpha_sigma


def test_gaussian_denoiser_closed_form():
    mean, std = 0.3, 0.5
    z, logsnr = jax.random.normal(jax.random.PRNGKey(0), (3, 4)), jnp.array([-2.0, 0.0, 3.0])
    alpha, sigma = (a[:, None] for a in alpha_sigma(logsnr))
    expected = mean + alpha * std**2 / (alpha**2 * std**2 + sigma**2) * (z - alpha * mean)
    np.testing.assert_allclose(gaussian_denoiser(jnp.full((4,), mean), std)(z, logsnr), expected, atol=1e-6)


def test_mixture_responsibilities_match_bayes_rule_in_one_dimension():
    means, stds, weights = jnp.array([[-0.5], [0.6]]), jnp.array([0.1, 0.2]), jnp.array([0.3, 0.7])
    z, logsnr = jnp.array([[0.2]]), jnp.array([1.0])
    alpha, sigma = (float(a[0]) for a in alpha_sigma(logsnr))
    var = alpha**2 * np.array([0.1, 0.2]) ** 2 + sigma**2
    like = np.array([0.3, 0.7]) * np.exp(-0.5 * (0.2 - alpha * np.array([-0.5, 0.6])) ** 2 / var) / np.sqrt(var)
    resp = like / like.sum()
    post = np.array([-0.5, 0.6]) + alpha * np.array([0.01, 0.04]) / var * (0.2 - alpha * np.array([-0.5, 0.6]))
    np.testing.assert_allclose(mixture_denoiser(means, stds, weights)(z, logsnr), [[resp @ post]], rtol=1e-5)


def test_dataset_denoiser_recovers_the_nearest_video_at_high_snr():
    videos = jax.random.uniform(jax.random.PRNGKey(1), (3, 2, 4, 4, 3), minval=-1, maxval=1)
    z = diffuse(videos[jnp.array([2, 0])], 6.0, 0.1 * jax.random.normal(jax.random.PRNGKey(2), (2, 2, 4, 4, 3)))
    np.testing.assert_allclose(dataset_denoiser(videos)(z, jnp.full((2,), 6.0)), videos[jnp.array([2, 0])], atol=1e-4)


def test_sampling_a_two_mode_mixture_recovers_its_weights():
    denoise = mixture_denoiser(jnp.array([[-0.5], [0.6]]), jnp.array([0.1, 0.2]), jnp.array([0.3, 0.7]))
    x = sample(denoise, (8000, 1), jax.random.PRNGKey(3), 64, "ddim")
    share_low = float(jnp.mean(x < 0.05))
    assert abs(share_low - 0.3) < 0.03, share_low
