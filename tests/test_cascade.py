"""Stages, conditioning of SR stages, augmentation and stage sampling (chapters 05–06, 08)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ivlib.cascade import (Cascade, SamplerSettings, Stage, augment_condition, check_chain, condition_video,
                           sample_stage, upsample_spatial, upsample_temporal)
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
