"""The paper's cascade: seven video diffusion models, 11.6B parameters (chapter 10; Ho et al. 2022, Fig. 6).

Every number below is marked with where it comes from:

* `[paper]`  stated in the Imagen Video paper (section or figure given);
* `[Imagen]` taken from Imagen (Saharia et al. 2022b), which the paper builds on;
* `[ours]`   the paper does not say; we chose it, and the comment says on what basis.

The paper gives the cascade's shapes (Fig. 6, as frames x width x height: the base is 16x40x24, so
height 24 and width 40), which layers each stage uses (§2.3, Fig. 7), the total of 11.6B diffusion
parameters (§2.2) and the three base sizes 500M / 1.6B / 5.6B of its scaling study (Fig. 11). It gives no
channel widths or depths: ours are chosen so that the base is 5.6B and the seven models sum to 11.6B
(`tests/test_configs.py` checks both to 3 %, counting with `nnx.eval_shape`, nothing allocated).

Architecture rules applied (paper §2.3, Fig. 7):
* base: spatial convolution + spatial self-attention + temporal self-attention, at every level;
* all six super-resolution stages: temporal convolutions instead of temporal attention;
* spatial attention in the base and in the first two SSR stages, none at the highest resolutions; the
  paper is silent on the TSR stages: we give the low-resolution TSR (40x24, the base's resolution)
  spatial attention like the base, and the two 320x192 TSR stages none — they run at 64 and 128 frames,
  where memory is tightest, and "our models at the highest spatial resolution do not have spatial
  attention" (Fig. 7);
* the last SSR stage is fully convolutional and trained on random crops [paper]; it keeps text
  cross-attention at its lowest level, as Imagen's 1024x1024 super-resolution model kept text
  cross-attention after dropping self-attention [Imagen] — per-pixel attention to the text tokens does
  not depend on the frame size, so the model still runs at any resolution;
* T5-XXL text embeddings (4096-d) go into every stage [paper, Fig. 6 caption]: as a pooled embedding
  into every residual block, and through cross-attention where the stage has it (stages without spatial
  attention get cross-attention at their lowest-resolution levels, as Imagen's Efficient U-Net [Imagen]);
* v-prediction for every model [paper §2.4].
"""

from __future__ import annotations

from ivlib.stage import Stage
from ivlib.nn.unet import Level, UNetConfig

TEXT_ENCODER = "google/t5-v1_1-xxl"  # [paper §2.2] frozen T5-XXL (v1.1 is the public T5-XXL checkpoint: [ours])
TEXT_DIM = 4096  # [paper] T5-XXL's d_model
TEXT_LENGTH = 128  # [Imagen] tokens per prompt; the Imagen Video paper gives none
HEAD_DIM = 64  # [ours] attention head width; a common choice for U-Nets of this size (heads = channels / 64)
DTYPE = "bfloat16"  # [ours] bfloat16 activations, float32 parameters: the usual mixed precision on TPU


def _unet(frames: int, height: int, width: int, levels: tuple[Level, ...], **kwargs) -> UNetConfig:
    """A paper-scale U-Net: T5-XXL text [paper], v-prediction [paper §2.4], our head width and dtype."""
    return UNetConfig(frames=frames, height=height, width=width, levels=levels, text_dim=TEXT_DIM,
                      head_dim=HEAD_DIM, dtype=DTYPE, target="v", **kwargs)


# --- the base model, in the three sizes of Fig. 11 -------------------------------------------------------
# [paper §3.2] "We performed this scaling by increasing the base channel count and depth of the network."
# [ours] the channel multipliers per level and the (channels, blocks) of each size, chosen so that the
# counts land on the paper's 500M / 1.6B / 5.6B. 40x24 halves only three times (40x24, 20x12, 10x6, 5x3),
# so the base has four levels.
# [start-base]
BASE_CHANNEL_MULT = (1, 2, 3, 5)  # [ours]
BASE_SIZES = {  # name: (base channel count, residual blocks per level), all [ours]; sizes from [paper Fig. 11]
    "500m": (192, 3),
    "1.6b": (320, 4),
    "5.6b": (512, 6),
}
BASE_PARAMS = {"500m": 0.5e9, "1.6b": 1.6e9, "5.6b": 5.6e9}  # [paper Fig. 11] targets the tests check


def base_stage(size: str = "5.6b") -> Stage:
    """The base model, 16 frames of 40x24 at 3 fps [paper Fig. 6], at one of the sizes of Fig. 11 (chapter 10).

    Spatial conv + spatial self-attention + temporal self-attention at every level [paper Fig. 7].
    No learned frame embedding [ours]: the temporal attention's relative position bias (Video Diffusion
    Models, Ho et al. 2022b) already tells frames apart.
    """
    if size not in BASE_SIZES:
        raise ValueError(f"size must be one of {sorted(BASE_SIZES)}; got {size!r}")
    channels, blocks = BASE_SIZES[size]
    levels = tuple(Level(channels * m, blocks, spatial_attention=True, temporal="attention")
                   for m in BASE_CHANNEL_MULT)
    return Stage("base", "base", _unet(16, 24, 40, levels, frame_embedding=False), fps=3.0)
# [end-base]


# --- the six super-resolution stages -------------------------------------------------------------------------
# Shapes, fps, kinds and the order of the stages: [paper Fig. 6]. Every SR stage: temporal convolutions
# [paper §2.3]; conditioning video concatenated channel-wise (cond_channels = 3) [paper §2.3].
# Level layouts [ours], after Imagen's Efficient U-Net [Imagen]: few channels and blocks at high
# resolution, most parameters at low resolution where they cost little memory. Widths [ours] chosen so
# the six SR stages hold the 11.6B - 5.6B = 6.0B parameters the paper's totals leave them: 1.0-1.2B each.
# TSR stages: frames repeated, not blanked, before concatenation (the paper allows both, §2.3) [ours];
# a learned frame embedding tells the model which frames are repeats [ours].
SA, CONV = True, "conv"


def _tsr(name, frames, in_frames, height, width, levels, fps):
    unet = _unet(frames, height, width, levels, cond_channels=3, frame_embedding=True)
    return Stage(name, "tsr", unet, in_frames=in_frames, in_height=height, in_width=width, fps=fps,
                 temporal_upsampling="repeat")


def _ssr(name, frames, height, width, in_height, in_width, levels, fps, **kwargs):
    train_crop = kwargs.pop("train_crop", None)
    unet = _unet(frames, height, width, levels, cond_channels=3, frame_embedding=False, **kwargs)
    return Stage(name, "ssr", unet, in_frames=frames, in_height=in_height, in_width=in_width, fps=fps,
                 train_crop=train_crop)


# TSR1: 16x40x24 -> 32x40x24, 3 -> 6 fps. The base's resolution: spatial attention everywhere [ours].
TSR1 = _tsr("tsr1", 32, 16, 24, 40, fps=6.0, levels=(
    Level(320, 2, SA, CONV),   # 40x24
    Level(640, 3, SA, CONV),   # 20x12
    Level(1024, 3, SA, CONV),  # 10x6
    Level(1280, 3, SA, CONV),  # 5x3
))

# SSR1: 32x40x24 -> 32x80x48 [paper]. Spatial attention [paper: "the first two SSR models"], at 40x24 and
# below only [ours]: at 80x48 a frame is 3840 tokens, the memory cost grows with its square.
SSR1 = _ssr("ssr1", 32, 48, 80, 24, 40, fps=6.0, levels=(
    Level(192, 2, False, CONV),   # 80x48
    Level(384, 2, SA, CONV),      # 40x24
    Level(768, 3, SA, CONV),      # 20x12
    Level(1280, 3, SA, CONV),     # 10x6
    Level(1280, 3, SA, CONV),     # 5x3
))

# SSR2: 32x80x48 -> 32x320x192 [paper]. Spatial attention [paper], at 40x24 and below only [ours].
SSR2 = _ssr("ssr2", 32, 192, 320, 48, 80, fps=6.0, levels=(
    Level(128, 1, False, CONV),   # 320x192
    Level(256, 2, False, CONV),   # 160x96
    Level(512, 2, False, CONV),   # 80x48
    Level(768, 3, SA, CONV),      # 40x24
    Level(1024, 3, SA, CONV),     # 20x12
    Level(1280, 3, SA, CONV),     # 10x6
))

# TSR2 / TSR3: 32 -> 64 -> 128 frames at 320x192, 6 -> 12 -> 24 fps [paper]. No spatial attention [ours, see
# the module docstring]; text cross-attention at the two lowest levels [ours].
_TSR_HIGH = (
    Level(128, 1, False, CONV),                         # 320x192
    Level(256, 2, False, CONV),                         # 160x96
    Level(512, 2, False, CONV),                         # 80x48
    Level(768, 3, False, CONV),                         # 40x24
    Level(1280, 3, False, CONV, cross_attention=True),  # 20x12
    Level(1280, 3, False, CONV, cross_attention=True),  # 10x6
)
TSR2 = _tsr("tsr2", 64, 32, 192, 320, fps=12.0, levels=_TSR_HIGH)
TSR3 = _tsr("tsr3", 128, 64, 192, 320, fps=24.0, levels=_TSR_HIGH)

# [start-ssr3]
# SSR3: 128x320x192 -> 128x1280x768 [paper]; fully convolutional, trained on random crops [paper §2.3].
# Crop 320x192, i.e. train_crop = (height, width) = (192, 320): a quarter of each side, the previous
# stage's frame size [ours]. Text cross-attention
# at the lowest level only [ours, after Imagen's 1024x1024 model].
SSR3 = _ssr("ssr3", 128, 768, 1280, 192, 320, fps=24.0, fully_convolutional=True, train_crop=(192, 320), levels=(
    Level(128, 1, False, CONV),                         # 1280x768 (crop 320x192)
    Level(256, 1, False, CONV),                         # 640x384
    Level(512, 2, False, CONV),                         # 320x192
    Level(1024, 3, False, CONV),                        # 160x96
    Level(1280, 3, False, CONV),                        # 80x48
    Level(1280, 3, False, CONV, cross_attention=True),  # 40x24
))
# [end-ssr3]

BASE = base_stage("5.6b")
CASCADE = (BASE, TSR1, SSR1, SSR2, TSR2, TSR3, SSR3)  # [paper Fig. 6] in sampling order
TOTAL_PARAMS = 11.6e9  # [paper §2.2] "a total of 11.6B diffusion model parameters"


def cascade(base_size: str = "5.6b") -> tuple[Stage, ...]:
    """The seven stages in sampling order, with the base model at one of Fig. 11's sizes (chapter 10)."""
    base = base_stage(base_size)
    return (base,) + CASCADE[1:]

