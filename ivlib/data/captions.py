"""The caption grammar of the toy domain and its vocabulary (chapter 04; image-only words: chapter 07).

A caption names every object of a clip: its identity (a digit or a shape), its colour, for
shapes a size, and — in videos — how it moves.  Two objects are joined by "and":

    "a red 7 moving left"
    "the white digit 3 bouncing up and down"
    "a small blue circle standing still and a green 1 moving right"
    "an outlined big yellow triangle"                       (a still image: no motion words)

The grammar is small and explicit so that a toy text encoder has to read several words (the
identity, the colour, the size, the motion, and for two objects which attribute belongs to which
object) and so that a caption can be parsed back into what it describes (``parse_caption``): the
tests and the video-text metrics rely on that.  Every word that can appear is in ``VOCABULARY``.

Two attributes are *image-only* (``IMAGE_ONLY_WORDS``): the "outlined" style (shapes only) and the
colour "orange".  They occur in still-image captions and never in video captions, so chapter 07 can
measure whether joint image-video training transfers an appearance from images to videos (the
paper's §2.6 observation about image styles).  Which attributes are image-only is our choice.
"""

from __future__ import annotations

import dataclasses
import hashlib

# Colours as RGB in [0, 1].  Saturated primaries and secondaries: distinguishable at 16x16 pixels.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.2, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "cyan": (0.1, 0.9, 0.9),
    "magenta": (0.9, 0.1, 0.9),
    "white": (1.0, 1.0, 1.0),
    "orange": (1.0, 0.5, 0.0),
}
VIDEO_COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "white")
DIGITS = tuple("0123456789")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "big")  # shapes only; a digit's size is not captioned
STYLES = ("plain", "outlined")  # "plain" has no word in the caption
IMAGE_ONLY_WORDS = ("outlined", "orange")

# Motion names and the words that say them.  Image coordinates: "up" is towards row 0.
MOTION_PHRASES: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "bounce_vertical": "bouncing up and down",
    "bounce_horizontal": "bouncing left and right",
    "still": "standing still",
}
MOTIONS = tuple(MOTION_PHRASES)

# Every word a caption can contain, in a fixed order (the toy tokenizer's word list).
VOCABULARY: tuple[str, ...] = (
    "a", "an", "the", "and", "digit",
    *DIGITS,
    *COLOURS,
    *SIZES,
    *SHAPES,
    "outlined",
    "moving", "bouncing", "standing", "still", "left", "right", "up", "down",
)


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """What a caption says about one object (chapter 04).

    kind: "digit" or "shape".  label: "0".."9" or a shape name.  colour: a key of COLOURS.
    size: "small"/"big" for shapes, None for digits.  style: "plain" or "outlined" (shapes).
    motion: a key of MOTION_PHRASES ("still" for images).
    """

    kind: str
    label: str
    colour: str
    size: str | None = None
    style: str = "plain"
    motion: str = "still"

    def __post_init__(self):
        if self.kind == "digit":
            ok = self.label in DIGITS and self.size is None and self.style == "plain"
        elif self.kind == "shape":
            ok = self.label in SHAPES and self.size in SIZES and self.style in STYLES
        else:
            ok = False
        if not ok or self.colour not in COLOURS or self.motion not in MOTION_PHRASES:
            raise ValueError(f"ObjectSpec: not a valid toy object: {self!r}")

    @property
    def image_only(self) -> bool:
        """True when the object carries an attribute that never occurs in videos."""
        return self.style == "outlined" or self.colour in IMAGE_ONLY_WORDS


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def object_phrase(spec: ObjectSpec, variant: int = 0) -> str:
    """The noun phrase of one object (chapter 04), e.g. "a red 7" or "a small outlined blue circle".

    variant 1 says a digit the long way ("the red digit 7"); shapes have one phrasing.
    """
    if spec.kind == "digit":
        if variant == 1:
            return f"the {spec.colour} digit {spec.label}"
        return f"{_article(spec.colour)} {spec.colour} {spec.label}"
    words = [spec.size] + (["outlined"] if spec.style == "outlined" else []) + [spec.colour, spec.label]
    return " ".join([_article(words[0])] + words)


def caption(specs, image: bool = False, variants=None) -> str:
    """The caption of a clip (chapter 04) or, with image=True, of a still image (chapter 07).

    specs: sequence of ObjectSpec (one or two).  variants: per-object phrasing (default all 0).
    Video captions add each object's motion after its noun phrase; image captions have none.
    """
    variants = variants or (0,) * len(specs)
    parts = []
    for spec, variant in zip(specs, variants):
        phrase = object_phrase(spec, variant)
        parts.append(phrase if image else f"{phrase} {MOTION_PHRASES[spec.motion]}")
    return " and ".join(parts)


def caption_key(specs, image: bool = False) -> str:
    """The canonical caption (phrasing variant 0): two captions with the same key mean the same thing."""
    return caption(specs, image)


def in_test_split(key: str, test_fraction: float) -> bool:
    """Deterministic held-out assignment (chapter 04): a stable hash of `key` below test_fraction.

    Uses BLAKE2b, not Python's salted hash(), so the split is the same in every process.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < test_fraction


_MOTION_BY_WORDS = {tuple(phrase.split()): name for name, phrase in MOTION_PHRASES.items()}


def parse_caption(text: str) -> tuple[tuple[ObjectSpec, ...], bool]:
    """Parse a toy caption back into (specs, image) (chapter 04); the inverse of ``caption``.

    image is True when no object has a motion phrase.  Raises ValueError naming the caption and
    the word where it leaves the grammar.
    """
    words = text.split()
    pos = 0
    specs, has_motion = [], []

    def fail(why: str):
        where = " ".join(words[: pos + 1])
        raise ValueError(f"caption {text!r} is not in the toy grammar: {why} (at {where!r})")

    def take(*choices) -> str:
        nonlocal pos
        if pos >= len(words) or words[pos] not in choices:
            fail(f"expected one of {choices}")
        pos += 1
        return words[pos - 1]

    while True:
        take("a", "an", "the")
        size = take(*SIZES) if pos < len(words) and words[pos] in SIZES else None
        style = "plain"
        if pos < len(words) and words[pos] == "outlined":
            style = take("outlined")
        colour = take(*COLOURS)
        if pos < len(words) and words[pos] == "digit":
            take("digit")
            noun = take(*DIGITS)
        else:
            noun = take(*DIGITS, *SHAPES)
        kind = "digit" if noun in DIGITS else "shape"
        motion = "still"
        matched = None
        for phrase_words, name in _MOTION_BY_WORDS.items():
            if tuple(words[pos : pos + len(phrase_words)]) == phrase_words:
                matched, motion = phrase_words, name
        if matched:
            pos += len(matched)
        has_motion.append(matched is not None)
        try:
            specs.append(ObjectSpec(kind, noun, colour, size, style, motion))
        except ValueError:
            fail("attributes do not fit the object (sizes and outlines are for shapes only)")
        if pos == len(words):
            break
        take("and")
    if len(set(has_motion)) != 1:
        raise ValueError(f"caption {text!r}: either every object has a motion (video) or none (image)")
    return tuple(specs), not has_motion[0]
