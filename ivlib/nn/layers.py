"""Building blocks of the Video U-Net (chapter 03): norms, embeddings, the residual block, resampling.

Every block takes videos as channels-last arrays. *Spatial* blocks see `(N, H, W, C)` with
`N = batch * frames`, so each frame is processed on its own with shared weights (the "space"
half of the paper's space-time separable block, Fig. 7); *temporal* blocks see the full
`(B, F, H, W, C)` video and mix frames at every pixel (the "time" half).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

zeros_init = nnx.initializers.zeros_init()


def num_groups(channels: int, max_groups: int = 32) -> int:
    """Number of GroupNorm groups for `channels` features (chapter 03).

    Imagen and DDPM use 32 groups; when 32 does not divide the channels (small toy models) we take
    the largest divisor of `channels` that is at most 32 (our choice).
    """
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def group_norm(channels: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm over (H, W, channel-group) of each leading index, statistics in float32 (chapter 03).

    Applied to `(N, H, W, C)` with `N = batch * frames` it normalises every frame on its own, which
    keeps frames of an image-flagged sample independent (chapter 07).
    """
    return nnx.GroupNorm(channels, num_groups=num_groups(channels), dtype=dtype, rngs=rngs)


def logsnr_features(logsnr: jax.Array, dim: int) -> jax.Array:
    """Fourier features of the log-SNR (chapter 03): `(B,) -> (B, dim)`.

    Our choice: the log-SNR is first mapped to `t' = (2/pi) * arctan(exp(-logsnr / 2))` in (0, 1),
    which is exactly the time `t` of the unclipped cosine schedule (lambda = -2 log tan(pi t / 2)),
    so the features are the familiar DDPM sinusoids of `1000 t'` and stay bounded for any log-SNR.
    """
    t = jnp.arctan(jnp.exp(-0.5 * logsnr.astype(jnp.float32))) * (2.0 / math.pi)
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    angles = 1000.0 * t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class LogSNREmbedding(nnx.Module):
    """log-SNR -> Fourier features -> MLP (chapter 03): `(B,) -> (B, emb_dim)`.

    Used for the diffusion log-SNR of z_t and, in super-resolution stages, for the log-SNR of the
    conditioning augmentation (chapter 06).
    """

    def __init__(self, features: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.features = features
        self.dense1 = nnx.Linear(features, emb_dim, rngs=rngs)
        self.dense2 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)

    def __call__(self, logsnr: jax.Array) -> jax.Array:
        return self.dense2(jax.nn.silu(self.dense1(logsnr_features(logsnr, self.features))))


def guidance_features(w: jax.Array, dim: int) -> jax.Array:
    """Fourier features of the guidance weight w ≥ 0 (chapter 09): `(B,) -> (B, dim)`.

    A guided-distilled student is told which w to imitate (Meng et al. 2022); like the log-SNR, w enters as
    sinusoids, here of `100 w`, so that weights 0.1 apart differ in the fastest features and 0 to ~20 spans the
    slowest ones without wrapping.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    angles = 100.0 * w.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class GuidanceEmbedding(nnx.Module):
    """Guidance weight -> Fourier features -> MLP (chapter 09): `(B,) -> (B, emb_dim)`, added to the FiLM embedding."""

    def __init__(self, features: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.features = features
        self.dense1 = nnx.Linear(features, emb_dim, rngs=rngs)
        self.dense2 = nnx.Linear(emb_dim, emb_dim, kernel_init=zeros_init, rngs=rngs)  # a new student starts as its teacher

    def __call__(self, w: jax.Array) -> jax.Array:
        return self.dense2(jax.nn.silu(self.dense1(guidance_features(w, self.features))))


class ResBlock(nnx.Module):
    """Spatial residual block with FiLM conditioning (chapter 03; Imagen / VDM style).

    x: `(N, H, W, in_ch)`, emb: `(N, emb_dim)` -> `(N, H, W, out_ch)`, N = batch * frames.
    GroupNorm -> SiLU -> 3x3 conv -> GroupNorm -> (1 + scale) * h + shift -> SiLU -> dropout ->
    3x3 conv (zero-initialised, so the block starts as the identity on its skip path).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, *, dropout: float, dtype, rngs: nnx.Rngs):
        self.norm1 = group_norm(in_ch, dtype, rngs)
        self.conv1 = nnx.Conv(in_ch, out_ch, (3, 3), dtype=dtype, rngs=rngs)
        self.film = nnx.Linear(emb_dim, 2 * out_ch, dtype=dtype, rngs=rngs)
        self.norm2 = group_norm(out_ch, dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None  # no RNG state when unused
        self.conv2 = nnx.Conv(out_ch, out_ch, (3, 3), dtype=dtype, kernel_init=zeros_init, rngs=rngs)
        self.skip = nnx.Conv(in_ch, out_ch, (1, 1), dtype=dtype, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        scale, shift = jnp.split(self.film(jax.nn.silu(emb))[:, None, None, :], 2, axis=-1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = jax.nn.silu(h)
        h = self.conv2(h if self.dropout is None else self.dropout(h))
        return (x if self.skip is None else self.skip(x)) + h


class TemporalConv(nnx.Module):
    """Temporal convolution residual block, kernel 3 over frames (chapter 03; paper Fig. 7).

    x: `(B, F, H, W, C)`, video: `(B,)` float, 1 for videos and 0 for image-flagged samples.
    GroupNorm (per frame) -> SiLU -> conv over frames with zero padding -> zero-initialised.
    The conv is written as one matmul on the frames shifted by -1, 0, +1 and stacked along channels
    (no 3-D convolution: those are slow on XLA:CPU). For image samples the residual is multiplied by
    0, i.e. the path is bypassed exactly, as the paper's joint training does (section 2.6).
    Works for any number of frames, including 1.
    """

    def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
        self.norm = group_norm(channels, dtype, rngs)
        self.proj = nnx.Linear(3 * channels, channels, dtype=dtype, kernel_init=zeros_init, rngs=rngs)

    def __call__(self, x: jax.Array, video: jax.Array) -> jax.Array:
        b, f, hh, ww, c = x.shape
        h = jax.nn.silu(self.norm(x.reshape(b * f, hh, ww, c))).reshape(x.shape)
        h = jnp.pad(h, ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0)))
        h = jnp.concatenate([h[:, :-2], h[:, 1:-1], h[:, 2:]], axis=-1)  # frames f-1, f, f+1
        return x + video.astype(x.dtype)[:, None, None, None, None] * self.proj(h)


class Downsample(nnx.Module):
    """Halve H and W with a stride-2 3x3 conv (chapter 03): `(N, H, W, in_ch) -> (N, H/2, W/2, out_ch)`."""

    def __init__(self, in_ch: int, out_ch: int, *, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_ch, out_ch, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample(nnx.Module):
    """Double H and W by nearest neighbour, then a 3x3 conv (chapter 03): `(N, H, W, in_ch) -> (N, 2H, 2W, out_ch)`."""

    def __init__(self, in_ch: int, out_ch: int, *, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_ch, out_ch, (3, 3), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)
        return self.conv(x)
