"""The math of distillation: what a student learns from its teacher (chapter 09; paper §2.7).

Imagen Video makes its cascade fast in two stages (Meng et al. 2022, "On Distillation of Guided Diffusion
Models"): **guided distillation** teaches a student, conditioned on the guidance weight w, to output in one
pass what the teacher outputs with classifier-free guidance in two (eq. 5); **progressive distillation**
(Salimans & Ho 2022) then halves the number of sampling steps again and again, each student learning to
take in one DDIM step the two DDIM steps of its teacher. The targets are pure functions of arrays and of
denoisers `fn(z, logsnr) -> x̂`, so they are tested on the exact denoisers of `ivlib.analytic`: an exact
teacher makes the student's exact target computable without training anything. The losses of the two
stages apply them to networks, and `make_distill_step` is their jit-compiled optimisation step.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ivlib.diffusion import ddim_step, diffuse, per_sample, x_from_prediction, x_mse_weight
from ivlib.guidance import guide, guided_output, static_clip
from ivlib.loop import apply_gradients
from ivlib.nn.model_def import ModelDef
from ivlib.nn.unet import VideoUNet
from ivlib.schedules import alpha_sigma, cosine_logsnr
from ivlib.train import stage_inputs


# [start-ddim-inverse]
def ddim_x_target(z_t, z_s, logsnr_t, logsnr_s):
    """The x̃ whose one DDIM step from z_t lands exactly on z_s (chapter 09; Salimans & Ho 2022, eq. 8).

    A DDIM step is z_s = α_s x̃ + σ_s (z_t − α_t x̃)/σ_t, linear in x̃; solved for it:
    x̃ = (z_s − (σ_s/σ_t) z_t) / (α_s − (σ_s/σ_t) α_t). The denominator is α_s (1 − e^{(λ_t − λ_s)/2}) > 0
    for λ_t < λ_s, written with expm1 so that close times stay accurate.
    """
    lt, ls = per_sample(logsnr_t, z_t), per_sample(logsnr_s, z_t)
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


# ---------------------------------------------------------------- the losses of the two stages, on networks
def _teacher_x(teacher, stage, z, logsnr, text, text_mask, w, x_transform, extra):
    """The teacher's guided x-prediction at weight w, transformed as its sampler would (e.g. clipped)."""
    out = guided_output(teacher, z, logsnr, text, text_mask, w, **extra)
    x = x_from_prediction(z, out, logsnr, stage.unet.target)
    return x if x_transform is None else x_transform(x)


def _student_x(student, stage, z, logsnr, text, text_mask, w, extra, is_image):
    out = student(z, logsnr, text, text_mask, is_image=is_image, guidance=w, **extra)
    return x_from_prediction(z, out, logsnr, stage.unet.target)


# [start-guided-loss]
def guided_distillation_loss(student, teacher, batch, key, stage, w_range=(0.0, 4.0), aug_max_t=0.6,
                             x_transform=static_clip):
    """Stage 1 (chapter 09; Meng et al. 2022): the w-conditioned student matches, in one pass, the teacher's
    classifier-free guided x-prediction at a w ~ U(w_range) per sample, at t ~ U(0, 1) as in training.

    student, teacher: networks of the same stage (the student with `guidance_embedding`); batch as for
    `ivlib.train.diffusion_loss`, with text. The target is transformed as the teacher's sampler transforms
    its x-predictions (`x_transform`, static clipping by default) and carries no gradient.
    """
    k_t, k_noise, k_w, k_aug, k_crop = jax.random.split(key, 5)
    x, extra = stage_inputs(stage, batch, k_aug, k_crop, aug_max_t)
    b = x.shape[0]
    logsnr = cosine_logsnr(jax.random.uniform(k_t, (b,)))
    z = diffuse(x, logsnr, jax.random.normal(k_noise, x.shape))
    w = jax.random.uniform(k_w, (b,), minval=w_range[0], maxval=w_range[1])
    text, text_mask = batch["text"], batch["text_mask"]
    target = jax.lax.stop_gradient(_teacher_x(teacher, stage, z, logsnr, text, text_mask, w, x_transform, extra))
    x_student = _student_x(student, stage, z, logsnr, text, text_mask, w, extra, batch.get("is_image"))
    return jnp.mean(distillation_loss(x_student, target, logsnr))
# [end-guided-loss]


# [start-progressive-loss]
def progressive_distillation_loss(student, teacher, batch, key, stage, num_steps, w_range=(0.0, 4.0),
                                  aug_max_t=0.6, x_transform=static_clip):
    """Stage 2 (chapter 09; Salimans & Ho 2022, Algorithm 2): a student that samples in `num_steps` DDIM steps
    learns the two DDIM steps its teacher takes on the grid of 2 × num_steps. t is a point of the student's
    grid, t = (i + 1)/N with i ~ U{0, …, N − 1}; teacher and student are both told the same w ~ U(w_range).
    """
    k_t, k_noise, k_w, k_aug, k_crop = jax.random.split(key, 5)
    x, extra = stage_inputs(stage, batch, k_aug, k_crop, aug_max_t)
    b = x.shape[0]
    logsnr_t, logsnr_mid, logsnr_s = student_times(jax.random.randint(k_t, (b,), 0, num_steps), num_steps)
    z = diffuse(x, logsnr_t, jax.random.normal(k_noise, x.shape))
    w = jax.random.uniform(k_w, (b,), minval=w_range[0], maxval=w_range[1])
    text, text_mask = batch["text"], batch["text_mask"]
    teacher_fn = lambda z, logsnr: _teacher_x(teacher, stage, z, logsnr, text, text_mask, w, x_transform, extra)
    target = jax.lax.stop_gradient(two_step_target(teacher_fn, z, logsnr_t, logsnr_mid, logsnr_s))
    x_student = _student_x(student, stage, z, logsnr_t, text, text_mask, w, extra, batch.get("is_image"))
    return jnp.mean(distillation_loss(x_student, target, logsnr_t))
# [end-progressive-loss]


def student_from_teacher(stage, teacher_params, key):
    """(student stage, ModelDef, params): the teacher's network, now told w (`guidance_embedding`), with the
    teacher's parameters and a new guidance embedding whose output layer starts at zero — so the new student
    first predicts exactly what the teacher predicts with its prompt, the guided output at w = 0 (chapter 09)."""
    unet = dataclasses.replace(stage.unet, guidance_embedding=True)
    model = VideoUNet(unet, rngs=nnx.Rngs(key))
    nnx.update(model, teacher_params)
    return dataclasses.replace(stage, unet=unet), *ModelDef.split(model)


def make_distill_step(student_def, teacher_def, teacher_params, tx, stage, loss_fn, ema_decay=0.999, **loss_kwargs):
    """One jit-compiled distillation step (chapter 09): (state, batch, key) -> (state, metrics), the student's
    train state updated like `ivlib.train.make_train_step`'s; the frozen teacher's parameters are an argument
    of the compiled step, not constants baked into it. loss_fn: `guided_distillation_loss` or
    `progressive_distillation_loss` (with num_steps in loss_kwargs)."""

    def loss(params, teacher, batch, key):
        return loss_fn(student_def.bind(params), teacher_def.bind(teacher), batch, key, stage, **loss_kwargs)

    @jax.jit
    def step(state, teacher, batch, key):
        value, grads = jax.value_and_grad(loss)(state["params"], teacher, batch, key)
        return apply_gradients(state, grads, tx, ema_decay), {"loss": value, "grad_norm": optax.global_norm(grads)}

    return lambda state, batch, key: step(state, teacher_params, batch, key)
