"""Neural networks of ivlib (chapter 03): the space-time separable Video U-Net and its blocks."""

from ivlib.nn.unet import Level, UNetConfig, VideoUNet, count_params

__all__ = ["Level", "UNetConfig", "VideoUNet", "count_params"]
