"""Stages, conditioning of SR stages, augmentation and stage sampling (chapters 05–06, 08)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ivlib.cascade import Cascade, SamplerSettings, sample_stage
from ivlib.conditioning import (augment_condition, augment_for_sampling, augment_for_training, condition_video,
                                upsample_spatial, upsample_temporal)
from ivlib.stage import Stage, check_chain
from ivlib.schedules import alpha_sigma, cosine_logsnr
from ivlib.nn.unet import Level, UNetConfig
from ivlib.train import create_state, default_optimizer

LEVELS = (Level(8, 1, False, "conv"),)


def _unet(frames, size, cond=0, text=0, **kw):
    return UNetConfig(frames, size, size, LEVELS, cond_channels=cond, text_dim=text, head_dim=8, emb_dim=16, **kw)


BASE = Stage("base", "base", _unet(4, 8, text=64))
TSR = Stage("tsr", "tsr", _unet(8, 8, cond=3, text=64), in_frames=4, in_height=8, in_width=8)
SSR = Stage("ssr", "ssr", _unet(8, 16, cond=3, text=64, fully_convolutional=True), in_frames=8, in_height=8,
            in_width=8, train_crop=(8, 8))


def test_temporal_upsampling_modes():
    video = jnp.arange(2 * 3).reshape(2, 3, 1, 1, 1).astype(jnp.float32) + 1
    rep = upsample_temporal(video, 6, "repeat")
    np.testing.assert_array_equal(rep[0, :, 0, 0, 0], [1, 1, 2, 2, 3, 3])
    blank = upsample_temporal(video, 6, "blank")
    np.testing.assert_array_equal(blank[1, :, 0, 0, 0], [4, 0, 5, 0, 6, 0])
    with pytest.raises(ValueError, match="multiple"):
        upsample_temporal(video, 7)
    with pytest.raises(ValueError, match="mode"):
        upsample_temporal(video, 6, "interpolate")


def test_spatial_upsampling_is_bilinear_and_preserves_constants():
    video = jnp.full((1, 2, 4, 4, 3), 0.25)
    np.testing.assert_allclose(upsample_spatial(video, 8, 8), 0.25, atol=1e-6)
    ramp = jnp.tile(jnp.arange(4.0)[None, None, None, :, None], (1, 1, 4, 1, 1))
    up = upsample_spatial(ramp, 4, 8)[0, 0, 0, :, 0]
    assert bool(jnp.all(jnp.diff(up) >= 0)) and up.shape == (8,)


def test_condition_video_shapes():
    assert condition_video(TSR, jnp.zeros((2, 4, 8, 8, 3))).shape == (2, 8, 8, 8, 3)
    assert condition_video(SSR, jnp.zeros((2, 8, 8, 8, 3))).shape == (2, 8, 16, 16, 3)
    with pytest.raises(ValueError, match="base model"):
        condition_video(BASE, jnp.zeros((2, 4, 8, 8, 3)))


def test_chain_check_names_both_stages():
    check_chain((BASE, TSR, SSR))
    with pytest.raises(ValueError, match="'base'.*'ssr'"):
        check_chain((BASE, SSR))
    with pytest.raises(ValueError, match="starts with a base"):
        check_chain((TSR,))


def test_stage_validation():
    with pytest.raises(ValueError, match="kind"):
        Stage("x", "vsr", _unet(4, 8))
    with pytest.raises(ValueError, match="temporal SR"):
        Stage("x", "tsr", _unet(8, 8, cond=3), in_frames=3, in_height=8, in_width=8)


def test_augmentation_is_the_forward_process():
    cond, noise = jnp.ones((2, 1, 2, 2, 3)), jnp.full((2, 1, 2, 2, 3), 2.0)
    logsnr = jnp.array([0.0, jnp.log(3.0)])  # SNR 1 and SNR 3
    out = augment_condition(cond, logsnr, noise)
    alpha = np.sqrt([0.5, 0.75])
    np.testing.assert_allclose(out[:, 0, 0, 0, 0], alpha + np.sqrt(1 - alpha**2) * 2.0, rtol=1e-5)


def test_training_augmentation_is_random_per_sample_within_range():
    cond = jnp.ones((256, 2, 2, 2, 3))
    out, logsnr = augment_for_training(cond, jax.random.PRNGKey(0), aug_max_t=0.6)
    lo = float(cosine_logsnr(0.6))
    assert logsnr.shape == (256,) and float(logsnr.min()) >= lo - 1e-5 and float(logsnr.max()) <= 20.0
    assert len(np.unique(np.asarray(logsnr))) == 256          # one level per sample
    from ivlib.schedules import cosine_t
    times = np.asarray(cosine_t(logsnr))  # the levels are λ(t') with t' uniform on [0, 0.6]
    assert 0.25 < times.mean() < 0.35 and times.max() > 0.55
    # each sample is exactly the forward process at its own level
    alpha, sigma = alpha_sigma(logsnr)
    noise = (out - alpha[:, None, None, None, None]) / sigma[:, None, None, None, None]
    assert abs(float(noise.std()) - 1.0) < 0.05
    # aug_max_t = 0: no augmentation, the clean video and λ' = logsnr_max
    clean, top = augment_for_training(cond, jax.random.PRNGKey(0), aug_max_t=0.0)
    np.testing.assert_allclose(top, 20.0)
    np.testing.assert_allclose(clean, cond, atol=1e-3)  # σ = e^-10 at λ = 20


def test_sampling_augmentation_is_fixed():
    cond = jnp.ones((3, 2, 2, 2, 3))
    out, logsnr = augment_for_sampling(cond, jax.random.PRNGKey(1), aug_snr=3.0)
    np.testing.assert_allclose(logsnr, np.log(3.0) * np.ones(3), rtol=1e-6)
    noise = jax.random.normal(jax.random.PRNGKey(1), cond.shape)
    a, s = np.sqrt(0.75), np.sqrt(0.25)                      # SNR 3: α² = 3/4, σ² = 1/4
    np.testing.assert_allclose(out, a * cond + s * noise, rtol=1e-5, atol=1e-6)
    clean, top = augment_for_sampling(cond, jax.random.PRNGKey(1), aug_snr=float("inf"))
    np.testing.assert_allclose(top, 20.0)
    np.testing.assert_allclose(clean, cond, atol=1e-3)  # σ = e^-10 at λ = 20


def test_training_loss_tells_the_model_a_random_level_per_sample():
    """Record the cond_logsnr that reaches the model in the training loss (random; 20 = clean when off)."""
    from ivlib.nn.unet import VideoUNet
    from ivlib.train import diffusion_loss
    seen = []

    class Spy(VideoUNet):
        def __call__(self, z, logsnr, *a, cond_logsnr=None, **kw):
            seen.append(cond_logsnr)
            return super().__call__(z, logsnr, *a, cond_logsnr=cond_logsnr, **kw)

    model = Spy(TSR.unet, rngs=nnx.Rngs(0))
    batch = {"video": jnp.zeros((4, 8, 8, 8, 3)), "cond": jnp.zeros((4, 4, 8, 8, 3)),
             "text": jnp.zeros((4, 3, 64)), "text_mask": jnp.ones((4, 3), bool)}
    diffusion_loss(model, batch, jax.random.PRNGKey(0), TSR)
    assert len(np.unique(np.asarray(seen[-1]))) == 4
    diffusion_loss(model, batch, jax.random.PRNGKey(0), TSR, aug_max_t=0.0)
    np.testing.assert_allclose(seen[-1], 20.0)


def _models(*stages):
    tx = default_optimizer()
    out = []
    for i, s in enumerate(stages):
        md, st = create_state(s.unet, tx, jax.random.PRNGKey(i))
        out.append((md, st["params"]))
    return out


def test_guidance_zero_and_unguided_text_model_agree_and_w_changes_output():
    (md, params), = _models(BASE)
    text, mask = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 64)), jnp.ones((2, 3), bool)
    # make the network depend on text: perturb all parameters away from the zero-initialised output layer
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(7), p.shape), params)
    kw = dict(text=text, text_mask=mask, num_steps=3, sampler="ddim", threshold="none")
    a = sample_stage(BASE, md, params, jax.random.PRNGKey(1), guidance=0.0, **kw)
    model = md.bind(params)
    from ivlib.diffusion import sample, x_from_v
    b = sample(lambda z, l: x_from_v(z, model(z, l, text, mask), l), a.shape, jax.random.PRNGKey(1), 3, "ddim")
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = sample_stage(BASE, md, params, jax.random.PRNGKey(1), guidance=3.0, **kw)
    assert float(jnp.abs(a - c).max()) > 1e-3


def test_cascade_runs_all_stages_with_per_stage_settings():
    models = _models(BASE, TSR, SSR)
    from ivlib.text import default_text_encoder
    cascade = Cascade((BASE, TSR, SSR), [m for m, _ in models], [p for _, p in models], default_text_encoder(16))
    settings = {"base": SamplerSettings(num_steps=2, oscillate=(5.0, 1.0, 1)), "tsr": SamplerSettings(num_steps=2),
                "ssr": SamplerSettings(num_steps=2, sampler="ddim")}
    videos = cascade.sample(["a red 3 moving left", "the digit 1 moving up"], jax.random.PRNGKey(0), settings)
    assert [v.shape for v in videos] == [(2, 4, 8, 8, 3), (2, 8, 8, 8, 3), (2, 8, 16, 16, 3)]
    assert float(jnp.abs(videos[-1]).max()) <= 1.0 + 1e-6   # dynamic thresholding keeps x in range
    with pytest.raises(ValueError, match="non-empty list"):
        cascade.sample("a red 3", jax.random.PRNGKey(0))


def test_sampler_settings_weights_per_stage():
    constant = SamplerSettings(num_steps=4, guidance=2.5)
    np.testing.assert_array_equal(jnp.broadcast_to(jnp.asarray(constant.weights()), (4,)), [2.5] * 4)
    oscillating = SamplerSettings(num_steps=6, oscillate=(15.0, 1.0, 2))
    np.testing.assert_array_equal(oscillating.weights(), [15, 15, 15, 1, 15, 1])
