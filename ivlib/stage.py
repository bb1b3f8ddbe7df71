"""A stage of the cascade, as data (chapter 05; paper §2.2–2.3, Fig. 6).

A stage is a frozen dataclass: which kind it is (base, spatial or temporal super-resolution), the video
it takes and the video it makes (frames × height × width), and its Video U-Net (`UNetConfig`, which also
fixes what the network predicts: v, ε or x). `check_chain` says whether stages fit together as a cascade.
The configs (`ivlib.configs`) write the toy, Colab and paper cascades out as such data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ivlib.conditioning import TEMPORAL_UPSAMPLING
from ivlib.nn.unet import UNetConfig

KINDS = ("base", "ssr", "tsr")


@dataclass(frozen=True)
class Stage:
    """One model of the cascade (chapter 05).

    The output shape is the U-Net's (frames, height, width); `in_*` is the shape of the video the
    stage conditions on (ignored for the base model). `fps` is the frame rate of the output in the
    paper's pipeline (Fig. 6). `temporal_upsampling` says how a TSR stage stretches its input to its
    own frame count before concatenation: repeat each frame, or put blank (zero) frames in between.
    `train_crop` (height, width): a fully convolutional stage is trained on random crops of this size.
    """

    name: str
    kind: str
    unet: UNetConfig
    in_frames: int = 0
    in_height: int = 0
    in_width: int = 0
    fps: float = 0.0
    temporal_upsampling: str = "repeat"
    train_crop: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.temporal_upsampling not in TEMPORAL_UPSAMPLING:
            raise ValueError(f"stage {self.name!r}: temporal_upsampling must be one of {TEMPORAL_UPSAMPLING}")
        if self.kind == "base":
            if self.unet.cond_channels:
                raise ValueError(f"stage {self.name!r}: a base model takes no conditioning video (cond_channels=0)")
            return
        if self.unet.cond_channels != self.unet.channels:
            raise ValueError(f"stage {self.name!r}: an SR stage needs cond_channels == channels ({self.unet.channels})")
        if self.kind == "ssr" and (self.in_frames != self.frames or self.in_height > self.height or self.in_width > self.width):
            raise ValueError(f"stage {self.name!r}: a spatial SR stage keeps frames and does not shrink; "
                             f"input {self.input_shape} -> output {self.output_shape}")
        if self.kind == "tsr" and ((self.in_height, self.in_width) != (self.height, self.width)
                                   or self.in_frames < 1 or self.frames % self.in_frames):
            raise ValueError(f"stage {self.name!r}: a temporal SR stage keeps height x width and multiplies frames; "
                             f"input {self.input_shape} -> output {self.output_shape}")

    def with_target(self, target: str) -> "Stage":
        """The same stage with a network that predicts `target` ("v", "eps" or "x"; chapter 02)."""
        return dataclasses.replace(self, unet=dataclasses.replace(self.unet, target=target))

    def with_remat(self, remat: str) -> "Stage":
        """The same stage rematerialised as `remat` says ("none", "block", "dots"; `UNetConfig.remat`, chapter 10):
        the same parameters, recomputed activations in the backward pass."""
        return dataclasses.replace(self, unet=dataclasses.replace(self.unet, remat=remat))

    @property
    def frames(self) -> int:
        return self.unet.frames

    @property
    def height(self) -> int:
        return self.unet.height

    @property
    def width(self) -> int:
        return self.unet.width

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_frames, self.in_height, self.in_width)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)


def check_chain(stages) -> None:
    """Raise ValueError unless every stage's output shape is the next stage's input (chapter 05)."""
    if not stages or stages[0].kind != "base":
        raise ValueError("a cascade starts with a base stage")
    for prev, nxt in zip(stages, stages[1:]):
        if nxt.kind == "base":
            raise ValueError(f"stage {nxt.name!r} is a base model; only the first stage can be")
        if prev.output_shape != nxt.input_shape:
            raise ValueError(f"stage {prev.name!r} makes videos of frames x height x width {prev.output_shape}, "
                             f"but the next stage {nxt.name!r} takes {nxt.input_shape}")


def trained_target(stage: Stage, metadata: dict) -> str:
    """What the network of a weight file predicts: the "target" it was saved with; for files written
    before that key existed, the target of its "train_config"; else the stage's own."""
    target = metadata.get("target") or (metadata.get("train_config") or {}).get("target")
    return target or stage.unet.target
