"""Captioned toy datasets, deterministic and batched, with a held-out split (chapter 04; images: chapter 07).

Every sample is a pure function of (dataset name, seed, split, sample index): sample i draws its
parameters from ``np.random.default_rng([seed, name_code, split_code, i])`` and ``batch(index, B)``
holds samples index*B .. index*B + B - 1.  So a batch does not depend on what was drawn before, a
run can resume at any step, and any sample can be re-rendered at another resolution or frame count
(``Dataset.render``) for the cascade's (low-res, high-res) pairs.

Held-out split (our choice; ``holdout="caption"``, the default): a stable hash of the canonical
caption sends ~test_fraction of all captions to "test"; train never shows a test caption, so test
prompts measure generalisation to new combinations of known words.  Test samples also use held-out
handwriting (scikit-learn digit images with index % 10 == 0).  ``holdout="sample"`` keeps one
caption distribution and separates the splits only by their random streams and handwriting.
split="all" draws from everything.
"""

from __future__ import annotations

import zlib

import numpy as np

from ivlib.data import captions as C
from ivlib.data import clips
from ivlib.data.base import SPLITS, Dataset
from ivlib.data.folder import load_video_folder
from ivlib.data.render import render as render_params

class ToyDataset(Dataset):
    """Moving digits and shapes (chapter 04), still images packed to video length (chapter 07).

    kinds: object kinds to draw, ("digit",), ("shape",) or both (each object picks one).
    image_fraction: probability that a sample is an ImagePack of `frames` still images (1.0 for
    the "images" set); image_only_p: probability that an object of an image carries an image-only
    attribute (orange, or for shapes also/instead the outlined style).  max_objects: 1 or 2;
    two_objects_p: probability of two objects when max_objects is 2.  duration: clip length in
    reference frames.  test_fraction / holdout: see the module docstring.
    """

    def __init__(self, name: str = "digits+shapes", *, frames: int, height: int, width: int,
                 split: str = "train", seed: int = 0, batch_size: int = 32, kinds=("digit", "shape"),
                 image_fraction: float = 0.0, image_only_p: float = 0.5, max_objects: int = 2,
                 two_objects_p: float = 0.5, duration: float = clips.REFERENCE_FRAMES,
                 test_fraction: float = 0.1, holdout: str = "caption"):
        super().__init__(frames=frames, height=height, width=width, split=split, seed=seed,
                         batch_size=batch_size)
        kinds = tuple(kinds)
        if not kinds or any(k not in ("digit", "shape") for k in kinds):
            raise ValueError(f"kinds: expected a non-empty subset of ('digit', 'shape'), got {kinds!r}")
        if max_objects not in (1, 2):
            raise ValueError(f"max_objects: expected 1 or 2, got {max_objects!r}")
        for option, value in (("image_fraction", image_fraction), ("image_only_p", image_only_p),
                              ("two_objects_p", two_objects_p)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{option}: expected a probability in [0, 1], got {value!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
        if holdout not in ("caption", "sample"):
            raise ValueError(f"holdout: expected 'caption' or 'sample', got {holdout!r}")
        if not duration > 0:
            raise ValueError(f"duration: expected a positive number of reference frames, got {duration!r}")
        self.name, self.kinds = name, kinds
        self.image_fraction, self.image_only_p = float(image_fraction), float(image_only_p)
        self.max_objects, self.two_objects_p = max_objects, float(two_objects_p)
        self.duration, self.test_fraction, self.holdout = float(duration), float(test_fraction), holdout
        self._stream = [self.seed, zlib.crc32(name.encode()), SPLITS.index(split)]

    def _sample_spec(self, rng: np.random.Generator, image: bool) -> C.ObjectSpec:
        kind = self.kinds[rng.integers(len(self.kinds))]
        colour = C.VIDEO_COLOURS[rng.integers(len(C.VIDEO_COLOURS))]
        style, size = "plain", None
        if kind == "shape":
            size = C.SIZES[rng.integers(len(C.SIZES))]
        if image and rng.random() < self.image_only_p:  # one of the attributes videos never show
            choice = rng.integers(3) if kind == "shape" else 0
            colour = "orange" if choice in (0, 2) else colour
            style = "outlined" if choice in (1, 2) else style
        label = C.DIGITS[rng.integers(10)] if kind == "digit" else C.SHAPES[rng.integers(len(C.SHAPES))]
        motion = "still" if image else C.MOTIONS[rng.integers(len(C.MOTIONS))]
        return C.ObjectSpec(kind, label, colour, size, style, motion)

    def _in_split(self, key: str) -> bool:
        if self.split == "all" or self.holdout == "sample":
            return True
        return C.in_test_split(key, self.test_fraction) == (self.split == "test")

    def params(self, i: int):
        """Parameters of sample i: a ``Clip`` (video) or an ``ImagePack`` (chapter 04/07)."""
        rng = np.random.default_rng(self._stream + [int(i)])
        image = rng.random() < self.image_fraction
        for _ in range(10_000):  # rejection: draw captions until one belongs to this split
            count = 2 if self.max_objects == 2 and rng.random() < self.two_objects_p else 1
            specs = tuple(self._sample_spec(rng, image) for _ in range(count))
            if self._in_split(C.caption_key(specs, image)):
                break
        else:
            raise ValueError(f"split: no caption of {self.name!r} falls in split {self.split!r}")
        variants = tuple(int(rng.integers(2)) if s.kind == "digit" else 0 for s in specs)
        sprite_split = "all" if self.split == "all" else self.split
        if not image:
            return clips.sample_clip(rng, specs, duration=self.duration, split=sprite_split, variants=variants)
        return clips.ImagePack(tuple(
            clips.sample_clip(rng, specs, image=True, duration=self.duration, split=sprite_split,
                              variants=variants)
            for _ in range(self.frames)))

    def render(self, params, frames: int, height: int, width: int) -> np.ndarray:
        """The same samples at another resolution / frame count (chapter 05): (B, frames, height, width, 3)."""
        return render_params(params, frames, height, width)


_TOY = {
    "digits": dict(kinds=("digit",)),
    "shapes": dict(kinds=("shape",)),
    "digits+shapes": dict(kinds=("digit", "shape")),
    "images": dict(kinds=("digit", "shape"), image_fraction=1.0),
    "joint": dict(kinds=("digit", "shape"), image_fraction=0.25),
}
DATASETS = tuple(_TOY) + ("folder",)
_TOY_OPTIONS = ("batch_size", "kinds", "image_fraction", "image_only_p", "max_objects", "two_objects_p",
                "duration", "test_fraction", "holdout")


def make_dataset(name: str, *, frames: int, height: int, width: int, split: str = "train", seed: int = 0,
                 **options) -> Dataset:
    """A dataset by name (chapter 04): "digits", "shapes", "digits+shapes", "images", "joint", "folder".

    "images" packs `frames` still images per sample (is_image=True, chapter 07); "joint" mixes
    videos with a fraction (image_fraction, default 0.25) of image packs; "folder" reads the user's
    videos and needs path= and captions= (see ``load_video_folder``).  options: see ToyDataset /
    FolderDataset.  Unknown names or options raise ValueError listing the valid ones.
    """
    if name == "folder":
        if "path" not in options:
            raise ValueError("make_dataset('folder'): expected path=<folder of videos> (and captions=<csv/jsonl>)")
        path = options.pop("path")
        captions_file = options.pop("captions", None)
        return load_video_folder(path, captions_file, frames=frames, height=height, width=width, split=split,
                                 seed=seed, **options)
    if name not in _TOY:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {DATASETS}")
    unknown = sorted(set(options) - set(_TOY_OPTIONS))
    if unknown:
        raise ValueError(f"make_dataset({name!r}): unknown options {unknown}; expected some of {_TOY_OPTIONS}")
    return ToyDataset(name, frames=frames, height=height, width=width, split=split, seed=seed,
                      **{**_TOY[name], **options})
