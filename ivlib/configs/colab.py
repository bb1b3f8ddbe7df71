"""A mid-size cascade for one Colab TPU host (v2-8: 8 cores, 8 GB each) (chapter 10).

The first three stages of the paper's cascade at the paper's shapes — base 16x40x24 at 3 fps, TSR to
32 frames at 6 fps, SSR to 80x48 (frames x width x height, Fig. 6) — with widths cut so that each stage
trains in hours on a v2-8: about 100M + 50M + 50M parameters instead of 5.5B + 1.0B + 1.2B. Compare with
`ivlib/configs/toy.py` (smaller) and `ivlib/configs/paper.py` (the full cascade): same rules of the
paper's §2.3, different widths and depths. All widths here are ours; the text encoder is T5 v1.1 *base*
(768-d, ~0.1B encoder parameters) instead of T5-XXL, so that it fits next to the models on one host.
"""

from __future__ import annotations

from ivlib.stage import Stage
from ivlib.nn.unet import Level, UNetConfig

TEXT_ENCODER = "google/t5-v1_1-base"  # 768-d; T5-XXL (4096-d, 4.7B encoder parameters) is the paper's
TEXT_DIM = 768
TEXT_LENGTH = 64  # captions of a small dataset are short
HEAD_DIM = 64
DTYPE = "bfloat16"  # TPUs compute in bfloat16; parameters stay float32

# Base: 16 frames of 40x24 (height 24, width 40), spatial and temporal attention at every level, like
# the paper's base.
BASE = Stage("base", "base", UNetConfig(
    frames=16, height=24, width=40, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE, target="v",
    frame_embedding=False,
    levels=(
        Level(128, 2, spatial_attention=True, temporal="attention"),  # 40x24
        Level(256, 2, spatial_attention=True, temporal="attention"),  # 20x12
        Level(384, 2, spatial_attention=True, temporal="attention"),  # 10x6
        Level(512, 2, spatial_attention=True, temporal="attention"),  # 5x3
    )), fps=3.0)

# TSR: 16 -> 32 frames at 40x24, 3 -> 6 fps; temporal convolutions, spatial attention as the base.
TSR = Stage("tsr", "tsr", UNetConfig(
    frames=32, height=24, width=40, cond_channels=3, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE,
    target="v", frame_embedding=True,
    levels=(
        Level(128, 1, spatial_attention=True, temporal="conv"),  # 40x24
        Level(256, 2, spatial_attention=True, temporal="conv"),  # 20x12
        Level(384, 2, spatial_attention=True, temporal="conv"),  # 10x6
    )), in_frames=16, in_height=24, in_width=40, fps=6.0, temporal_upsampling="repeat")

# SSR: 40x24 -> 80x48 at 32 frames; temporal convolutions. Spatial attention at 20x12 and below only —
# one level lower than the paper's first SSR stage, so that one example fits a v2 core's 8 GB
# (chapter 10's memory plan); text cross-attention from 40x24 down.
SSR = Stage("ssr", "ssr", UNetConfig(
    frames=32, height=48, width=80, cond_channels=3, text_dim=TEXT_DIM, head_dim=HEAD_DIM, dtype=DTYPE,
    target="v", frame_embedding=False,
    levels=(
        Level(64, 1, spatial_attention=False, temporal="conv"),                         # 80x48
        Level(128, 2, spatial_attention=False, temporal="conv", cross_attention=True),  # 40x24
        Level(256, 2, spatial_attention=True, temporal="conv"),                         # 20x12
        Level(384, 2, spatial_attention=True, temporal="conv"),                         # 10x6
    )), in_frames=32, in_height=24, in_width=40, fps=6.0)

CASCADE = (BASE, TSR, SSR)
