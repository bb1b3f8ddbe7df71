"""Bring videos to a stage's resolution and frame count (chapter 04; used for every stage in chapter 05).

The paper (§3): "we spatially resize images and videos using antialiased bilinear resizing, and we
temporally resize videos by skipping frames."  Both are plain numpy here so the data pipeline never
touches the accelerator.
"""

from __future__ import annotations

import numpy as np


def linear_resize_matrix(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """(n_out, n_in) weights of (antialiased) linear resampling along one axis (chapter 04).

    Output sample j sits at input coordinate (j + 0.5) * n_in / n_out - 0.5 (pixel centres aligned).
    The kernel is the triangle max(0, 1 - |d| / s); when shrinking and antialias is set it is
    stretched by s = n_in / n_out so every input pixel contributes (otherwise s = 1).  Rows are
    normalised to sum to 1, which handles the borders.  Same definition as
    ``jax.image.resize(..., method="linear", antialias=True)``.
    """
    stretch = max(n_in / n_out, 1.0) if antialias else 1.0
    position = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(position[:, None] - np.arange(n_in)[None, :]) / stretch)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_video(video, height: int, width: int, antialias: bool = True) -> np.ndarray:
    """Antialiased bilinear spatial resize (chapter 04): (..., H, W, C) -> (..., height, width, C).

    Works for a batch (B, F, H, W, C), one video (F, H, W, C) or an image (H, W, C); float32 out.
    Shrinking averages over every input pixel (no aliasing); enlarging is plain bilinear.
    """
    video = np.asarray(video)
    if video.ndim < 3:
        raise ValueError(f"video: expected (..., H, W, C), got shape {video.shape}")
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    h, w = video.shape[-3], video.shape[-2]
    video = video.astype(np.float32, copy=False)
    if (h, w) == (height, width):
        return video.copy()
    rows = linear_resize_matrix(h, height, antialias).astype(np.float32)
    cols = linear_resize_matrix(w, width, antialias).astype(np.float32)
    out = np.einsum("ph,...hwc->...pwc", rows, video, optimize=True)
    return np.einsum("qw,...pwc->...pqc", cols, out, optimize=True)


def skip_frames(video, frames: int, stride: int | None = None, start: int = 0) -> np.ndarray:
    """Temporal resize by frame skipping (chapter 04): keep `frames` frames, `stride` apart.

    video: (B, F, H, W, C) or (F, H, W, C) — the frame axis is the fourth from the end.
    stride None means F // frames, and then F must be a multiple of frames (so the kept frames
    cover the clip evenly: 16 -> 8 keeps frames 0, 2, ..., 14).
    """
    video = np.asarray(video)
    if video.ndim < 4:
        raise ValueError(f"video: expected (..., F, H, W, C), got shape {video.shape}")
    total = video.shape[-4]
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames: expected a positive integer, got {frames!r}")
    if stride is None:
        if total % frames:
            raise ValueError(f"frames: {total} frames can be skipped evenly only to a divisor of {total}, "
                             f"got {frames} (or pass stride=)")
        stride = total // frames
    if stride < 1 or start < 0 or start + (frames - 1) * stride >= total:
        raise ValueError(f"stride/start: {frames} frames with stride {stride} from frame {start} need "
                         f"{start + (frames - 1) * stride + 1} frames, the video has {total}")
    return video[..., start : start + (frames - 1) * stride + 1 : stride, :, :, :]


def center_crop(video, aspect: float) -> np.ndarray:
    """Crop (..., H, W, C) at the centre to width / height == aspect (chapter 04, user videos)."""
    video = np.asarray(video)
    h, w = video.shape[-3], video.shape[-2]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        return video[..., :, left : left + new_w, :]
    new_h = max(1, round(w / aspect))
    top = (h - new_h) // 2
    return video[..., top : top + new_h, :, :]
