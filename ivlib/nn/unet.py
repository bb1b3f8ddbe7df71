"""The space-time separable Video U-Net of Imagen Video (chapter 03; Ho et al. 2022, Fig. 7).

A stage of the cascade is a `UNetConfig` (configuration is data): one `Level` per resolution, each
with its channels, residual blocks, spatial attention on/off and temporal mixing (attention, conv or
none). Every block of the network is a `SpaceTimeBlock`: spatial residual conv -> spatial
self-attention (optional) -> text cross-attention (optional) -> temporal attention or temporal conv.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ivlib.compat import ModuleList
from ivlib.nn.attention import CrossAttention, SpatialAttention, TemporalAttention
from ivlib.nn.layers import Downsample, GuidanceEmbedding, LogSNREmbedding, ResBlock, TemporalConv, Upsample, group_norm, zeros_init
from ivlib.nn.layout import FRAMES, ROWS, constrain

TEMPORAL = ("attention", "conv", "none")
TARGETS = ("v", "eps", "x")
# Rematerialisation (chapter 10): what the backward pass keeps of each space-time block's forward pass.
# "none": everything (no remat); "block": only the block's inputs, its inside recomputed; "dots": also the
# results of its matrix multiplications without batch dimensions (jax.checkpoint_policies).
REMAT = ("none", "block", "dots")


@dataclass(frozen=True)
class Level:
    """One resolution level of the U-Net (chapter 03).

    cross_attention: text cross-attention in this level's blocks; None follows `spatial_attention`
    (Imagen puts text cross-attention where it has self-attention: our reading of Saharia et al. 2022).
    """

    channels: int
    num_res_blocks: int = 2
    spatial_attention: bool = False
    temporal: str = "conv"  # "attention" | "conv" | "none"
    cross_attention: bool | None = None

    @property
    def uses_cross_attention(self) -> bool:
        return self.spatial_attention if self.cross_attention is None else self.cross_attention


@dataclass(frozen=True)
class UNetConfig:
    """One stage's Video U-Net (chapter 03). Level i works at resolution (H / 2^i, W / 2^i).

    fully_convolutional: the model accepts any H, W divisible by 2^(levels-1) at call time (the
    paper's last SSR stage, trained on crops); it then may not use spatial attention.
    target: what the network predicts ("v" in the paper, section 2.4); the network itself does not
    depend on it, the trainer and samplers read it.
    guidance_embedding: the network takes the guidance weight w as an input, embedded and added to the FiLM
    embedding (Meng et al. 2022): the student of guided distillation (chapter 09). Off by default.
    """

    frames: int
    height: int
    width: int
    levels: tuple[Level, ...]
    channels: int = 3
    cond_channels: int = 0
    text_dim: int = 0
    emb_dim: int | None = None
    head_dim: int = 32
    frame_embedding: bool = True
    dropout: float = 0.0
    dtype: str = "float32"
    fully_convolutional: bool = False
    target: str = "v"
    guidance_embedding: bool = False
    remat: str = "none"  # REMAT: trade compute for the memory of activations in training (chapter 10)
    relative_keys: bool = False  # temporal attention with Shaw et al.'s relative keys (chapter 04, "Which way?")

    def validate(self) -> None:
        """Raise ValueError naming the field when this configuration cannot work."""
        if not self.levels:
            raise ValueError("levels must hold at least one Level")
        if self.frames < 1 or self.channels < 1 or self.cond_channels < 0 or self.text_dim < 0:
            raise ValueError(f"need frames >= 1, channels >= 1, cond_channels >= 0, text_dim >= 0; got {self}")
        factor = 2 ** (len(self.levels) - 1)
        if self.height % factor or self.width % factor:
            raise ValueError(f"height and width must be divisible by 2^(levels-1) = {factor}; "
                             f"got height={self.height}, width={self.width} with {len(self.levels)} levels")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {self.target!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'float16'; got {self.dtype!r}")
        if self.remat not in REMAT:
            raise ValueError(f"remat must be one of {REMAT}; got {self.remat!r}")
        for i, level in enumerate(self.levels):
            if level.temporal not in TEMPORAL:
                raise ValueError(f"levels[{i}].temporal must be one of {TEMPORAL}; got {level.temporal!r}")
            if level.channels < 1 or level.num_res_blocks < 1:
                raise ValueError(f"levels[{i}] needs channels >= 1 and num_res_blocks >= 1; got {level}")
            attention = (level.spatial_attention or level.temporal == "attention"
                         or (level.uses_cross_attention and self.text_dim > 0))
            if attention and level.channels % self.head_dim:
                raise ValueError(f"levels[{i}].channels={level.channels} is not divisible by head_dim="
                                 f"{self.head_dim}: attention heads = channels // head_dim must divide")
            if self.fully_convolutional and level.spatial_attention:
                raise ValueError(f"a fully_convolutional model cannot have spatial attention (levels[{i}])")


class SpaceTimeBlock(nnx.Module):
    """The paper's space-time separable block (chapter 03; Fig. 7).

    x: `(B, F, H, W, in_ch)`; emb: `(B * F, emb_dim)`; text: `(B, L, text_dim)` or None; text_mask:
    `(B, L)`; video: `(B,)` bool (False = image-flagged sample). Returns `(B, F, H, W, out_ch)`.
    Spatial layers act on each frame with shared weights; the temporal layer mixes frames per pixel.
    """

    def __init__(self, in_ch: int, out_ch: int, level: Level, config: UNetConfig, emb_dim: int, *, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.dtype)
        self.res = ResBlock(in_ch, out_ch, emb_dim, dropout=config.dropout, dtype=dtype, rngs=rngs)
        self.spatial_attn = (SpatialAttention(out_ch, config.head_dim, dtype=dtype, rngs=rngs)
                             if level.spatial_attention else None)
        self.cross_attn = (CrossAttention(out_ch, config.text_dim, config.head_dim, dtype=dtype, rngs=rngs)
                           if level.uses_cross_attention and config.text_dim else None)
        if level.temporal == "attention":
            self.temporal = TemporalAttention(out_ch, config.head_dim, config.frames, config.relative_keys,
                                              dtype=dtype, rngs=rngs)
        elif level.temporal == "conv":
            self.temporal = TemporalConv(out_ch, dtype=dtype, rngs=rngs)
        else:
            self.temporal = None

    def __call__(self, x, emb, text, text_mask, video):
        b, f, h, w, _ = x.shape
        x = constrain(x, FRAMES)  # frames over devices for the per-frame layers (`ivlib.nn.layout`; chapter 10)
        x = self.res(x.reshape(b * f, h, w, -1), emb)
        x = x.reshape(b, f, h, w, -1)
        if self.spatial_attn is not None:
            x = self.spatial_attn(x)
        if self.cross_attn is not None:
            x = self.cross_attn(x, text, text_mask)
        if self.temporal is not None:
            x = self.temporal(constrain(x, ROWS), video)  # rows over devices for the per-pixel layer
        return x


def _frames_map(fn, x):
    """Apply a per-frame layer `(N, H, W, C) -> (N, H', W', C')` to a video `(B, F, H, W, C)`."""
    b, f = x.shape[:2]
    y = fn(x.reshape(b * f, *x.shape[2:]))
    return y.reshape(b, f, *y.shape[1:])


class VideoUNet(nnx.Module):
    """Imagen Video's Video U-Net (chapter 03): predicts the stage's target (v by default) from z_t.

    Down path: per level `num_res_blocks` SpaceTimeBlocks (each output kept as a skip), then a
    stride-2 conv to the next level's channels. Middle: two blocks with the last level's settings.
    Up path: per level `num_res_blocks` blocks, each on [h, skip] concatenated along channels, then
    a nearest-neighbour x2 upsample + conv to the previous level's channels.
    Conditioning: log-SNR embedding (+ pooled text embedding, + augmentation log-SNR embedding for
    super-resolution stages, chapter 06) -> FiLM in every residual block; text tokens through
    cross-attention; the conditioning video concatenated to z_t along channels (SR3 / paper 2.2).
    """

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        config.validate()
        self.config = config
        dtype = jnp.dtype(config.dtype)
        levels = config.levels
        ch0 = levels[0].channels
        emb_dim = config.emb_dim or 4 * ch0
        features = max(16, ch0 + ch0 % 2)
        self.logsnr_emb = LogSNREmbedding(features, emb_dim, rngs=rngs)
        self.cond_logsnr_emb = LogSNREmbedding(features, emb_dim, rngs=rngs) if config.cond_channels else None
        self.guidance_emb = GuidanceEmbedding(features, emb_dim, rngs=rngs) if config.guidance_embedding else None
        if config.text_dim:
            self.text_norm = nnx.LayerNorm(config.text_dim, rngs=rngs)
            self.text_pool = nnx.Linear(config.text_dim, emb_dim, rngs=rngs)
        else:
            self.text_norm = self.text_pool = None
        self.frame_emb = (nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.frames, emb_dim)))
                          if config.frame_embedding else None)

        self.conv_in = nnx.Conv(config.channels + config.cond_channels, ch0, (3, 3), dtype=dtype, rngs=rngs)
        block = lambda cin, cout, level: SpaceTimeBlock(cin, cout, level, config, emb_dim, rngs=rngs)
        down, up, downsample, upsample = [], [], [], []
        for i, level in enumerate(levels):
            down.append(ModuleList([block(level.channels, level.channels, level) for _ in range(level.num_res_blocks)]))
            up.append(ModuleList([block(2 * level.channels, level.channels, level)
                                  for _ in range(level.num_res_blocks)]))
            if i + 1 < len(levels):
                downsample.append(Downsample(level.channels, levels[i + 1].channels, dtype=dtype, rngs=rngs))
                upsample.append(Upsample(levels[i + 1].channels, level.channels, dtype=dtype, rngs=rngs))
        self.down, self.up = ModuleList(down), ModuleList(up)
        self.downsample, self.upsample = ModuleList(downsample), ModuleList(upsample)
        last = levels[-1]
        self.middle = ModuleList([block(last.channels, last.channels, last) for _ in range(2)])
        self.norm_out = group_norm(ch0, dtype, rngs)
        self.conv_out = nnx.Conv(ch0, config.channels, (3, 3), dtype=dtype, kernel_init=zeros_init, rngs=rngs)

    # ---------------------------------------------------------------- inputs
    def _check_inputs(self, z, logsnr, text, text_mask, cond, cond_logsnr, is_image, guidance):
        c = self.config
        if z.ndim != 5 or z.shape[-1] != c.channels:
            raise ValueError(f"z must be (batch, frames, height, width, {c.channels}); got shape {z.shape}")
        b, _, h, w, _ = z.shape
        factor = 2 ** (len(c.levels) - 1)
        if c.fully_convolutional:
            if h % factor or w % factor:
                raise ValueError(f"z's height and width must be divisible by {factor}; got {h}x{w}")
        elif (h, w) != (c.height, c.width):
            raise ValueError(f"z must be {c.height}x{c.width} (height x width) for this stage; got {h}x{w}")
        if jnp.shape(logsnr) not in ((), (b,)):
            raise ValueError(f"logsnr must be a scalar or shape ({b},); got shape {jnp.shape(logsnr)}")
        if c.cond_channels:
            if cond is None or cond.shape != (*z.shape[:-1], c.cond_channels):
                raise ValueError(f"cond must be the upsampled conditioning video of shape "
                                 f"{(*z.shape[:-1], c.cond_channels)}; got {None if cond is None else cond.shape}")
            if cond_logsnr is None or jnp.shape(cond_logsnr) not in ((), (b,)):
                raise ValueError(f"cond_logsnr (the augmentation log-SNR, scalar or ({b},)) is required when "
                                 f"cond_channels > 0; got {None if cond_logsnr is None else jnp.shape(cond_logsnr)}")
        elif cond is not None or cond_logsnr is not None:
            raise ValueError("cond / cond_logsnr given but this stage has cond_channels=0")
        if text is not None:
            if not c.text_dim:
                raise ValueError("text given but this model has text_dim=0 (no text conditioning)")
            if text.ndim != 3 or text.shape[0] != b or text.shape[-1] != c.text_dim:
                raise ValueError(f"text must be ({b}, tokens, {c.text_dim}); got shape {text.shape}")
            if text_mask is not None and text_mask.shape != text.shape[:2]:
                raise ValueError(f"text_mask must be {text.shape[:2]} (batch, tokens); got {text_mask.shape}")
        if is_image is not None and jnp.shape(is_image) != (b,):
            raise ValueError(f"is_image must be a ({b},) bool array; got shape {jnp.shape(is_image)}")
        if guidance is not None:
            if not c.guidance_embedding:
                raise ValueError("guidance given but this model has guidance_embedding=False: it is guided by two "
                                 "passes (ivlib.guidance), not told the weight")
            if jnp.shape(guidance) not in ((), (b,)):
                raise ValueError(f"guidance must be a scalar or shape ({b},); got shape {jnp.shape(guidance)}")

    def _embedding(self, logsnr, text, text_mask, cond_logsnr, video, b, f, guidance):
        """Per-frame conditioning embedding `(B * F, emb_dim)` for FiLM, and the normalised text."""
        emb = self.logsnr_emb(jnp.broadcast_to(jnp.asarray(logsnr, jnp.float32), (b,)))
        if self.guidance_emb is not None:
            emb = emb + self.guidance_emb(jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), (b,)))
        if self.cond_logsnr_emb is not None:
            emb = emb + self.cond_logsnr_emb(jnp.broadcast_to(jnp.asarray(cond_logsnr, jnp.float32), (b,)))
        if self.text_norm is not None:
            text = self.text_norm(text.astype(jnp.float32))
            weights = text_mask.astype(jnp.float32)[..., None]
            pooled = (text * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)  # masked mean, 0 if empty
            emb = emb + self.text_pool(pooled)
            text = text.astype(jnp.dtype(self.config.dtype))
        emb = jnp.broadcast_to(emb[:, None], (b, f, emb.shape[-1]))
        if self.frame_emb is not None:  # learned frame-index embedding, videos only (our choice)
            table = self.frame_emb[...]
            pos = jnp.linspace(0.0, table.shape[0] - 1.0, f) if f > 1 else jnp.zeros(1)
            lo = jnp.floor(pos).astype(jnp.int32)
            hi = jnp.minimum(lo + 1, table.shape[0] - 1)
            frac = (pos - lo)[:, None]
            frame = (1 - frac) * table[lo] + frac * table[hi]  # linear interpolation when f != frames
            emb = emb + video.astype(jnp.float32)[:, None, None] * frame[None]
        return emb.reshape(b * f, -1), text

    # ---------------------------------------------------------------- forward
    def __call__(self, z, logsnr, text=None, text_mask=None, cond=None, cond_logsnr=None, is_image=None,
                 guidance=None):
        """Predict the stage's target (chapter 03).

        z: (B, F, H, W, channels); logsnr: scalar or (B,); text: (B, L, text_dim) float (None on a
        text model = the null prompt); text_mask: (B, L) bool (None = all tokens valid);
        cond: (B, F, H, W, cond_channels), already upsampled to z's shape; cond_logsnr: scalar or
        (B,), required iff cond_channels > 0; is_image: (B,) bool, None = all videos; guidance: the weight w
        a guided-distilled student imitates, scalar or (B,), only with guidance_embedding (None = 0).
        Returns (B, F, H, W, channels) float32.
        """
        self._check_inputs(z, logsnr, text, text_mask, cond, cond_logsnr, is_image, guidance)
        c = self.config
        b, f = z.shape[:2]
        video = jnp.ones((b,), bool) if is_image is None else ~jnp.asarray(is_image, bool)
        if c.text_dim:
            if text is None:  # the null prompt: one zero token, masked out
                text, text_mask = jnp.zeros((b, 1, c.text_dim)), jnp.zeros((b, 1), bool)
            elif text_mask is None:
                text_mask = jnp.ones(text.shape[:2], bool)
        emb, text = self._embedding(logsnr, text, text_mask, cond_logsnr, video, b, f,
                                    0.0 if guidance is None else guidance)
        x = z if cond is None else jnp.concatenate([z, cond.astype(z.dtype)], axis=-1)
        h = _frames_map(self.conv_in, x.astype(jnp.dtype(c.dtype)))
        run = lambda blk, h, e: blk(h, e, text, text_mask, video)
        if c.remat != "none":  # recompute each block's inside in the backward pass instead of storing it
            policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if c.remat == "dots" else None
            call = nnx.remat(lambda blk, h, e, text, text_mask, video: blk(h, e, text, text_mask, video), policy=policy)
            run = lambda blk, h, e: call(blk, h, e, text, text_mask, video)

        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = run(blk, h, emb)
                skips.append(h)
            if i < len(self.downsample):
                h = _frames_map(self.downsample[i], h)
        for blk in self.middle:
            h = run(blk, h, emb)
        for i in reversed(range(len(self.up))):
            for blk in self.up[i]:
                h = run(blk, jnp.concatenate([h, skips.pop()], axis=-1), emb)
            if i > 0:
                h = _frames_map(self.upsample[i - 1], h)
        out = _frames_map(lambda y: self.conv_out(jax.nn.silu(self.norm_out(y))), h)
        return out.astype(jnp.float32)


def count_params(config: UNetConfig) -> int:
    """Number of parameters of `VideoUNet(config)`, computed from shapes only (chapter 03, 10)."""
    model = nnx.eval_shape(lambda: VideoUNet(config, rngs=nnx.Rngs(0)))
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
