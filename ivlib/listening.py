"""Does a denoiser read a word of its prompt? The loss gap when one attribute of the prompt is swapped (chapter 04).

Sampling and scoring videos (`ivlib.attributes`) says *what* a model draws; this asks *why*, and costs a
few forward passes instead of a sampling run. Take held-out clips, noise them at a log-SNR λ, and compare
the model's denoising loss with the true caption and with the caption whose digit (or colour, or motion)
is replaced by another one, everything else kept:

    gap(attribute, λ) = E[ loss(swapped caption) ] − E[ loss(true caption) ]

A model that reads the word predicts the clip better from the true caption: the gap is positive, and the
larger it is, the more that word steers the prediction. A model that ignores the word has a gap of zero
whatever it draws. The same noise and the same clips are used for both captions, so the gap is exact for
these clips, not a difference of two noisy estimates. The swaps are fixed: digit d -> d + 5 (mod 10), a
colour -> the colour three places further in `VIDEO_COLOURS`, a motion -> the motion three places further
in `MOTIONS` (our choices: each swap changes the word and nothing else).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ivlib.data import captions as C
from ivlib.diffusion import diffuse, prediction_loss

SWAPS = ("digit", "colour", "motion")
LOGSNRS = (-4.0, -2.0, 0.0, 2.0)  # where a clip's layout and shape are decided (our choice)


def swap_caption(caption: str, attribute: str) -> str:
    """The one-digit video caption `caption` with its `attribute` ("digit", "colour" or "motion") replaced."""
    if attribute not in SWAPS:
        raise ValueError(f"attribute: expected one of {SWAPS}, got {attribute!r}")
    specs, image = C.parse_caption(caption)
    if len(specs) != 1 or image or specs[0].kind != "digit":
        raise ValueError(f"caption: expected a one-digit video caption such as 'a red 7 moving left', got {caption!r}")
    spec = specs[0]
    variant = 1 if caption.split()[0] == "the" else 0
    shift = lambda options, value, k: options[(options.index(value) + k) % len(options)]
    new = {"digit": dict(label=shift(C.DIGITS, spec.label, 5)),
           "colour": dict(colour=shift(C.VIDEO_COLOURS, spec.colour, 3)),
           "motion": dict(motion=shift(C.MOTIONS, spec.motion, 3))}[attribute]
    return C.caption([dataclasses.replace(spec, **new)], variants=(variant,))


# Straight-line motions and their opposite / perpendicular directions (image coordinates: "up" is towards row 0).
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
PERPENDICULAR = {"left": "up", "right": "down", "up": "left", "down": "right"}


def swap_direction(caption: str, kind: str) -> str:
    """The one-digit caption `caption` of a straight-line motion with its direction reversed (kind "opposite":
    left <-> right, up <-> down) or turned a quarter (kind "perpendicular": left -> up, up -> left, ...)."""
    table = {"opposite": OPPOSITE, "perpendicular": PERPENDICULAR}.get(kind)
    if table is None:
        raise ValueError(f"kind: expected 'opposite' or 'perpendicular', got {kind!r}")
    specs, image = C.parse_caption(caption)
    if len(specs) != 1 or image or specs[0].motion not in table:
        raise ValueError(f"caption: expected a one-object caption moving left, right, up or down, got {caption!r}")
    variant = 1 if caption.split()[0] == "the" else 0
    return C.caption([dataclasses.replace(specs[0], motion=table[specs[0].motion])], variants=(variant,))


def _gaps(model, embed, videos, captions: dict, logsnrs, target, seed) -> dict:
    """{"true": {λ: loss}, name: {λ: loss(captions[name]) − loss(true)}} with the same clips and noise for all."""
    videos = jnp.asarray(videos)
    noise = jax.random.normal(jax.random.PRNGKey(seed), videos.shape)
    text = {name: embed(c) for name, c in captions.items()}
    out = {name: {} for name in captions}
    for lam in logsnrs:
        logsnr = jnp.full((len(videos),), float(lam))
        z = diffuse(videos, logsnr, noise)
        for name, (emb, mask) in text.items():
            out[name][float(lam)] = float(jnp.mean(prediction_loss(model(z, logsnr, emb, mask), videos, noise, logsnr,
                                                                    target)))
    for name in captions:
        if name != "true":
            out[name] = {lam: out[name][lam] - out["true"][lam] for lam in out["true"]}
    return out


def loss_gaps(model, embed, videos, prompts, *, logsnrs=LOGSNRS, target="v", seed=0) -> dict:
    """{"true": {λ: loss}, "digit" / "colour" / "motion": {λ: gap}} for one model (chapter 04).

    model: a `VideoUNet` (or any callable with its signature); embed: prompts -> (text, mask);
    videos: clean clips (B, F, H, W, 3) in [-1, 1]; prompts: their B one-digit video captions.
    Losses are the mean of `prediction_loss` for the model's `target` over the clips at each λ.
    """
    captions = {"true": list(prompts), **{a: [swap_caption(p, a) for p in prompts] for a in SWAPS}}
    return _gaps(model, embed, videos, captions, logsnrs, target, seed)


def direction_gaps(model, embed, videos, prompts, *, logsnrs=LOGSNRS, target="v", seed=0) -> dict:
    """{"true": {λ: loss}, "opposite" / "perpendicular": {λ: gap}} on clips moving in a straight line (chapter 04).

    Does the model read *which way* a digit moves, or only along which axis? A model that knows the axis but
    not the sign has a large perpendicular gap and an opposite gap near zero. prompts: one-object captions
    moving left, right, up or down (`straight_line_clips`); the rest as in `loss_gaps`.
    """
    captions = {"true": list(prompts), **{k: [swap_direction(p, k) for p in prompts]
                                          for k in ("opposite", "perpendicular")}}
    return _gaps(model, embed, videos, captions, logsnrs, target, seed)


def straight_line_clips(num_videos=64, frames=8, size=16, seed=0):
    """(videos, captions): the first `num_videos` held-out one-digit clips that move left, right, up or down."""
    from ivlib.data import make_dataset

    dataset = make_dataset("digits", frames=frames, height=size, width=size, split="test", seed=seed, max_objects=1)
    videos, prompts, index = [], [], 0
    while len(prompts) < num_videos:
        batch = dataset.batch(index, 64)
        index += 1
        for video, caption in zip(batch["video"], batch["caption"]):
            if C.parse_caption(caption)[0][0].motion in OPPOSITE and len(prompts) < num_videos:
                videos.append(video)
                prompts.append(caption)
    return np.stack(videos), prompts


def held_out_clips(num_videos=64, frames=8, size=16, seed=0):
    """(videos, captions): `num_videos` held-out one-digit clips, as `ivlib eval` draws them."""
    from ivlib.data import make_dataset

    batch = make_dataset("digits", frames=frames, height=size, width=size, split="test", seed=seed,
                         max_objects=1).batch(0, num_videos)
    return np.asarray(batch["video"]), batch["caption"]
