"""Clips of the toy domain as parameters, their motion, and how they are sampled (chapter 04).

A clip is *defined by its parameters*, not by pixels: which objects (``ObjectSpec``: digit or
shape, colour, size, style, motion), which handwriting, how big, where at time 0 and how fast.
``ivlib.data.render`` draws the same clip at any resolution and any frame count, so a cascade's
stages get consistent pairs (16x16 and 32x32; 8 and 16 frames) of one underlying clip.

Time and space (our choices, documented here once):
- Canvas coordinates are continuous in [0, 1] (x to the right, y down; "up" is y decreasing).
- A clip lasts ``duration`` reference frames (default REFERENCE_FRAMES = 8, the toy base stage's
  frame count).  Rendering F frames samples times t_k = k * duration / F, k = 0..F-1; so 16 frames
  is the same clip at twice the frame rate of 8 frames, and every second frame of the 16-frame
  render *is* the 8-frame render.  Velocities are in canvas units per reference frame.
- Objects always stay wholly inside the canvas.  An object's centre lives in [scale/2, 1 - scale/2];
  "moving left/right/up/down" clips start far enough from the wall that they never reach it within
  the clip (so the caption stays true), while "bouncing" clips travel 1.25-2x the free range and
  reflect off the walls like a ball.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ivlib.data import captions as C
from ivlib.data import sprites

REFERENCE_FRAMES = 8
DIGIT_SCALE = (0.45, 0.6)  # box side as a fraction of the canvas (our choice: legible at 16x16)
SHAPE_SCALE = {"small": (0.25, 0.35), "big": (0.45, 0.6)}
LINEAR_TRAVEL = (0.5, 0.9)  # distance over the clip, as a fraction of the free range
BOUNCE_TRAVEL = (1.25, 2.0)  # > 1: every bouncing object turns at least once


@dataclasses.dataclass(frozen=True)
class Thing:
    """One object of a clip: its caption-level spec plus the nuisance parameters (chapter 04).

    sprite: scikit-learn digit index (digits; 0 for shapes).  scale: box side in canvas units.
    x, y: box centre at t = 0.  vx, vy: canvas units per reference frame.
    """

    spec: C.ObjectSpec
    sprite: int
    scale: float
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0


@dataclasses.dataclass(frozen=True)
class Clip:
    """A captioned toy clip (chapter 04), or a still image when image=True (chapter 07).

    things: one or two Things, drawn in order (the second over the first).  duration: reference
    frames.  variants: per-object caption phrasing (see ``captions.object_phrase``).
    """

    things: tuple[Thing, ...]
    duration: float = REFERENCE_FRAMES
    image: bool = False
    variants: tuple[int, ...] = ()

    @property
    def specs(self) -> tuple[C.ObjectSpec, ...]:
        return tuple(thing.spec for thing in self.things)

    @property
    def caption(self) -> str:
        return C.caption(self.specs, self.image, self.variants or None)

    @property
    def is_image(self) -> bool:
        return self.image


@dataclasses.dataclass(frozen=True)
class ImagePack:
    """`len(images)` independent still images packed into one video-length sample (chapter 07).

    The paper packs independent images into a sequence of the video's length and masks the
    temporal layers (§2.6).  Our packs share one caption: every image is an independent draw
    (handwriting, size, position) of the same caption, so one text embedding conditions the
    whole sample — our choice, so that the model's text conditioning stays per sample.
    """

    images: tuple[Clip, ...]

    @property
    def caption(self) -> str:
        return self.images[0].caption

    @property
    def is_image(self) -> bool:
        return True


def frame_times(frames: int, duration: float) -> np.ndarray:
    """Times (frames,) in reference frames: t_k = k * duration / frames (chapter 04).

    Computed as (k * duration) / frames so that frame 2k of a 2F-frame clip equals frame k of the
    F-frame clip bit for bit.
    """
    return (np.arange(frames) * np.float64(duration)) / frames


def reflect(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold positions into [lo, hi] as a ball bouncing between two walls (triangle wave)."""
    span = hi - lo
    u = np.mod(p - lo, 2.0 * span)
    return lo + span - np.abs(u - span)


def centres(things, times: np.ndarray) -> np.ndarray:
    """Box centres (len(times), len(things), 2) as (x, y) in canvas units (chapter 04)."""
    start = np.array([[t.x, t.y] for t in things], dtype=np.float64)
    velocity = np.array([[t.vx, t.vy] for t in things], dtype=np.float64)
    half = np.array([t.scale for t in things], dtype=np.float64)[:, None] / 2
    return reflect(start + velocity * times[:, None, None], half, 1.0 - half)


def sample_thing(rng: np.random.Generator, spec: C.ObjectSpec, duration: float, split: str) -> Thing:
    """Draw the nuisance parameters of an object with a given spec (chapter 04).

    split picks the digit handwriting pool: "test" uses held-out images (see ``sprites``).
    """
    if spec.kind == "digit":
        sprite = int(rng.choice(sprites.digit_sprites(int(spec.label), split)))
        scale = rng.uniform(*DIGIT_SCALE)
    else:
        sprite = 0
        scale = rng.uniform(*SHAPE_SCALE[spec.size])
    lo, hi = scale / 2, 1.0 - scale / 2
    free = hi - lo
    x, y = rng.uniform(lo, hi, size=2)
    vx = vy = 0.0
    if spec.motion in ("left", "right", "up", "down"):
        travel = rng.uniform(*LINEAR_TRAVEL) * free
        sign = -1.0 if spec.motion in ("left", "up") else 1.0
        start = rng.uniform(lo + travel, hi) if sign < 0 else rng.uniform(lo, hi - travel)
        speed = sign * travel / duration
        if spec.motion in ("left", "right"):
            x, vx = start, speed
        else:
            y, vy = start, speed
    elif spec.motion.startswith("bounce"):
        speed = rng.choice([-1.0, 1.0]) * rng.uniform(*BOUNCE_TRAVEL) * free / duration
        if spec.motion == "bounce_horizontal":
            vx = speed
        else:
            vy = speed
    return Thing(spec, sprite, float(scale), float(x), float(y), float(vx), float(vy))


def sample_clip(rng: np.random.Generator, specs, *, image: bool = False, duration: float = REFERENCE_FRAMES,
                split: str = "all", variants=None) -> Clip:
    """A clip (or still image) showing `specs`, with fresh nuisance parameters (chapter 04)."""
    things = tuple(sample_thing(rng, spec, duration, split) for spec in specs)
    return Clip(things, float(duration), image, tuple(variants) if variants else ())


def clip_for_caption(caption: str, seed: int = 0, *, duration: float = REFERENCE_FRAMES,
                     split: str = "all") -> Clip:
    """A clip that shows exactly what `caption` says (chapter 04): for evaluation and demos.

    Image captions (no motion words) give a Clip with image=True.  The returned clip's caption is
    the canonical phrasing of the same content ("the red digit 7" becomes "a red 7").
    """
    specs, image = C.parse_caption(caption)
    return sample_clip(np.random.default_rng(seed), specs, image=image, duration=duration, split=split)
