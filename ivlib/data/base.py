"""The dataset base class: a deterministic, indexable stream of captioned samples (chapter 04).

Toy datasets (`ivlib.data.dataset`) and the user's video folders (`ivlib.data.folder`) both derive
from `Dataset`: batch k is a pure function of (dataset, seed, split, k), so training resumes exactly.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "test", "all")


def check_shape(frames, height, width):
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")


class Dataset:
    """Base class: a deterministic, indexable stream of captioned samples (chapter 04).

    Subclasses implement ``params(i)`` (the parameters of sample i, with ``.caption`` and
    ``.is_image``) and ``render(params, frames, height, width)``.
    """

    name = "dataset"

    def __init__(self, *, frames: int, height: int, width: int, split: str = "train", seed: int = 0,
                 batch_size: int = 32):
        check_shape(frames, height, width)
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.frames, self.height, self.width = int(frames), int(height), int(width)
        self.split, self.seed, self.batch_size = split, int(seed), int(batch_size)

    def params(self, i: int):
        raise NotImplementedError

    def render(self, params, frames: int, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    def batch(self, index: int, batch_size: int | None = None) -> dict:
        """Batch `index` (chapter 04): samples index*B .. index*B + B - 1, B = batch_size.

        Returns {"video": float32 (B, frames, height, width, 3) in [-1, 1], "caption": list of B str,
        "is_image": bool (B,), "params": list of B parameter objects (pass to ``render``)}.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        if not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"index: expected a non-negative integer, got {index!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        params = [self.params(index * batch_size + j) for j in range(batch_size)]
        return {
            "video": self.render(params, self.frames, self.height, self.width),
            "caption": [p.caption for p in params],
            "is_image": np.array([p.is_image for p in params], dtype=np.bool_),
            "params": params,
        }

    def __getitem__(self, i: int) -> dict:
        """Sample i alone: the batch dict of a one-sample batch, without the batch axis."""
        p = self.params(i)
        return {"video": self.render([p], self.frames, self.height, self.width)[0], "caption": p.caption,
                "is_image": bool(p.is_image), "params": p}

    def __iter__(self):
        """Endless batches 0, 1, 2, ... of size self.batch_size."""
        index = 0
        while True:
            yield self.batch(index)
            index += 1

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, frames={self.frames}, height={self.height}, "
                f"width={self.width}, split={self.split!r}, seed={self.seed})")
