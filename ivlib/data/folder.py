"""A folder of the user's own captioned videos as a dataset (chapter 04).

The captions file lists one video per row, as CSV with a header containing ``file`` and
``caption``, or as JSONL lines ``{"file": "clip.mp4", "caption": "a dog running"}``.  File names are
relative to the folder (absolute paths work too).  Videos are read with mediapy (its ffmpeg comes
from the ``imageio-ffmpeg`` package, see ``ensure_ffmpeg``), centre-cropped to the target aspect
ratio, resized with antialiased bilinear resampling and cached in memory per resolution; a sample
is `frames` frames `stride` apart from a start frame drawn deterministically from (seed, index).

Every problem names the file: a missing captions file or video (FileNotFoundError), a captions
file that is not valid CSV/JSONL or has an empty caption (ValueError with the line number), and
a video that cannot be decoded or is too short (ValueError).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import numpy as np

from ivlib.data import captions as C
from ivlib.data.base import Dataset
from ivlib.data.transforms import center_crop, resize_video
from ivlib.media import ensure_ffmpeg

def read_captions(path: pathlib.Path, captions_file) -> list[tuple[pathlib.Path, str]]:
    """[(video path, caption)] from a CSV or JSONL captions file (chapter 04); paths resolved against `path`."""
    captions_file = pathlib.Path(captions_file)
    if not captions_file.is_file() and (path / captions_file).is_file():
        captions_file = path / captions_file
    if not captions_file.is_file():
        raise FileNotFoundError(f"captions file {str(captions_file)!r} not found")
    rows = []  # (line number, file, caption)
    text = captions_file.read_text(encoding="utf-8-sig")  # tolerate a spreadsheet's BOM
    if captions_file.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{captions_file}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(entry, dict) or "file" not in entry or "caption" not in entry:
                raise ValueError(f'{captions_file}:{number}: expected {{"file": ..., "caption": ...}}, got {line!r}')
            rows.append((number, entry["file"], entry["caption"]))
    else:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not {"file", "caption"} <= set(reader.fieldnames):
            raise ValueError(f"{captions_file}: expected a CSV header with columns 'file' and 'caption', "
                             f"got {reader.fieldnames}")
        for row in reader:
            rows.append((reader.line_num, row["file"], row["caption"]))
    entries = []
    for number, file, caption in rows:
        if not isinstance(file, str) or not file.strip():
            raise ValueError(f"{captions_file}:{number}: empty or missing 'file'")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{captions_file}:{number}: empty or missing caption for {file!r}")
        video = pathlib.Path(file.strip())
        video = video if video.is_absolute() else path / video
        if not video.is_file():
            raise FileNotFoundError(f"video {str(video)!r} listed in {captions_file}:{number} not found")
        entries.append((video, " ".join(caption.split())))
    if not entries:
        raise ValueError(f"{captions_file}: no videos listed")
    return entries


@dataclasses.dataclass(frozen=True)
class FolderClip:
    """Sample parameters of a folder video: which file, its caption, and which frames (chapter 04)."""

    file: str
    caption: str
    start: int
    stride: int
    frames: int

    @property
    def is_image(self) -> bool:
        return False


class FolderDataset(Dataset):
    """The user's captioned videos (chapter 04); see the module docstring.

    split: "all" (default for a user's folder), or "train"/"test" by a stable hash of the file
    name (test_fraction of the files).  stride: source frames between samples; fps: if given,
    the stride is chosen per video as round(video fps / fps).  cache: keep decoded, resized
    videos in memory.
    """

    name = "folder"

    def __init__(self, path, captions_file=None, *, frames: int = 8, height: int = 16, width: int = 16,
                 split: str = "all", seed: int = 0, batch_size: int = 32, stride: int = 1,
                 fps: float | None = None, test_fraction: float = 0.1, cache: bool = True):
        super().__init__(frames=frames, height=height, width=width, split=split, seed=seed,
                         batch_size=batch_size)
        self.path = pathlib.Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"path: video folder {str(self.path)!r} not found")
        if captions_file is None:
            found = [self.path / n for n in ("captions.csv", "captions.jsonl") if (self.path / n).is_file()]
            if not found:
                raise FileNotFoundError(f"captions: no captions.csv or captions.jsonl in {str(self.path)!r}; "
                                        "pass captions=<file>")
            captions_file = found[0]
        if not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride: expected a positive integer, got {stride!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps: expected a positive frame rate, got {fps!r}")
        entries = read_captions(self.path, captions_file)
        if split != "all":
            entries = [e for e in entries if C.in_test_split(e[0].name, test_fraction) == (split == "test")]
            if not entries:
                raise ValueError(f"split: no video of {str(captions_file)!r} falls in split {split!r} "
                                 f"(test_fraction={test_fraction}); use split='all'")
        self.entries = entries
        self.stride, self.fps, self.cache = int(stride), fps, cache
        self._videos: dict = {}

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, file, height: int, width: int) -> tuple[np.ndarray, float]:
        """Whole video `file` as float32 (F, height, width, 3) in [-1, 1], and its fps."""
        key = (str(file), height, width)
        if key in self._videos:
            return self._videos[key]
        import mediapy

        ensure_ffmpeg()
        try:
            raw = mediapy.read_video(str(file))
            fps = float(raw.metadata.fps) if raw.metadata is not None else 0.0
            raw = np.asarray(raw)
        except Exception as error:  # mediapy/ffmpeg raise many kinds
            raise ValueError(f"video {str(file)!r} could not be read: {error}") from error
        if raw.ndim != 4 or raw.shape[0] == 0 or raw.shape[-1] != 3:
            raise ValueError(f"video {str(file)!r}: expected RGB frames (F, H, W, 3), got shape {raw.shape}")
        video = raw.astype(np.float32) / 127.5 - 1.0
        video = resize_video(center_crop(video, width / height), height, width)
        if self.cache:
            self._videos[key] = (video, fps)
        return video, fps

    def params(self, i: int) -> FolderClip:
        """Sample i: epoch i // len shuffles the files by seed; the start frame is random per i."""
        n = len(self.entries)
        order = np.random.default_rng([self.seed, i // n]).permutation(n)
        file, caption = self.entries[order[i % n]]
        video, fps = self.load(file, self.height, self.width)
        stride = self.stride if self.fps is None or fps <= 0 else max(1, round(fps / self.fps))
        span = self.frames * stride
        if len(video) < span:
            raise ValueError(f"video {str(file)!r} has {len(video)} frames; {self.frames} frames with stride "
                             f"{stride} need {span}")
        start = int(np.random.default_rng([self.seed, 1, int(i)]).integers(len(video) - span + 1))
        return FolderClip(str(file), caption, start, stride, self.frames)

    def render(self, params, frames: int, height: int, width: int) -> np.ndarray:
        """The same time spans at another resolution / frame count: (B, frames, height, width, 3).

        A clip of f frames with stride s can be shown with `frames` frames when frames divides f*s.
        """
        out = []
        for p in params:
            if (p.frames * p.stride) % frames:
                raise ValueError(f"frames: {p.file!r} was sampled as {p.frames} frames with stride {p.stride}; "
                                 f"it can be rendered with a divisor of {p.frames * p.stride} frames, got {frames}")
            stride = p.frames * p.stride // frames
            video, _ = self.load(p.file, height, width)
            out.append(video[p.start : p.start + frames * stride : stride])
        return np.stack(out)


def load_video_folder(path, captions_file=None, **options) -> FolderDataset:
    """The user's captioned video folder as a dataset (chapter 04). options: see FolderDataset."""
    return FolderDataset(path, captions_file, **options)
