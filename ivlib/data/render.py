"""Draw toy clips at any resolution and frame count, vectorised over the batch (chapter 04).

Each object's alpha texture (``sprites``) is placed by *exact area resampling*: a pixel's alpha is
the average of the piecewise-constant texture over the pixel's square.  Because the box is axis
aligned, that average is separable — alpha = A_y @ texture @ A_x.T, where A_y[p, i] is the overlap
of pixel row p with texel row i, divided by the pixel's height.  This is a box anti-aliasing filter
with no approximation, and it makes resolutions consistent: averaging 2x2 blocks of a 32x32 render
of a one-object clip gives exactly the 16x16 render.  Objects are composited "over" a black
background in drawing order, then mapped from [0, 1] to [-1, 1].
"""

from __future__ import annotations

import numpy as np

from ivlib.data import sprites
from ivlib.data.captions import COLOURS
from ivlib.data.clips import Clip, ImagePack, frame_times, reflect


def _texture(thing) -> np.ndarray:
    spec = thing.spec
    if spec.kind == "digit":
        return sprites.digit_texture(thing.sprite)
    return sprites.shape_texture(spec.label, spec.style)


def _overlap(centre: np.ndarray, scale: np.ndarray, pixels: int, texels: int) -> np.ndarray:
    """Area weights (N, F, O, pixels, texels): overlap of each pixel with each texel / pixel size.

    centre: (N, F, O) box centres along one axis; scale: (N, 1, O) box sides; canvas units.
    With u(e) the pixel edge e in texel units, the part of texel i left of u is clip(u - i, 0, 1),
    so pixel p covers clip(u_{p+1} - i, 0, 1) - clip(u_p - i, 0, 1) texels of texel i.
    """
    edges = (np.arange(pixels + 1) / pixels).astype(np.float32)
    u = (edges - (centre - scale / 2)[..., None]) * (texels / scale[..., None])  # (N, F, O, P + 1)
    covered = np.clip(u[..., None] - np.arange(texels, dtype=np.float32), 0.0, 1.0)  # (N, F, O, P + 1, T)
    weights = np.diff(covered, axis=-2)
    weights *= (scale * (pixels / texels))[..., None, None].astype(np.float32)
    return weights


def render_clips(clips, frames: int, height: int, width: int) -> np.ndarray:
    """Render Clips to video (N, frames, height, width, 3) float32 in [-1, 1] (chapter 04).

    All clips are drawn together: positions, area weights and the two matrix products are
    numpy operations over (clip, frame, object).
    """
    n = len(clips)
    objects = max(len(clip.things) for clip in clips)
    texels = sprites.TEXELS
    texture = np.zeros((n, objects, texels, texels), np.float32)
    colour = np.zeros((n, objects, 3), np.float32)
    start = np.full((n, objects, 2), 0.5)
    velocity = np.zeros((n, objects, 2))
    scale = np.full((n, objects), 0.5)  # absent objects keep a zero texture
    times = np.zeros((n, frames))
    for i, clip in enumerate(clips):
        times[i] = frame_times(frames, clip.duration)
        for o, thing in enumerate(clip.things):
            texture[i, o] = _texture(thing)
            colour[i, o] = COLOURS[thing.spec.colour]
            start[i, o] = thing.x, thing.y
            velocity[i, o] = thing.vx, thing.vy
            scale[i, o] = thing.scale
    half = scale[:, None, :, None] / 2
    centre = reflect(start[:, None] + velocity[:, None] * times[:, :, None, None], half, 1.0 - half)  # (N,F,O,2)
    centre = centre.astype(np.float32)
    scale = scale.astype(np.float32)
    a_y = _overlap(centre[..., 1], scale[:, None], height, texels)  # (N, F, O, H, T)
    a_x = _overlap(centre[..., 0], scale[:, None], width, texels)  # (N, F, O, W, T)
    alpha = np.matmul(np.matmul(a_y, texture[:, None]), np.swapaxes(a_x, -1, -2))  # (N, F, O, H, W)
    out = alpha[:, :, 0, :, :, None] * colour[:, None, None, None, 0]
    for o in range(1, objects):  # "over": the later object covers the earlier ones
        a = alpha[:, :, o, :, :, None]
        out *= 1.0 - a
        out += a * colour[:, None, None, None, o]
    out *= 2.0
    out -= 1.0
    return np.clip(out, -1.0, 1.0, out=out)


def _pack_frames(pack: ImagePack, frames: int) -> tuple:
    """The images of a pack shown at `frames` frames: all of them, or every k-th (frame skipping)."""
    n = len(pack.images)
    if frames == n:
        return pack.images
    if frames < n and n % frames == 0:
        return pack.images[:: n // frames]
    raise ValueError(f"frames: an image pack of {n} images can be rendered with {n} frames or a divisor "
                     f"of {n} (frame skipping), got {frames}")


def render(params, frames: int, height: int, width: int) -> np.ndarray:
    """Render a batch of toy params (Clips and ImagePacks) to (B, frames, height, width, 3) (chapter 04/07).

    params: a list as in ``Dataset.batch(...)["params"]``.  A Clip is drawn at `frames` times over
    its duration; an ImagePack of n images needs frames == n or a divisor of n (then every
    (n // frames)-th image, which is what frame skipping would give).
    """
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    params = list(params)
    if not params:
        raise ValueError("params: expected at least one Clip or ImagePack, got an empty list")
    video = np.empty((len(params), frames, height, width, 3), np.float32)
    clip_rows = [i for i, p in enumerate(params) if isinstance(p, Clip)]
    pack_rows = [i for i, p in enumerate(params) if isinstance(p, ImagePack)]
    if len(clip_rows) + len(pack_rows) != len(params):
        bad = next(p for p in params if not isinstance(p, (Clip, ImagePack)))
        raise ValueError(f"params: expected Clip or ImagePack items, got {type(bad).__name__}")
    if clip_rows:
        video[clip_rows] = render_clips([params[i] for i in clip_rows], frames, height, width)
    if pack_rows:
        stills = [image for i in pack_rows for image in _pack_frames(params[i], frames)]
        video[pack_rows] = render_clips(stills, 1, height, width).reshape(len(pack_rows), frames, height, width, 3)
    return video
