"""A toy-domain video-text dual encoder: the CLIP stand-in of ivlib's metrics (chapters 04-09).

The paper scores samples with OpenAI's CLIP (image-text, applied frame by frame) and FVD with an
I3D video network. Neither knows our 16x16 toy videos, so ivlib trains its own small contrastive
dual encoder on ground-truth toy data (`ivlib.metrics.train_evaluator`); it is *not* CLIP or I3D,
and its numbers are comparable only with numbers from the same shipped weights.

* Video tower: a small 2-D CNN on every frame (`(B*F, 16, 16, 3)`, shared weights) whose 4x4 feature
  map is flattened, so position survives; then one pre-norm transformer block over the frames with
  learned frame position embeddings, so each frame's embedding knows the motion of the clip;
  then a projection to `embed_dim`. Output: per-frame features `(B, F, D)`.
* Text tower: the frozen toy T5's token embeddings `(B, L, 64)` -> one self-attention block
  (masked) -> attention pooling with a learned query -> MLP -> `(B, D)`.
* A learned temperature (logit scale, clipped at 100 as in CLIP).

All sizes are our choice: the smallest network that reads colour, identity, size, position and
motion at 8x16x16 and still ships in well under 1 MB as float16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ivlib.nn.attention import Attention


@dataclass(frozen=True)
class DualEncoderConfig:
    """Sizes of the toy dual encoder (our choice; input fixed at the toy base model's 8x16x16)."""

    frames: int = 8
    height: int = 16
    width: int = 16
    conv_channels: tuple = (32, 64, 64)  # the last two convolutions halve the resolution
    video_width: int = 128
    text_dim: int = 64  # width of the frozen toy T5 embeddings
    embed_dim: int = 64
    head_dim: int = 32
    max_logit_scale: float = 100.0


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x); `(..., S, C)` -> same (chapter 03)."""

    def __init__(self, width: int, head_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = Attention(width, head_dim, null_kv=True, dtype=jnp.float32, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.fc1 = nnx.Linear(width, 2 * width, rngs=rngs)
        self.fc2 = nnx.Linear(2 * width, width, rngs=rngs)

    def __call__(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.fc2(jax.nn.gelu(self.fc1(self.norm2(x))))


class VideoTower(nnx.Module):
    """Per-frame CNN + temporal transformer block: video `(B, F, H, W, 3)` -> features `(B, F, D)`."""

    def __init__(self, cfg: DualEncoderConfig, *, rngs: nnx.Rngs):
        c0, c1, c2 = cfg.conv_channels
        self.conv0 = nnx.Conv(3, c0, (3, 3), rngs=rngs)
        self.conv1 = nnx.Conv(c0, c1, (3, 3), strides=(2, 2), rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), strides=(2, 2), rngs=rngs)
        self.flat = nnx.Linear(c2 * (cfg.height // 4) * (cfg.width // 4), cfg.video_width, rngs=rngs)
        self.frame_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.frames, cfg.video_width)))
        self.block = Block(cfg.video_width, cfg.head_dim, rngs=rngs)
        self.norm = nnx.LayerNorm(cfg.video_width, rngs=rngs)
        self.proj = nnx.Linear(cfg.video_width, cfg.embed_dim, rngs=rngs)

    def __call__(self, video):
        b, f, h, w, c = video.shape
        x = video.reshape(b * f, h, w, c)
        x = jax.nn.silu(self.conv2(jax.nn.silu(self.conv1(jax.nn.silu(self.conv0(x))))))
        x = self.flat(x.reshape(b, f, -1)) + self.frame_pos[...]
        return self.proj(self.norm(self.block(x)))


class TextTower(nnx.Module):
    """Frozen-T5 tokens `(B, L, text_dim)` + mask `(B, L)` -> one vector per prompt `(B, D)`."""

    def __init__(self, cfg: DualEncoderConfig, *, rngs: nnx.Rngs):
        width = cfg.text_dim
        self.block = Block(width, cfg.head_dim // 2, rngs=rngs)
        self.query = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, width)))
        self.pool_norm = nnx.LayerNorm(width, rngs=rngs)
        self.pool = Attention(width, cfg.head_dim // 2, context_dim=width, null_kv=True, dtype=jnp.float32,
                              rngs=rngs)
        self.fc1 = nnx.Linear(width, 2 * width, rngs=rngs)
        self.fc2 = nnx.Linear(2 * width, cfg.embed_dim, rngs=rngs)

    def __call__(self, text, text_mask):
        key_mask = text_mask[:, None, None, :]  # (B, heads, queries, keys), broadcast
        x = self.block(text, mask=key_mask)
        query = jnp.broadcast_to(self.query[...], (text.shape[0], 1, text.shape[-1]))
        pooled = self.pool(query, context=self.pool_norm(x), mask=key_mask)[:, 0]
        return self.fc2(jax.nn.gelu(self.fc1(pooled)))


def l2_normalize(x, eps=1e-6):
    """x / ||x|| along the last axis (chapter 04)."""
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class DualEncoder(nnx.Module):
    """The toy video-text dual encoder (chapters 04-09): two towers and a learned temperature."""

    def __init__(self, cfg: DualEncoderConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.video = VideoTower(cfg, rngs=rngs)
        self.text = TextTower(cfg, rngs=rngs)
        # CLIP starts at 1/0.07; 10 trained faster here. Shape (1,), not (): ivlib.weights stores 0-d arrays as (1,).
        self.log_scale = nnx.Param(jnp.full((1,), math.log(10.0)))

    def logit_scale(self):
        """exp(log_scale), at most max_logit_scale: a scalar."""
        return jnp.exp(jnp.minimum(self.log_scale[0], math.log(self.config.max_logit_scale)))


def contrastive_loss(model: DualEncoder, video, text, text_mask, same):
    """Symmetric InfoNCE over the batch (chapter 04; CLIP, Radford et al. 2021).

    video: (B, F, H, W, 3); text: (B, L, text_dim), text_mask: (B, L); same: (B, B) bool, True where
    two captions mean the same thing. Video -> text is scored per frame (each frame must pick its
    caption, as R-precision does); text -> video on the frame-averaged cosine (the CLIP-score
    matrix). Off-diagonal pairs of identical meaning are false negatives and are masked out.
    Returns (loss, in-batch video->text top-1 accuracy).
    """
    frames = l2_normalize(model.video(video))  # (B, F, D)
    prompts = l2_normalize(model.text(text, text_mask))  # (B, D)
    cos = jnp.einsum("bfd,nd->bfn", frames, prompts)
    b = cos.shape[0]
    keep = ~same | jnp.eye(b, dtype=bool)
    logits = jnp.where(keep[:, None, :], model.logit_scale() * cos, -1e9)
    labels = jnp.broadcast_to(jnp.arange(b)[:, None], logits.shape[:2])
    v2t = jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[..., None], -1))
    mean_logits = jnp.where(keep.T, model.logit_scale() * jnp.mean(cos, axis=1).T, -1e9)  # (texts, videos)
    t2v = jnp.mean(-jnp.diagonal(jax.nn.log_softmax(mean_logits, -1)))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return 0.5 * (v2t + t2v), accuracy
