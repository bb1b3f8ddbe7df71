"""Sprites of the toy domain: handwritten digits and geometric shapes as alpha textures (chapter 04).

A sprite is a square texture of TEXELS x TEXELS alpha values in [0, 1] that covers the object's box
(side ``scale``, in canvas units).  The renderer (``ivlib.data.render``) places it by exact area
resampling, so one texture serves every output resolution.

- Digits come from scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``,
  1797 images of 8x8 pixels with values 0..16; no download).  The 8x8 image is bilinearly
  upsampled to the texture, with a zero border so strokes fade out at the box edge.
- Shapes (circle, square, triangle) are drawn from signed distances, 4x4 supersampled per texel.
  The image-only "outlined" style keeps a band of OUTLINE_WIDTH inside the outline.

TEXELS = 64 is our choice: objects cover at most ~60% of the canvas, so up to 64x64 frames a
texel is smaller than a pixel; above that the piecewise-constant texture starts to look blocky.
"""

from __future__ import annotations

import functools

import numpy as np

TEXELS = 64
OUTLINE_WIDTH = 0.15  # of the box side; ~1.2 pixels for a big shape at 16x16 (our choice)
DIGIT_GAIN = 1.0 / 12.0  # alpha = clip(value / 12): the digits' 0..16 ink, strokes saturated (our choice)
HELD_OUT_SPRITE_EVERY = 10  # digit images with index % 10 == 0 are reserved for the test split


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float64), data.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def digit_sprites(label: int, split: str) -> np.ndarray:
    """Indices into scikit-learn's digits of the handwritten `label` usable in `split` (chapter 04).

    split "test" gets the held-out handwriting (index % 10 == 0), "train" the rest, "all" every one.
    """
    _, target = _digits()
    index = np.flatnonzero(target == int(label))
    held_out = index % HELD_OUT_SPRITE_EVERY == 0
    if split == "test":
        index = index[held_out]
    elif split == "train":
        index = index[~held_out]
    index.setflags(write=False)
    return index


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in + 2) weights sampling a zero-padded signal at the n_out texel centres."""
    centre = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5 + 1.0  # in padded source pixels
    lower = np.clip(np.floor(centre).astype(int), 0, n_in)
    frac = centre - lower
    weights = np.zeros((n_out, n_in + 2))
    weights[np.arange(n_out), lower] += 1.0 - frac
    weights[np.arange(n_out), lower + 1] += frac
    return weights


@functools.lru_cache(maxsize=4096)
def digit_texture(index: int, texels: int = TEXELS) -> np.ndarray:
    """Alpha texture (texels, texels) float32 of scikit-learn digit image `index` (chapter 04)."""
    images, _ = _digits()
    padded = np.pad(images[index], 1)
    weights = _bilinear_matrix(8, texels)
    alpha = np.clip(weights @ padded @ weights.T * DIGIT_GAIN, 0.0, 1.0).astype(np.float32)
    alpha.setflags(write=False)
    return alpha


def _signed_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance inside the shape's outline (positive inside), box coordinates in [0, 1], y down."""
    if shape == "circle":
        return 0.45 - np.hypot(x - 0.5, y - 0.5)
    if shape == "square":
        return 0.4 - np.maximum(np.abs(x - 0.5), np.abs(y - 0.5))
    if shape == "triangle":  # apex up; min over the three edges' half-plane distances
        corners = np.array([[0.5, 0.08], [0.94, 0.88], [0.06, 0.88]])
        distances = []
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            edge = b - a
            normal = np.array([-edge[1], edge[0]]) / np.hypot(*edge)  # points inside (clockwise order, y down)
            distances.append((x - a[0]) * normal[0] + (y - a[1]) * normal[1])
        return np.min(distances, axis=0)
    raise ValueError(f"shape: expected one of circle, square, triangle, got {shape!r}")


@functools.lru_cache(maxsize=None)
def shape_texture(shape: str, style: str = "plain", texels: int = TEXELS, supersample: int = 4) -> np.ndarray:
    """Alpha texture (texels, texels) float32 of a shape, plain or "outlined" (chapter 04/07)."""
    if style not in ("plain", "outlined"):
        raise ValueError(f"style: expected 'plain' or 'outlined', got {style!r}")
    n = texels * supersample
    coords = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(coords, coords, indexing="ij")
    distance = _signed_distance(shape, x, y)
    inside = distance >= 0
    if style == "outlined":
        inside &= distance < OUTLINE_WIDTH
    alpha = inside.reshape(texels, supersample, texels, supersample).mean(axis=(1, 3)).astype(np.float32)
    alpha.setflags(write=False)
    return alpha
