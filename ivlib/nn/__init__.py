"""Neural networks of ivlib (chapter 03): the space-time separable Video U-Net and its blocks."""

from ivlib.nn.model_def import ModelDef
from ivlib.nn.unet import Level, UNetConfig, VideoUNet, count_params

__all__ = ["Level", "ModelDef", "UNetConfig", "VideoUNet", "count_params"]
