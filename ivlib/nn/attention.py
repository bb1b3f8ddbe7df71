"""Attention layers of the Video U-Net (chapter 03): spatial self-attention, text cross-attention,
temporal self-attention with a relative position bias over frames (and, optionally, relative key
embeddings, Shaw et al. 2018, so that what a query contains decides which frame offsets it looks at).

One multi-head attention core (`Attention`) serves all three; the three layers differ only in which
axis of the `(B, F, H, W, C)` video becomes the sequence, and in their bias and mask.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ivlib.nn.layers import group_norm, zeros_init


def attend(q, k, v, bias=None, mask=None, rel_keys=None):
    """Scaled dot-product attention with a float32 softmax (chapter 03).

    q: `(..., S, heads, d)`; k, v: `(..., L, heads, d)`; bias: broadcastable to `(..., heads, S, L)`;
    mask: bool, broadcastable to `(..., heads, S, L)`, True where a key may be attended. Every query
    must have at least one attendable key. rel_keys: `(S, L, heads, d)`, a vector added to key j for
    query i (Shaw et al. 2018): logit[i, j] = q_i . (k_j + rel_keys[i, j]) / sqrt(d).
    Returns `(..., S, heads, d)` in v's dtype.
    """
    logits = jnp.einsum("...snd,...lnd->...nsl", q, k, preferred_element_type=jnp.float32)
    if rel_keys is not None:
        logits = logits + jnp.einsum("...snd,slnd->...nsl", q, rel_keys.astype(q.dtype),
                                     preferred_element_type=jnp.float32)
    logits = logits / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("...nsl,...lnd->...snd", weights, v)


class Attention(nnx.Module):
    """Multi-head attention projections around `attend` (chapter 03).

    x: `(..., S, channels)`; context: `(..., L, context_dim)` or None for self-attention.
    Heads = channels // head_dim. With `null_kv` a learned key/value pair is prepended that every
    query may always attend to, so a query whose context is fully masked (the classifier-free
    guidance "null" prompt, chapter 08) still has a well-defined output. The output projection is
    zero-initialised, so a residual attention layer starts as the identity.
    """

    def __init__(self, channels: int, head_dim: int, context_dim: int | None = None, null_kv: bool = False,
                 *, dtype, rngs: nnx.Rngs):
        if channels % head_dim:
            raise ValueError(f"attention needs channels divisible by head_dim; got channels={channels}, "
                             f"head_dim={head_dim}")
        self.heads, self.head_dim = channels // head_dim, head_dim
        if context_dim is None:
            self.qkv = nnx.Linear(channels, 3 * channels, dtype=dtype, rngs=rngs)
        else:
            self.q = nnx.Linear(channels, channels, dtype=dtype, rngs=rngs)
            self.kv = nnx.Linear(context_dim, 2 * channels, dtype=dtype, rngs=rngs)
        self.null_kv = nnx.Param(jax.random.normal(rngs.params(), (2, self.heads, head_dim))) if null_kv else None
        self.out = nnx.Linear(channels, channels, dtype=dtype, kernel_init=zeros_init, rngs=rngs)

    @staticmethod
    def _project(linear: nnx.Linear, x, parts: int):
        """`linear(x)` split in `parts` equal chunks of features, as one matmul per chunk: each comes
        out contiguous, where slicing one fused output would need strided copies (slow on CPU)."""
        dtype = linear.dtype or x.dtype
        kernel, bias, x = linear.kernel[...].astype(dtype), linear.bias[...].astype(dtype), x.astype(dtype)
        width = kernel.shape[1] // parts
        return [x @ kernel[:, i * width:(i + 1) * width] + bias[i * width:(i + 1) * width] for i in range(parts)]

    def __call__(self, x, context=None, bias=None, mask=None, rel_keys=None):
        heads = lambda a: a.reshape(*a.shape[:-1], self.heads, self.head_dim)
        if context is None:
            q, k, v = map(heads, self._project(self.qkv, x, 3))
        else:
            q = heads(self.q(x))
            k, v = map(heads, self._project(self.kv, context, 2))
        if self.null_kv is not None:
            null = self.null_kv[...].astype(k.dtype)
            k, v = (jnp.concatenate([jnp.broadcast_to(n, (*a.shape[:-3], 1, *a.shape[-2:])), a], axis=-3)
                    for n, a in ((null[0], k), (null[1], v)))
            if mask is not None:
                mask = jnp.concatenate([jnp.ones((*mask.shape[:-1], 1), bool), mask], axis=-1)
        if rel_keys is not None and self.null_kv is not None:
            raise ValueError("rel_keys is for self-attention; it cannot be combined with null_kv")
        h = attend(q, k, v, bias, mask, rel_keys)
        return self.out(h.reshape(*h.shape[:-2], -1))


class SpatialAttention(nnx.Module):
    """Self-attention over the H*W pixels of each frame, weights shared by frames (chapter 03; Fig. 7).

    x: `(B, F, H, W, C)` -> same shape (residual).
    """

    def __init__(self, channels: int, head_dim: int, *, dtype, rngs: nnx.Rngs):
        self.norm = group_norm(channels, dtype, rngs)
        self.attn = Attention(channels, head_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        b, f, h, w, c = x.shape
        return x + self.attn(self.norm(x.reshape(b * f, h, w, c)).reshape(b * f, h * w, c)).reshape(x.shape)


class CrossAttention(nnx.Module):
    """Cross-attention from every pixel of every frame to the text tokens (chapter 04; Imagen).

    x: `(B, F, H, W, C)`; text: `(B, L, text_dim)` (already layer-normalised by the U-Net);
    text_mask: `(B, L)` bool. Keys and values are computed once per sample and shared by its frames;
    a learned null key/value keeps an all-False mask (the null prompt) safe. Returns x's shape.
    """

    def __init__(self, channels: int, text_dim: int, head_dim: int, *, dtype, rngs: nnx.Rngs):
        self.norm = group_norm(channels, dtype, rngs)
        self.attn = Attention(channels, head_dim, context_dim=text_dim, null_kv=True, dtype=dtype, rngs=rngs)

    def __call__(self, x, text, text_mask):
        b, f, h, w, c = x.shape
        q = self.norm(x.reshape(b * f, h, w, c)).reshape(b, f * h * w, c)
        return x + self.attn(q, context=text, mask=text_mask[:, None, None, :]).reshape(x.shape)


class TemporalAttention(nnx.Module):
    """Self-attention over frames at every pixel, with a relative position bias (chapter 03; Fig. 7).

    x: `(B, F, H, W, C)`; video: `(B,)` bool, False for image-flagged samples, whose attention is
    masked to each frame itself (chapter 07; paper section 2.6). The bias is a learned scalar per
    head and frame distance j - i, with distances clipped to +-(frames - 1): a model trained on
    `frames` frames accepts any other number of frames, including 1.

    The scalar bias is the same for every query: it can say "look one frame back", never "look one frame
    back if this pixel's features (the prompt, through cross-attention) say the digit moves left".
    `relative_keys` adds Shaw et al.'s (2018) relative key embeddings, one learned vector per head and
    distance, added to the keys, so the query's content picks the distances it attends to (chapter 04,
    "Which way?"). Video Diffusion Models (Ho et al. 2022b), whose architecture Imagen Video extends,
    cite Shaw et al. for their temporal attention. The table starts at zero: a model with it computes
    what the same model without it computes, so a trained stage can be fine-tuned into it.
    """

    def __init__(self, channels: int, head_dim: int, frames: int, relative_keys: bool = False, *, dtype,
                 rngs: nnx.Rngs):
        self.max_distance = max(frames - 1, 0)
        self.norm = group_norm(channels, dtype, rngs)
        self.attn = Attention(channels, head_dim, dtype=dtype, rngs=rngs)
        self.rel_bias = nnx.Param(jnp.zeros((2 * self.max_distance + 1, self.attn.heads)))
        self.rel_keys = (nnx.Param(jnp.zeros((2 * self.max_distance + 1, self.attn.heads, head_dim)))
                         if relative_keys else None)

    def _distances(self, frames: int) -> jax.Array:
        """Index into the relative tables, `(frames, frames)`: clip(j - i) + max_distance."""
        pos = jnp.arange(frames)
        return jnp.clip(pos[None, :] - pos[:, None], -self.max_distance, self.max_distance) + self.max_distance

    def bias(self, frames: int) -> jax.Array:
        """Relative position bias `(heads, frames, frames)`: entry [n, i, j] = table[clip(j - i), n]."""
        return jnp.moveaxis(self.rel_bias[...][self._distances(frames)], -1, 0)

    def keys(self, frames: int) -> jax.Array | None:
        """Relative key embeddings `(frames, frames, heads, head_dim)` for `attend`, or None."""
        return None if self.rel_keys is None else self.rel_keys[...][self._distances(frames)]

    def __call__(self, x, video):
        b, f, h, w, c = x.shape
        y = jnp.moveaxis(self.norm(x.reshape(b * f, h, w, c)).reshape(x.shape), 1, 3)  # (B, H, W, F, C)
        mask = video[:, None, None] | jnp.eye(f, dtype=bool)[None]  # (B, F, F)
        y = self.attn(y, bias=self.bias(f), mask=mask[:, None, None, None], rel_keys=self.keys(f))
        return x + jnp.moveaxis(y, 3, 1)
