"""The toy cascade: three stages that train and sample on a laptop CPU (chapters 04-06, 10).

Same structure as the paper's cascade (`ivlib.configs.paper`), shrunk: a base model, one temporal and
one spatial super-resolution stage instead of three of each, 16x16 frames instead of 40x24, channel
widths of 32-64 instead of 128-2560, and the toy T5 encoder (64-d) instead of T5-XXL (4096-d).
`diff ivlib/configs/toy.py ivlib/configs/colab.py` shows what changes with scale. Every choice here is
ours (the paper has no toy model); the rules of the paper's §2.3 are kept: temporal attention only in the
base, temporal convolutions in the SR stages, no spatial attention in the SR stages (the toy's "highest
resolution"), the last SSR stage fully convolutional and trained on crops, v-prediction everywhere.
"""

from __future__ import annotations

from ivlib.stage import Stage
from ivlib.nn.unet import Level, UNetConfig

TEXT_ENCODER = "toy-t5-random"  # `ivlib.text.default_text_encoder()`: offline, random frozen weights (chapter 04)
TEXT_DIM = 64  # the toy T5 encoder's d_model
TEXT_LENGTH = 32  # tokens per toy caption (`default_text_encoder`'s default)
HEAD_DIM = 16  # small heads so that 48-channel levels can attend (48 / 16 = 3 heads)
DTYPE = "float32"  # CPUs have no fast bfloat16

# Base: 8 frames of 16x16. Temporal attention at both levels, spatial self-attention at 8x8 only, text
# cross-attention at both levels: at 16x16 too, where a digit's strokes are drawn (chapter 04 compares
# it with cross-attention at 8x8 only, Imagen's placement beside self-attention). About 0.76M parameters.
BASE = Stage("base", "base", UNetConfig(
    frames=8, height=16, width=16, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE, target="v",
    frame_embedding=True, relative_keys=True,
    levels=(
        Level(32, 1, spatial_attention=False, temporal="attention", cross_attention=True),  # 16x16
        Level(64, 1, spatial_attention=True, temporal="attention"),                         # 8x8
    )), fps=4.0)

# TSR: 8 -> 16 frames at 16x16. Temporal convolutions, no spatial attention; the text enters through the
# pooled embedding and cross-attention at 8x8. About 0.47M parameters.
TSR = Stage("tsr", "tsr", UNetConfig(
    frames=16, height=16, width=16, cond_channels=3, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE,
    target="v", frame_embedding=True,
    levels=(
        Level(32, 1, spatial_attention=False, temporal="conv"),                        # 16x16
        Level(48, 1, spatial_attention=False, temporal="conv", cross_attention=True),  # 8x8
    )), in_frames=8, in_height=16, in_width=16, fps=8.0, temporal_upsampling="repeat")

# SSR: 16x16 -> 32x32 at 16 frames. Fully convolutional (no attention of any kind; the text enters only
# through the pooled embedding), trained on random 16x16 crops of the 32x32 frames. About 0.42M parameters.
SSR = Stage("ssr", "ssr", UNetConfig(
    frames=16, height=32, width=32, cond_channels=3, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE,
    target="v", frame_embedding=False, fully_convolutional=True,
    levels=(
        Level(32, 1, spatial_attention=False, temporal="conv", cross_attention=False),  # 32x32 (crop 16x16)
        Level(48, 1, spatial_attention=False, temporal="conv", cross_attention=False),  # 16x16
    )), in_frames=16, in_height=16, in_width=16, fps=8.0, train_crop=(16, 16))

CASCADE = (BASE, TSR, SSR)

# The base stage's guidance weight when none is given (`ivlib generate`, `ivlib eval`): the best weight of
# chapter 08's sweep of the shipped base model, `ivlib.evaluation.best_guidance` (the most prompt-following
# videos, by digit, colour and motion, that keep FVD within 10 % of the best); tests keep the two in step.
# For the shipped base (relative keys, 10000 steps) it is 1: the digit right in 0.92 of the videos (0.73 at
# w = 0) at the sweep's best FVD.
GUIDANCE = 1.0

# The SNR at which an SR stage's input video is noised when sampling (paper §2.5, "such as 3 or 5"; chapter 06).
# The undistilled SR stages take the paper's 5. Their distilled students take the distilled base's video, which
# is not the undistilled base's, and sample at their own SNR: the best R-precision within 5 % of the best FVD
# among the SNRs `benchmarks/student_aug.py` tries on validation prompts (chapter 09); tests keep the two in step.
AUG_SNR = 5.0
DISTILLED_AUG_SNR = 100.0  # R-precision 0.895, FVD 32.6 on 128 validation prompts (0.871, 35.0 at SNR 5)
