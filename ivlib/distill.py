"""The math of distillation: what a student learns from its teacher (chapter 09; paper §2.7).

Imagen Video makes its cascade fast in two stages (Meng et al. 2022, "On Distillation of Guided Diffusion
Models"): **guided distillation** teaches a student, conditioned on the guidance weight w, to output in one
pass what the teacher outputs with classifier-free guidance in two (eq. 5); **progressive distillation**
(Salimans & Ho 2022) then halves the number of sampling steps again and again, each student learning to
take in one DDIM step the two DDIM steps of its teacher. Everything here is a pure function of arrays and
of denoisers `fn(z, logsnr) -> x̂`, so it is tested on the exact denoisers of `ivlib.analytic`: an exact
teacher makes the student's exact target computable without training anything.
"""

import jax.numpy as jnp

from ivlib.diffusion import _per_sample, ddim_step, x_mse_weight
from ivlib.guidance import guide
from ivlib.schedules import alpha_sigma, cosine_logsnr


# [start-ddim-inverse]
def ddim_x_target(z_t, z_s, logsnr_t, logsnr_s):
    """The x̃ whose one DDIM step from z_t lands exactly on z_s (chapter 09; Salimans & Ho 2022, eq. 8).

    A DDIM step is z_s = α_s x̃ + σ_s (z_t − α_t x̃)/σ_t, linear in x̃; solved for it:
    x̃ = (z_s − (σ_s/σ_t) z_t) / (α_s − (σ_s/σ_t) α_t). The denominator is α_s (1 − e^{(λ_t − λ_s)/2}) > 0
    for λ_t < λ_s, written with expm1 so that close times stay accurate.
    """
    lt, ls = _per_sample(logsnr_t, z_t), _per_sample(logsnr_s, z_t)
    _, sigma_t = alpha_sigma(lt)
    alpha_s, sigma_s = alpha_sigma(ls)
    ratio = sigma_s / sigma_t
    return (z_s - ratio * z_t) / (-alpha_s * jnp.expm1(0.5 * (lt - ls)))
# [end-ddim-inverse]


# [start-two-step]
def two_step_target(teacher_fn, z_t, logsnr_t, logsnr_mid, logsnr_s):
    """The student's x-target of progressive distillation (chapter 09; Salimans & Ho 2022, Algorithm 2).

    Two DDIM steps of the teacher, t → t' → s (λ_t < λ_mid < λ_s), then the x̃ that takes z_t to the same
    z_s in one DDIM step. A student that outputs x̃ samples in N steps what the teacher samples in 2N.
    teacher_fn(z, logsnr) -> x̂ with logsnr of shape (B,); z_t: (B, ...); logsnr_*: (B,).
    """
    z_mid = ddim_step(z_t, teacher_fn(z_t, logsnr_t), logsnr_t, logsnr_mid)
    z_s = ddim_step(z_mid, teacher_fn(z_mid, logsnr_mid), logsnr_mid, logsnr_s)
    return ddim_x_target(z_t, z_s, logsnr_t, logsnr_s)
# [end-two-step]


def student_times(step, num_steps, logsnr_fn=cosine_logsnr):
    """(λ_t, λ_mid, λ_s) of a student step on an N-step grid: t = (i+1)/N, t' = t − 1/(2N), s = i/N.

    step: integer array of grid indices i in [0, N) (the sampler's step i goes from (i+1)/N to i/N).
    The teacher takes the two half steps of the 2N-step grid that the student's one step spans.
    """
    i = jnp.asarray(step, jnp.float32)
    n = jnp.asarray(num_steps, jnp.float32)
    return logsnr_fn((i + 1.0) / n), logsnr_fn((i + 0.5) / n), logsnr_fn(i / n)


def guided_target(cond_fn, uncond_fn, z, logsnr, w):
    """Stage 1 of guided distillation (chapter 09; Meng et al. 2022): the teacher's guided x-prediction,
    x̃ = (1 + w) x̂_c − w x̂_u (paper eq. 5), which the w-conditioned student learns in one pass.

    cond_fn, uncond_fn: the teacher with and without its text, (z, logsnr) -> x̂; w: scalar or (B,).
    """
    return guide(cond_fn(z, logsnr), uncond_fn(z, logsnr), w)


# [start-loss]
def distillation_loss(x_student, x_target, logsnr):
    """Per-sample x-space MSE weighted by truncated SNR, max(SNR, 1) (chapter 09; Salimans & Ho 2022, §4).

    Plain x-MSE (SNR weight 1) would ignore the low-noise end; ε-MSE (weight SNR) would vanish at the
    high-noise end, where a distilled sampler with few steps spends its first, largest step.
    x_student, x_target: (B, ...); logsnr: (B,). Returns (B,).
    """
    err = jnp.square(x_student - x_target)
    return x_mse_weight(logsnr, "truncated_snr") * jnp.mean(err.reshape(err.shape[0], -1), axis=-1)
# [end-loss]
