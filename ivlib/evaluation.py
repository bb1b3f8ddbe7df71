"""Evaluate a cascade the way Table 1 of the paper does, on the toy domain (chapters 04, 05, 08).

Held-out prompts (the test split: captions never seen in training) go through the cascade; its
videos get the toy evaluator's frame-averaged CLIP score, CLIP R-precision and FVD against an
independent draw of ground-truth test videos; the ground-truth videos of the same prompts get the
same metrics — the ground-truth row printed beside every model row. For one-digit prompts both rows
also get the accuracy of each attribute (digit, colour, motion; `ivlib.attributes`).
"""

from __future__ import annotations

import time

import jax

from ivlib.attributes import attribute_accuracy, one_digit_prompts
from ivlib.metrics import evaluate, load_evaluator


def evaluate_cascade(cascade, *, dataset="digits", dataset_options=None, num_videos=128, batch_size=32,
                     settings=None, seed=0, evaluator=None, allow_unknown_words=False, keep_videos=False) -> dict:
    """{"model": row, "ground_truth": row, "seconds_per_video": s, ...} for `num_videos` held-out prompts.
    seconds_per_video includes compiling the samplers; seconds_per_video_compiled leaves it out (it times the
    full batches after the first, so it needs num_videos >= 2 * batch_size).

    Ground truth is drawn from `dataset` (split "test", at the cascade's output shape) with `seed`;
    FVD of both rows is measured against a second, independent draw (seed + 1) of as many videos.
    Captions with words the cascade's toy text encoder does not know (a folder of the user's videos, say)
    raise a ValueError naming them before anything is sampled, unless allow_unknown_words. keep_videos: the
    result also holds the sampled "videos" and their "prompts" (for measures of your own, chapter 07).
    """
    from ivlib.data import make_dataset

    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 2:
        raise ValueError(f"num_videos must be an integer of at least 2 (FVD needs a covariance), got {num_videos!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    last = cascade.stages[-1]
    draw = lambda s: make_dataset(dataset, frames=last.frames, height=last.height, width=last.width, split="test",
                                  seed=s, **(dataset_options or {})).batch(0, num_videos)
    truth, other = draw(seed), draw(seed + 1)
    prompts = truth["caption"]
    if not allow_unknown_words:
        cascade.check_prompts(prompts)
    evaluator = evaluator or load_evaluator()
    start, batch_seconds = time.perf_counter(), []
    videos = cascade.sample_final(prompts, jax.random.PRNGKey(seed), settings, batch_size, allow_unknown_words=True,
                                  seconds=batch_seconds)
    seconds = time.perf_counter() - start
    full = [t for t, i in zip(batch_seconds[1:], range(batch_size, num_videos, batch_size)) if i + batch_size <= num_videos]
    model, ground_truth = (evaluate(v, prompts, other["video"], evaluator, seed=seed) for v in (videos, truth["video"]))
    if one_digit_prompts(prompts):  # what each video gets right: digit, colour, motion (chapter 04)
        model["attributes"] = attribute_accuracy(videos, prompts)
        ground_truth["attributes"] = attribute_accuracy(truth["video"], prompts)
    kept = {"videos": videos, "prompts": list(prompts)} if keep_videos else {}
    return {
        **kept,
        "model": model,
        "ground_truth": ground_truth,
        "seconds_per_video": seconds / num_videos,
        # without compilation: the full batches after the first (None if there are none)
        "seconds_per_video_compiled": sum(full) / (len(full) * batch_size) if full else None,
        "num_videos": num_videos, "dataset": dataset, "dataset_options": dataset_options or {},
        "stages": [s.name for s in cascade.stages], "seed": seed,
    }


def best_guidance(rows, threshold="static", fvd_tolerance=0.1) -> float:
    """The guidance weight to use by default, from the rows of a guidance sweep (chapter 08).

    Among constant weights with `threshold`: the highest mean accuracy of digit, colour and motion (how well
    the videos follow their prompts, judged by `ivlib.attributes`) whose FVD stays within `fvd_tolerance` of
    the lowest FVD — alignment bought without losing fidelity, the paper's trade-off (§2.6). Ties go to the
    smaller weight.
    """
    constant = [r for r in rows if r["threshold"] == threshold and r.get("oscillate") is None]
    if not constant:
        raise ValueError(f"rows: no constant-weight rows with threshold {threshold!r}")
    lowest = min(r["fvd"] for r in constant)
    fit = [r for r in constant if r["fvd"] <= (1.0 + fvd_tolerance) * lowest]
    score = lambda r: sum(r["attributes"].values()) / len(r["attributes"])
    return max(sorted(fit, key=lambda r: r["guidance"]), key=score)["guidance"]
