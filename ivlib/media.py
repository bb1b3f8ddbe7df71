"""Video files: ffmpeg for mediapy, pixels from [-1, 1] floats, writing mp4 / gif (all chapters).

mediapy calls ffmpeg; ivlib takes it from the pip package `imageio-ffmpeg`, so no system package is
needed. Reading the user's videos (`ivlib.data.folder`) and writing generated ones (`ivlib generate`)
both go through here; `ivlib.viz` only shows videos in a notebook.
"""

import os

import numpy as np

_FFMPEG_READY = False


def ensure_ffmpeg():
    """Point mediapy at imageio-ffmpeg's bundled ffmpeg binary (once per process)."""
    global _FFMPEG_READY
    if not _FFMPEG_READY:
        import imageio_ffmpeg
        import mediapy

        mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
        _FFMPEG_READY = True


def to_uint8(video):
    """[-1, 1] floats -> uint8 pixels, any shape (..., C)."""
    video = np.asarray(video, np.float32)
    return np.round(np.clip((video + 1.0) * 127.5, 0.0, 255.0)).astype(np.uint8)


def upscale(video, factor):
    """Nearest-neighbour upscaling of (..., H, W, C) so tiny toy videos are visible on screen."""
    video = np.asarray(video)
    return np.repeat(np.repeat(video, factor, axis=-3), factor, axis=-2)


def write_video(path, video, fps=8, scale=1):
    """Write one video (F, H, W, C) in [-1, 1] to `path` (mp4 or gif), upscaled by `scale`; returns the path."""
    import mediapy

    video = np.asarray(video)
    if video.ndim != 4:
        raise ValueError(f"video must have shape (frames, height, width, channels), got {video.shape}")
    ensure_ffmpeg()
    frames = to_uint8(upscale(video, scale) if scale > 1 else video)
    if frames.shape[1] % 2 or frames.shape[2] % 2:  # H.264 needs even sizes
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mediapy.write_video(path, frames, fps=fps)
    return path
