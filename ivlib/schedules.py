"""Noise schedules in log-SNR form (chapter 01).

Imagen Video uses the continuous-time cosine schedule of Nichol & Dhariwal (2021) in the log-SNR
parameterisation of Kingma et al. (2021), clipped to [logsnr_min, logsnr_max] so that t = 0 and
t = 1 stay finite (paper §2.1). Everything here is a pure function of `t` or `logsnr`.
"""

import jax.numpy as jnp
from jax import nn

LOGSNR_MIN, LOGSNR_MAX = -20.0, 20.0  # where λ is clipped; the paper gives no range: ±20 as in diffusion_distillation (chapter 01)


# [start-cosine]
def _cosine_coefficients(logsnr_min, logsnr_max):
    """(a, b) such that λ(t) = -2 log tan(a t + b) hits logsnr_max at t=0 and logsnr_min at t=1."""
    b = jnp.arctan(jnp.exp(-0.5 * logsnr_max))
    a = jnp.arctan(jnp.exp(-0.5 * logsnr_min)) - b
    return a, b


def cosine_logsnr(t, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX):
    """Clipped cosine log-SNR, λ(t) = -2 log tan(a t + b) (chapter 01; paper §2.1).

    t: scalar or any shape, in [0, 1] (0 = data, 1 = noise). Returns λ with t's shape,
    decreasing from logsnr_max at t = 0 to logsnr_min at t = 1.
    """
    a, b = _cosine_coefficients(logsnr_min, logsnr_max)
    logsnr = -2.0 * jnp.log(jnp.tan(a * jnp.asarray(t, jnp.float32) + b))
    return jnp.clip(logsnr, logsnr_min, logsnr_max)


def cosine_t(logsnr, logsnr_min=LOGSNR_MIN, logsnr_max=LOGSNR_MAX):
    """Inverse of `cosine_logsnr`: the time t at which the schedule reaches `logsnr` (chapter 01)."""
    a, b = _cosine_coefficients(logsnr_min, logsnr_max)
    return (jnp.arctan(jnp.exp(-0.5 * jnp.asarray(logsnr, jnp.float32))) - b) / a
# [end-cosine]


# [start-alpha-sigma]
def alpha_sigma(logsnr):
    """(α, σ) of the variance-preserving process: α² = sigmoid(λ), σ² = sigmoid(-λ) (chapter 01).

    Hence α² + σ² = 1 and α²/σ² = e^λ. logsnr: scalar or any shape; both outputs have its shape.
    """
    logsnr = jnp.asarray(logsnr, jnp.float32)
    return jnp.sqrt(nn.sigmoid(logsnr)), jnp.sqrt(nn.sigmoid(-logsnr))
# [end-alpha-sigma]


def snr(logsnr):
    """Signal-to-noise ratio α²/σ² = e^λ (chapter 01)."""
    return jnp.exp(jnp.asarray(logsnr, jnp.float32))
