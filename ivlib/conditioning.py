"""How a super-resolution stage sees its input (chapters 05–06; paper §2.3, §2.5).

SR stages condition on the previous stage's video, upsampled to their own shape (bilinear in space;
repeated or blank frames in time) and concatenated to z_t channel-wise (SR3 / Palette, paper §2.3),
after noise conditioning augmentation: the conditioning video is put through the forward process at a
log-SNR λ' that the model is told (§2.5). `stage` arguments are `ivlib.stage.Stage`s; only their
shapes and kind are read.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ivlib.diffusion import diffuse
from ivlib.schedules import LOGSNR_MAX, LOGSNR_MIN, cosine_logsnr

TEMPORAL_UPSAMPLING = ("repeat", "blank")  # the modes of `upsample_temporal`


# [start-upsample]
def upsample_spatial(video, height, width):
    """Bilinear spatial resizing of (B, F, h, w, C) to (B, F, height, width, C) (paper §2.3)."""
    b, f, _, _, c = video.shape
    return jax.image.resize(video, (b, f, height, width, c), method="bilinear", antialias=True)


def upsample_temporal(video, frames, mode="repeat"):
    """Stretch (B, f, H, W, C) to `frames` frames (paper §2.3): repeat every frame, or keep the
    input frames at their times and fill the new ones with blank (zero) frames."""
    f = video.shape[1]
    if frames % f:
        raise ValueError(f"frames ({frames}) must be a multiple of the input's frame count ({f})")
    factor = frames // f
    if mode == "repeat":
        return jnp.repeat(video, factor, axis=1)
    if mode == "blank":
        blank = jnp.zeros((video.shape[0], f, factor - 1) + video.shape[2:], video.dtype)
        return jnp.concatenate([video[:, :, None], blank], axis=2).reshape((video.shape[0], frames) + video.shape[2:])
    raise ValueError(f"mode must be one of {TEMPORAL_UPSAMPLING}, got {mode!r}")
# [end-upsample]


def condition_video(stage, video):
    """The previous stage's video (B, in_frames, in_height, in_width, C) as this stage's conditioning
    input: upsampled to the stage's own (frames, height, width) (chapter 05). For a fully
    convolutional SSR stage any input size works; the output is `factor` times larger."""
    if stage.kind == "base":
        raise ValueError(f"stage {stage.name!r} is a base model: it has no conditioning video")
    b, f, h, w, _ = video.shape
    if stage.kind == "tsr":
        if (h, w) != (stage.height, stage.width) and not stage.unet.fully_convolutional:
            raise ValueError(f"stage {stage.name!r} expects input video of height x width {stage.height}x{stage.width}, got {h}x{w}")
        return upsample_temporal(video, f * (stage.frames // stage.in_frames), stage.temporal_upsampling)
    scale_h, scale_w = stage.height // stage.in_height, stage.width // stage.in_width
    return upsample_spatial(video, h * scale_h, w * scale_w)


# [start-augment]
def augment_condition(cond, cond_logsnr, noise):
    """Noise conditioning augmentation (paper §2.5; chapter 06): the conditioning video is put
    through the forward process at log-SNR `cond_logsnr` (random per sample in training, fixed at
    sampling, e.g. SNR 3 or 5) and the model is told `cond_logsnr`."""
    return diffuse(cond, cond_logsnr, noise)


def augment_for_training(cond, key, aug_max_t=0.6):
    """Training: a random augmentation level per sample, λ' = λ(t'), t' ~ U(0, aug_max_t) (chapter 06).

    aug_max_t = 0 turns augmentation off: every sample gets λ' = logsnr_max (20), a clean input.
    Returns (augmented cond, λ' of shape (B,)).
    """
    k_level, k_noise = jax.random.split(key)
    cond_logsnr = cosine_logsnr(jax.random.uniform(k_level, (cond.shape[0],), maxval=aug_max_t))
    return augment_condition(cond, cond_logsnr, jax.random.normal(k_noise, cond.shape)), cond_logsnr


def augment_for_sampling(cond, key, aug_snr=5.0):
    """Sampling: one fixed augmentation level for every sample, λ' = log(aug_snr) (paper: "such as 3 or 5").

    aug_snr = inf means no augmentation (λ' = logsnr_max, what a model trained without it saw); aug_snr <= 0
    means pure noise (λ' = logsnr_min). Returns (augmented cond, λ' of shape (B,)).
    """
    logsnr = jnp.log(jnp.maximum(jnp.asarray(aug_snr, jnp.float32), 0.0))  # an SNR below 0 is no SNR: take 0
    cond_logsnr = jnp.full((cond.shape[0],), jnp.clip(logsnr, LOGSNR_MIN, LOGSNR_MAX), jnp.float32)
    return augment_condition(cond, cond_logsnr, jax.random.normal(key, cond.shape)), cond_logsnr
# [end-augment]


def sampling_condition(stage, low_res, key, aug_snr=5.0):
    """What an SR stage is given at sampling time (chapters 05–06): the previous stage's video upsampled
    (`condition_video`) and augmented at the fixed SNR `aug_snr`. Returns (cond, λ', key left for the
    sampler); `sample_stage` calls this, so (cond, λ') is exactly what the model sees."""
    cond = condition_video(stage, jnp.asarray(low_res, jnp.float32))
    key, aug_key = jax.random.split(key)
    cond, cond_logsnr = augment_for_sampling(cond, aug_key, aug_snr)
    return cond, cond_logsnr, key
