"""Data for ivlib: captioned toy videos and images generated on the fly, and the user's own videos.

Chapter 04 builds the toy domain (moving handwritten digits from scikit-learn's bundled set and
moving shapes, captioned by a small grammar) and the transforms that bring data to a stage's
resolution and frame count; chapter 07 adds still images packed to video length for joint
image-video training, with attributes ("outlined", "orange") that only images show.

    >>> ds = make_dataset("digits", frames=8, height=16, width=16)
    >>> batch = ds.batch(0, 4)      # {"video": (4, 8, 16, 16, 3) float32 in [-1, 1], "caption": [...], ...}
    >>> hi_res = ds.render(batch["params"], 16, 32, 32)   # the same clips, 16 frames at 32x32

Nothing is downloaded; every batch is a pure function of (name, seed, split, index).
"""

from ivlib.data.captions import (
    COLOURS,
    IMAGE_ONLY_WORDS,
    MOTIONS,
    VOCABULARY,
    ObjectSpec,
    caption,
    parse_caption,
)
from ivlib.data.clips import REFERENCE_FRAMES, Clip, ImagePack, Thing, clip_for_caption
from ivlib.data.base import Dataset
from ivlib.data.dataset import DATASETS, ToyDataset, make_dataset
from ivlib.data.folder import FolderClip, FolderDataset, load_video_folder
from ivlib.media import ensure_ffmpeg  # kept here too: the folder reader needs it (tests, chapter 04)
from ivlib.data.render import render
from ivlib.data.transforms import center_crop, resize_video, skip_frames

__all__ = [
    "COLOURS", "IMAGE_ONLY_WORDS", "MOTIONS", "VOCABULARY", "ObjectSpec", "caption", "parse_caption",
    "REFERENCE_FRAMES", "Clip", "ImagePack", "Thing", "clip_for_caption",
    "DATASETS", "Dataset", "ToyDataset", "make_dataset",
    "FolderClip", "FolderDataset", "ensure_ffmpeg", "load_video_folder",
    "render", "center_crop", "resize_video", "skip_frames",
]
