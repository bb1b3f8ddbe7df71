"""What still images teach videos (chapter 07): is the object orange, and does it move smoothly?

Joint image-video training (Ho et al. 2022, §2.6) should carry an appearance that only images show into
generated videos. In the toy domain that appearance is the colour "orange", a word no video caption
contains (`ivlib.data.captions.IMAGE_ONLY_WORDS`). The attribute classifier of chapter 04 knows only the
seven video colours, so orange is measured from the pixels themselves:

* the *object pixels* of a frame are those whose brightest channel exceeds half of full scale (the
  background is black);
* their hue is the usual HSV hue angle, in degrees; pixels with saturation under 0.5 (white, grey
  edges of anti-aliasing) have no reliable hue and are left out;
* a video *looks orange* when the median hue of all its object pixels lies in (15°, 42°): the toy's
  orange is 30°, its nearest colours red 0° and yellow 53°, and the bounds are the midpoints.

Whether the motion survives is a second measure that needs no classifier: the object's centroid (the
brightness-weighted mean position of its pixels) is tracked through the frames, and a video's *largest
jump* is the biggest centroid displacement between consecutive frames, in pixels. Ground-truth toy
videos move at most a few pixels per frame; a sequence of unrelated still images jumps across the frame.
A 16x16 video *moves smoothly* when its largest jump is at most SMOOTH_JUMP pixels.
"""

from __future__ import annotations

import numpy as np

ORANGE_HUES = (15.0, 42.0)  # degrees: midpoints between red (0), orange (30) and yellow (53)
BRIGHT = 0.5  # an object pixel's brightest channel exceeds this, on a [0, 1] scale
SATURATED = 0.5  # pixels below this saturation have no reliable hue
SMOOTH_JUMP = 3.0  # pixels at 16x16: ground-truth toy videos move at most ~2.2 pixels from frame to frame


def _unit(videos) -> np.ndarray:
    """Videos in [-1, 1] as float arrays in [0, 1], checked to be (B, F, H, W, 3)."""
    videos = np.asarray(videos, np.float32)
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"videos: expected (B, F, H, W, 3) RGB videos in [-1, 1], got shape {videos.shape}")
    return np.clip((videos + 1.0) / 2.0, 0.0, 1.0)


def hue_degrees(rgb) -> np.ndarray:
    """HSV hue in degrees [0, 360) of RGB values in [0, 1] (last axis); grey pixels get hue 0."""
    rgb = np.asarray(rgb, np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi, lo = rgb.max(-1), rgb.min(-1)
    span = np.where(hi > lo, hi - lo, 1.0)
    hue = np.where(hi == r, (g - b) / span % 6.0, np.where(hi == g, (b - r) / span + 2.0, (r - g) / span + 4.0))
    return np.where(hi > lo, 60.0 * hue, 0.0) % 360.0


def median_hue(videos) -> np.ndarray:
    """(B,) median hue in degrees of each video's bright, saturated pixels; NaN for a video with none."""
    x = _unit(videos)
    hi, lo = x.max(-1), x.min(-1)
    use = (hi > BRIGHT) & ((hi - lo) > SATURATED * hi)
    hues = hue_degrees(x)
    return np.array([np.median(h[m]) if m.any() else np.nan for h, m in zip(hues, use)])


def looks_orange(videos) -> np.ndarray:
    """(B,) bool: the video's object is orange (median hue in ORANGE_HUES); False when nothing is coloured."""
    hue = median_hue(videos)
    with np.errstate(invalid="ignore"):
        return (hue > ORANGE_HUES[0]) & (hue < ORANGE_HUES[1])


def centroids(videos) -> np.ndarray:
    """(B, F, 2) brightness-weighted centroid (row, column), in pixels, of each frame's object pixels.

    A frame with no object pixels gets the previous frame's centroid (the frame centre for a first frame)."""
    x = _unit(videos)
    b, f, h, w, _ = x.shape
    weight = np.where(x.max(-1) > BRIGHT, x.max(-1), 0.0)  # (B, F, H, W)
    mass = weight.sum((2, 3))
    rows, cols = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.stack([(weight.sum(3) * rows).sum(2) / mass, (weight.sum(2) * cols).sum(2) / mass], -1)
    for t in range(f):
        fallback = np.array([(h - 1) / 2, (w - 1) / 2]) if t == 0 else c[:, t - 1]
        c[:, t] = np.where((mass[:, t] > 0)[:, None], c[:, t], fallback)
    return c


def largest_jump(videos) -> np.ndarray:
    """(B,) the largest centroid displacement between consecutive frames, in pixels (0 for one frame)."""
    c = centroids(videos)
    if c.shape[1] < 2:
        return np.zeros(c.shape[0])
    return np.linalg.norm(np.diff(c, axis=1), axis=-1).max(1)


def moves_smoothly(videos) -> np.ndarray:
    """(B,) bool: no centroid jump between consecutive frames exceeds SMOOTH_JUMP pixels (16x16 frames)."""
    return largest_jump(videos) <= SMOOTH_JUMP
