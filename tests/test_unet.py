"""Tests of the Video U-Net (chapter 03): invariants of the space-time separable design.

Zero-initialised residual branches make a fresh model blind to most of its inputs, so invariance
tests first move every parameter away from its initial value (`randomize`).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ivlib.nn import Level, UNetConfig, VideoUNet, count_params
from ivlib.nn.attention import TemporalAttention
from ivlib.nn.layers import TemporalConv, logsnr_features

# A tiny base-like stage: temporal conv at full resolution, spatial + temporal attention below.
BASE = UNetConfig(frames=4, height=8, width=8, text_dim=8, head_dim=8,
                  levels=(Level(8, 1, False, "conv"), Level(16, 1, True, "attention")))
# A tiny super-resolution stage: conditioning video, temporal convolutions only.
SR = UNetConfig(frames=4, height=8, width=8, cond_channels=3, text_dim=8, head_dim=8, frame_embedding=False,
                levels=(Level(8, 1, False, "conv"), Level(16, 1, True, "conv")))


def randomize(model, seed=0, where=lambda path: True):
    """Give every parameter whose path satisfies `where` random values, drawn on the host.

    Kernels ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.1), everything else ~ N(0, 0.3). Host-side
    numpy keeps the tests free of the (slow on CPU) compilation of one random op per shape.
    """
    rng = np.random.default_rng(seed)

    def draw(path, p):
        name = jax.tree_util.keystr(path)
        if not where(name):
            return p
        if "kernel" in name:
            value = rng.standard_normal(p.shape) / math.sqrt(math.prod(p.shape[:-1]))
        elif "scale" in name:
            value = 1.0 + 0.1 * rng.standard_normal(p.shape)
        else:
            value = 0.3 * rng.standard_normal(p.shape)
        return jnp.asarray(value, jnp.float32)

    nnx.update(model, jax.tree_util.tree_map_with_path(draw, nnx.state(model, nnx.Param)))
    return model


def make(config, seed=0):
    """A VideoUNet with random parameters, built without running its initialisers."""
    return randomize(nnx.eval_shape(lambda: VideoUNet(config, rngs=nnx.Rngs(0))), seed)


@nnx.jit
def apply(model, z, logsnr, text=None, text_mask=None, cond=None, cond_logsnr=None, is_image=None):
    return model(z, logsnr, text, text_mask, cond, cond_logsnr, is_image)


def inputs(config, batch=2, frames=None, seed=1):
    rng = np.random.default_rng(seed)
    f = frames or config.frames
    z = jnp.asarray(rng.standard_normal((batch, f, config.height, config.width, config.channels)), jnp.float32)
    text = jnp.asarray(rng.standard_normal((batch, 5, config.text_dim)), jnp.float32)
    mask = jnp.asarray(np.arange(5)[None, :] < np.array([3, 5][:batch])[:, None])
    cond = (jnp.asarray(rng.standard_normal((*z.shape[:-1], config.cond_channels)), jnp.float32)
            if config.cond_channels else None)
    return z, text, mask, cond


VIDEOS, IMAGES, MIXED = jnp.array([False, False]), jnp.array([True, True]), jnp.array([True, False])


@pytest.fixture(scope="module")
def base_model():
    return make(BASE)


def run(model, z, text=None, mask=None, is_image=MIXED, logsnr=(1.0, -2.0), cond=None):
    cond_logsnr = None if cond is None else jnp.array([3.0, 1.0])
    return apply(model, z, jnp.array(logsnr), text, mask, cond, cond_logsnr, is_image)


def max_diff(a, b, axis=None):
    return np.abs(np.asarray(a) - np.asarray(b)).max(axis=axis)


def test_image_frames_are_independent_and_video_frames_interact(base_model):
    z, text, mask, _ = inputs(BASE)
    out, out2 = run(base_model, z, text, mask), run(base_model, z.at[:, 2].add(1.0), text, mask)
    diff = max_diff(out2, out, axis=(2, 3, 4))  # (batch, frames); sample 0 is images, sample 1 a video
    others = [0, 1, 3]
    assert diff[0, others].max() < 1e-6, diff  # image sample: frame 2 leaves frames 0, 1, 3 unchanged
    assert diff[0, 2] > 1e-3
    assert diff[1, others].min() > 1e-4, diff  # video sample: every frame sees frame 2


def test_image_frames_share_spatial_weights(base_model):
    z, text, mask, _ = inputs(BASE)
    z = jnp.broadcast_to(z[:, :1], z.shape)  # the same image in every frame
    out = run(base_model, z, text, mask, IMAGES)
    np.testing.assert_allclose(out, jnp.broadcast_to(out[:, :1], out.shape), atol=1e-6)
    video = run(base_model, z, text, mask, VIDEOS)  # frame embedding + temporal layers break the symmetry
    assert max_diff(video, video[:, :1]) > 1e-3


def test_temporal_conv_is_bypassed_exactly_for_images():
    model = make(SR)
    z, text, mask, cond = inputs(SR)
    images, videos = run(model, z, text, mask, IMAGES, cond=cond), run(model, z, text, mask, VIDEOS, cond=cond)
    randomize(model, seed=7, where=lambda path: "temporal" in path)  # new temporal-conv weights
    np.testing.assert_array_equal(run(model, z, text, mask, IMAGES, cond=cond), images)
    assert max_diff(run(model, z, text, mask, VIDEOS, cond=cond), videos) > 1e-3


def test_temporal_conv_equals_kernel3_convolution():
    layer = randomize(nnx.eval_shape(lambda: TemporalConv(4, dtype=jnp.float32, rngs=nnx.Rngs(0))))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 3, 3, 4)), jnp.float32)
    out = layer(x, jnp.array([1.0, 0.0]))
    h = jax.nn.silu(layer.norm(x.reshape(10, 3, 3, 4))).reshape(x.shape)
    h = jnp.moveaxis(h, 1, 3).reshape(18, 5, 4)  # (B*H*W, F, C)
    kernel = layer.proj.kernel[...].reshape(3, 4, 4)  # taps f-1, f, f+1
    conv = jax.lax.conv_general_dilated(h, kernel, (1,), [(1, 1)], dimension_numbers=("NWC", "WIO", "NWC"))
    conv = jnp.moveaxis((conv + layer.proj.bias[...]).reshape(2, 3, 3, 5, 4), 3, 1)
    np.testing.assert_allclose(out[0], x[0] + conv[0], atol=1e-5)
    np.testing.assert_array_equal(out[1], x[1])  # image sample: residual bypassed


def test_relative_position_bias_clips_frame_distances():
    layer = nnx.eval_shape(lambda: TemporalAttention(8, 4, frames=3, dtype=jnp.float32, rngs=nnx.Rngs(0)))
    layer.rel_bias = nnx.Param(jnp.arange(10.0).reshape(5, 2))  # distances -2..2, two heads
    bias = np.asarray(layer.bias(6))
    assert bias.shape == (2, 6, 6)
    dist = np.clip(np.arange(6)[None, :] - np.arange(6)[:, None], -2, 2)
    np.testing.assert_array_equal(bias[1], 2 * (dist + 2) + 1)


def test_relative_keys_are_shaw_et_al_relative_key_embeddings():
    """logit[n, i, j] = q_i . (k_j + a[clip(j - i)]) / sqrt(d) + bias[n, clip(j - i)], written out in numpy."""
    layer = randomize(nnx.eval_shape(lambda: TemporalAttention(8, 4, frames=3, relative_keys=True,
                                                               dtype=jnp.float32, rngs=nnx.Rngs(0))))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 5, 1, 2, 8)), jnp.float32)
    out = np.asarray(layer(x, jnp.ones((1,), bool)))
    y = np.moveaxis(np.asarray(layer.norm(x.reshape(5, 1, 2, 8))).reshape(1, 5, 1, 2, 8), 1, 3)[0, 0]  # (W, F, C)
    kernel, bias = np.asarray(layer.attn.qkv.kernel[...]), np.asarray(layer.attn.qkv.bias[...])
    q, k, v = (np.einsum("wfc,cd->wfd", y, kernel[:, 8 * i:8 * (i + 1)]).__add__(bias[8 * i:8 * (i + 1)])
               .reshape(2, 5, 2, 4) for i in range(3))  # (W, F, heads, d)
    dist = np.clip(np.arange(5)[None, :] - np.arange(5)[:, None], -2, 2) + 2  # [i, j]
    table, scalar = np.asarray(layer.rel_keys[...]), np.asarray(layer.rel_bias[...])
    logits = (np.einsum("wind,wjnd->wnij", q, k) + np.einsum("wind,ijnd->wnij", q, table[dist])) / 2.0
    logits += np.moveaxis(scalar[dist], -1, 0)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    heads = np.einsum("wnij,wjnd->wind", weights, v).reshape(2, 5, 8)
    expected = heads @ np.asarray(layer.attn.out.kernel[...]) + np.asarray(layer.attn.out.bias[...])  # (W, F, C)
    np.testing.assert_allclose(out[0, :, 0], np.asarray(x)[0, :, 0] + np.moveaxis(expected, 1, 0), atol=2e-5)


def test_zero_relative_keys_compute_what_the_network_without_them_computes():
    """So a trained stage can be grown by them and fine-tuned (`ivlib.trainer.initial_weights`)."""
    plain = make(BASE, seed=3)
    grown = nnx.eval_shape(lambda: VideoUNet(dataclasses.replace(BASE, relative_keys=True), rngs=nnx.Rngs(0)))
    state = nnx.state(grown, nnx.Param)
    old = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(nnx.state(plain, nnx.Param))[0]}
    nnx.update(grown, jax.tree_util.tree_map_with_path(
        lambda p, v: old.get(jax.tree_util.keystr(p), jnp.zeros(v.shape, v.dtype)), state))
    z, text, mask, _ = inputs(BASE)
    np.testing.assert_allclose(apply(grown, z, 1.0, text, mask), apply(plain, z, 1.0, text, mask), atol=1e-6)
    randomize(grown, seed=4, where=lambda name: "rel_keys" in name)
    assert max_diff(apply(grown, z, 1.0, text, mask), apply(plain, z, 1.0, text, mask)) > 1e-3


def test_logsnr_features_of_cosine_schedule_are_sinusoids_of_t():
    t = np.array([0.1, 0.5, 0.9])
    logsnr = -2.0 * np.log(np.tan(math.pi * t / 2))
    freqs = np.exp(-math.log(10_000.0) * np.arange(8) / 7)
    expected = np.concatenate([np.sin(1000 * t[:, None] * freqs), np.cos(1000 * t[:, None] * freqs)], -1)
    np.testing.assert_allclose(logsnr_features(jnp.asarray(logsnr), 16), expected, atol=2e-3)


def test_output_shapes_for_base_tsr_ssr_stages(base_model):
    shape = lambda model, *a: nnx.eval_shape(lambda m: m(*a), model)
    z, text, mask, _ = inputs(BASE, frames=6)  # more frames than trained: bias distances clip
    assert shape(base_model, z, 0.0, text, mask).shape == z.shape
    assert shape(base_model, z[:, :1], 0.0).shape == z[:, :1].shape  # one frame, text=None (null prompt)
    bf16 = shape(make(dataclasses.replace(BASE, dtype="bfloat16")), z, 0.0, text, mask)
    assert bf16.shape == z.shape and bf16.dtype == jnp.float32
    z, text, mask, cond = inputs(SR, frames=8)  # a TSR stage fills in frames: 8 from 4, repeated
    assert shape(make(SR), z, 0.0, text, mask, cond, 0.0).shape == z.shape
    ssr = make(dataclasses.replace(SR, fully_convolutional=True, levels=(Level(8, 1), Level(16, 1))))
    z = jnp.zeros((1, 4, 16, 24, 3))  # a fully convolutional SSR stage takes larger frames
    assert shape(ssr, z, 0.0, None, None, z, jnp.zeros(1)).shape == z.shape


def test_null_prompt_ignores_masked_tokens(base_model):
    z, text, _, _ = inputs(BASE)
    empty = jnp.zeros((2, 5), bool)
    out = run(base_model, z, text, empty)
    np.testing.assert_allclose(out, run(base_model, z, 2.0 * text + 1.0, empty), atol=1e-6)
    np.testing.assert_allclose(out, run(base_model, z), atol=1e-5)  # text=None is the null prompt
    assert max_diff(run(base_model, z, text, ~empty), out) > 1e-3  # a real prompt matters
    assert max_diff(run(base_model, z, text, empty, logsnr=(4.0, 4.0)), out) > 1e-3  # so does log-SNR


def test_gradients_reach_every_parameter():
    config = dataclasses.replace(SR, frame_embedding=True, relative_keys=True,
                                 levels=(Level(8, 1, False, "conv"), Level(16, 1, True, "attention")))
    model = make(config)
    z, text, mask, cond = inputs(config)

    @nnx.jit
    def grads(model):
        loss = lambda m: jnp.mean(m(z, jnp.array([0.0, 2.0]), text, mask, cond, jnp.array([1.0, 5.0])) ** 2)
        return nnx.grad(loss)(model)

    flat = jax.tree_util.tree_flatten_with_path(grads(model))[0]
    dead = [jax.tree_util.keystr(p) for p, g in flat if not np.abs(np.asarray(g)).max() > 0]
    assert len(flat) == len(jax.tree.leaves(nnx.state(model, nnx.Param))) and not dead, dead


@pytest.mark.parametrize("remat", ["block", "dots"])
def test_rematerialised_blocks_give_the_same_outputs_and_gradients(remat):
    """Remat changes what the backward pass stores, never what it computes (chapter 10)."""
    config = dataclasses.replace(BASE, frame_embedding=True)
    plain, again = make(config), make(dataclasses.replace(config, remat=remat))
    z, text, mask, _ = inputs(config)

    @nnx.jit
    def value_and_grads(model):
        loss = lambda m: jnp.mean(m(z, jnp.array([0.0, 2.0]), text, mask, is_image=MIXED) ** 2)
        return nnx.value_and_grad(loss)(model)

    (v1, g1), (v2, g2) = value_and_grads(plain), value_and_grads(again)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fresh_model_starts_at_zero_and_count_params_matches():
    config = UNetConfig(frames=2, height=4, width=4, levels=(Level(8, 1, temporal="none"),), frame_embedding=False)
    model = VideoUNet(config, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))  # the library's initialisers
    assert count_params(config) == sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    z = inputs(config)[0]
    np.testing.assert_array_equal(run(model, z, is_image=VIDEOS), 0.0)  # zero-initialised output conv
    no_frames = dataclasses.replace(BASE, frame_embedding=False)
    assert count_params(BASE) - count_params(no_frames) == BASE.frames * 4 * BASE.levels[0].channels


@pytest.mark.parametrize("change, message", [
    ({"height": 9}, "divisible by 2"),
    ({"levels": (Level(8, 1), Level(12, 1, True))}, "head_dim"),
    ({"levels": (Level(8, 1, temporal="lstm"),)}, "temporal"),
    ({"fully_convolutional": True}, "spatial attention"),
    ({"levels": ()}, "levels"),
    ({"remat": "all"}, "remat must be one of"),
])
def test_bad_configs_raise(change, message):
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(lambda: VideoUNet(dataclasses.replace(BASE, **change), rngs=nnx.Rngs(0)))


def test_bad_inputs_raise(base_model):
    sr = make(SR)
    z, text, mask, cond = inputs(SR)
    with pytest.raises(ValueError, match="cond must be"):
        sr(z, 0.0, text, mask, cond[:, :, :4], 0.0)
    with pytest.raises(ValueError, match="cond must be"):
        sr(z, 0.0, text, mask)
    with pytest.raises(ValueError, match="cond_logsnr"):
        sr(z, 0.0, text, mask, cond)
    with pytest.raises(ValueError, match="cond_logsnr"):
        sr(z, 0.0, text, mask, cond, jnp.zeros(3))
    with pytest.raises(ValueError, match="logsnr must be"):
        sr(z, jnp.zeros((2, 1)), text, mask, cond, 0.0)
    with pytest.raises(ValueError, match="z must be 8x8"):
        base_model(jnp.zeros((1, 4, 16, 16, 3)), 0.0)
    with pytest.raises(ValueError, match="text must be"):
        base_model(z, 0.0, text[..., :4])
    with pytest.raises(ValueError, match="is_image"):
        base_model(z, 0.0, is_image=jnp.zeros(3, bool))
    with pytest.raises(ValueError, match="cond_channels=0"):
        base_model(z, 0.0, cond=cond, cond_logsnr=0.0)


def test_guidance_embedding_conditions_the_network_on_w():
    """Chapter 09's student is told w: its output depends on w per sample, and gradients reach the embedding."""
    config = dataclasses.replace(BASE, guidance_embedding=True)
    model = make(config)
    z, text, mask, _ = inputs(config)
    call = nnx.jit(lambda m, w: m(z, jnp.array([1.0, -2.0]), text, mask, guidance=w))
    zero, mixed, scalar = call(model, jnp.zeros(2)), call(model, jnp.array([0.0, 4.0])), call(model, 0.0)
    np.testing.assert_allclose(scalar, zero, atol=1e-6)
    np.testing.assert_allclose(model(z, jnp.array([1.0, -2.0]), text, mask), zero, atol=1e-5)  # None means w = 0
    assert max_diff(mixed[0], zero[0]) < 1e-5 and max_diff(mixed[1], zero[1]) > 1e-3  # per sample
    grads = nnx.grad(lambda m: jnp.mean(call(m, jnp.array([1.0, 4.0])) ** 2))(model)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(nnx.state(grads.guidance_emb)))
    features = 2 * (max(16, 8) // 2)
    assert count_params(config) - count_params(BASE) == features * 32 + 32 + 32 * 32 + 32  # two dense layers
    with pytest.raises(ValueError, match="guidance_embedding=False"):
        make(BASE)(z, 0.0, text, mask, guidance=1.0)
    with pytest.raises(ValueError, match="guidance must be"):
        model(z, 0.0, text, mask, guidance=jnp.zeros(3))
