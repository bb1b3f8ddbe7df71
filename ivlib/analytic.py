"""Exact denoisers: E[x | z_t] in closed form for data whose distribution we know (chapter 02).

A model trained to convergence on the data below would output exactly these predictions, so they
let us test samplers and guidance without training anything. All are mixtures of isotropic
Gaussians: component k has mean m_k (the shape of one sample), scalar std s_k and weight π_k.
Given z = α x + σ ε, component k explains z with likelihood N(z; α m_k, (α² s_k² + σ²) I) and
predicts E[x | z, k] = m_k + α s_k² / (α² s_k² + σ²) · (z − α m_k).
"""

import jax
import jax.numpy as jnp

from ivlib.schedules import alpha_sigma


# [start-mixture]
def mixture_denoiser(means, stds, weights=None):
    """Exact denoiser of a mixture of isotropic Gaussians (chapter 02).

    means: (K, *sample_shape); stds: (K,) (0 gives a point mass); weights: (K,) summing to 1
    (uniform if None). Returns denoise_fn(z, logsnr) -> E[x | z] for z of shape (B, *sample_shape)
    and logsnr of shape (B,) — the signature `ivlib.diffusion.sample` expects.
    """
    means = jnp.asarray(means, jnp.float32)
    stds = jnp.broadcast_to(jnp.asarray(stds, jnp.float32), means.shape[:1])
    num = means.shape[0]
    weights = jnp.full((num,), 1.0 / num) if weights is None else jnp.asarray(weights, jnp.float32)
    if weights.shape != (num,):
        raise ValueError(f"weights must have shape ({num},) to match means, got {weights.shape}")
    flat_means = means.reshape(num, -1)
    dim = flat_means.shape[1]

    def denoise_fn(z, logsnr):
        alpha, sigma = alpha_sigma(jnp.broadcast_to(logsnr, z.shape[:1]))
        alpha, sigma = alpha[:, None], sigma[:, None]                       # (B, 1)
        flat_z = z.reshape(z.shape[0], -1)                                  # (B, D)
        var = alpha**2 * stds[None] ** 2 + sigma**2                         # (B, K)
        sq_dist = jnp.sum(jnp.square(flat_z[:, None] - alpha[..., None] * flat_means[None]), -1)  # (B, K)
        log_resp = jnp.log(weights)[None] - 0.5 * sq_dist / var - 0.5 * dim * jnp.log(var)
        resp = jax.nn.softmax(log_resp, axis=-1)                            # p(k | z)
        gain = alpha * stds[None] ** 2 / var                                # (B, K)
        # Σ_k p(k|z) [m_k + gain_k (z − α m_k)], written to avoid a (B, K, D) temporary.
        x_mean = resp @ flat_means - (resp * gain * alpha) @ flat_means + jnp.sum(resp * gain, -1, keepdims=True) * flat_z
        return x_mean.reshape(z.shape)

    return denoise_fn
# [end-mixture]


def gaussian_denoiser(mean, std):
    """Exact denoiser of x ~ N(mean, std² I) (chapter 02): a one-component mixture."""
    mean = jnp.asarray(mean, jnp.float32)
    return mixture_denoiser(mean[None], jnp.asarray([std]))


def dataset_denoiser(videos):
    """Exact denoiser of the empirical distribution of a finite dataset (chapter 02).

    videos: (K, F, H, W, C). Sampling with it can only return one of the K training videos: the
    optimum of the diffusion loss on a finite dataset memorises it.
    """
    videos = jnp.asarray(videos, jnp.float32)
    return mixture_denoiser(videos, jnp.zeros(videos.shape[0]))
