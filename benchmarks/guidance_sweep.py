"""Guidance sweep of the shipped toy base model (chapter 08; paper §2.6.1–2.6.2).

For each guidance setting — constant weights w from 0 to 6 with static clipping (the toy's default
threshold), oscillating guidance (15 <-> 1 after a constant start) with it, and w = 3 with dynamic
thresholding — the base model makes videos for the same
held-out prompts with the same random keys (so rows differ only by the setting), and each row gets the toy
evaluator's CLIP score, R-precision and FVD (`ivlib.metrics.evaluate`, exactly what
`ivlib.evaluation.evaluate_cascade` computes), the accuracy of digit, colour and motion
(`ivlib.attributes`), and three measures of saturation taken from the videos themselves:

- saturated:  fraction of values with |x| > 0.98 (pixels at the ends of the range);
- bright:     fraction of values with x > 0.98 (the toy background is black, x = -1, so about 80 % of
              ground-truth values are "saturated" at -1; colours driven to full brightness show here);
- mean_pixel: the mean value (ground truth about -0.8: mostly black background).

The ground-truth row scores the held-out videos of the same prompts. One command makes the file the
chapter reads (its text records the command, the settings, the weights' training step and the time):

    python benchmarks/guidance_sweep.py

(--num-videos / --steps / --batch-size / --seed / --out change the defaults.) 64 held-out videos of 32
steps per setting is our choice: R-precision and the attribute accuracies of 16 videos move by 0.1 from
one draw of prompts to the next, more than the effects measured. The six settings take about ten minutes
on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import jax
import numpy as np

from ivlib import metrics
from ivlib.attributes import attribute_accuracy
from ivlib.cascade import Cascade, SamplerSettings
from ivlib.data import make_dataset
from ivlib.weights import read_metadata, shipped_weights_path

OUT = pathlib.Path(__file__).resolve().parents[1] / "ivlib" / "assets" / "weights" / "toy_base.guidance.json"
DATASET, DATASET_OPTIONS = "digits", {"max_objects": 1}  # what the toy base model trained on (chapter 04)
LEVEL = 0.98  # a value beyond this counts as saturated (our choice: 8-bit pixels 251..255 or 0..4)

# (name, guidance w, oscillate (high, low) or None, threshold). Oscillating guidance holds `high` for
# the first quarter of the steps, then alternates high, low (paper §2.6.2 gives 15 and 1 as examples but
# not the number of constant steps: a quarter is our choice, the same as `ivlib.widgets.render_prompt`).
SETTINGS = (
    [(f"w={w:g} static", w, None, "static") for w in (0.0, 1.0, 3.0, 6.0)]
    + [("oscillating 15/1 static", 15.0, (15.0, 1.0), "static")]
    + [("w=3 dynamic", 3.0, None, "dynamic")]
)


def saturation(videos, level=LEVEL) -> dict:
    """Saturation measures of videos (B, F, H, W, C) in [-1, 1] (chapter 08): see the module docstring."""
    videos = np.asarray(videos, np.float32)
    return {"saturated": float(np.mean(np.abs(videos) > level)), "bright": float(np.mean(videos > level)),
            "mean_pixel": float(np.mean(videos))}


def sampler_settings(guidance, oscillate, threshold, num_steps) -> SamplerSettings:
    """The base stage's SamplerSettings for one row of the sweep."""
    osc = None if oscillate is None else (oscillate[0], oscillate[1], num_steps // 4)
    return SamplerSettings(num_steps=num_steps, guidance=guidance, oscillate=osc, threshold=threshold)


def sweep(num_videos=16, num_steps=32, batch_size=32, seed=0, settings=SETTINGS, progress=True, out=OUT) -> dict:
    """Run the sweep on the shipped base model; returns the dict written to the JSON file."""
    start = time.perf_counter()
    weights = shipped_weights_path("toy", "base")
    trained_steps = read_metadata(weights).get("steps")  # read before loading: the file may be refreshed later
    cascade = Cascade.pretrained("toy", stages=["base"])
    stage = cascade.stages[0]
    draw = lambda s: make_dataset(DATASET, frames=stage.frames, height=stage.height, width=stage.width,
                                  split="test", seed=s, **DATASET_OPTIONS).batch(0, num_videos)
    truth, other = draw(seed), draw(seed + 1)
    prompts = truth["caption"]
    evaluator = metrics.load_evaluator()
    rows = []
    for name, guidance, oscillate, threshold in settings:
        t0 = time.perf_counter()
        s = sampler_settings(guidance, oscillate, threshold, num_steps)
        videos = cascade.sample_final(prompts, jax.random.PRNGKey(seed), s, batch_size)  # evaluate_cascade's keys
        seconds = time.perf_counter() - t0
        row = {"name": name, "guidance": guidance, "oscillate": None if s.oscillate is None else list(s.oscillate),
               "threshold": threshold, **metrics.evaluate(videos, prompts, other["video"], evaluator, seed=seed),
               **saturation(videos), "attributes": attribute_accuracy(videos, prompts), "sampling_seconds": seconds}
        rows.append(row)
        if progress:
            print(f"{name:>26}: CLIP {row['clip_score']:6.2f}  R-prec {row['r_precision']:.3f}  FVD {row['fvd']:7.2f}  "
                  f"saturated {row['saturated']:.3f}  bright {row['bright']:.4f}  mean {row['mean_pixel']:+.3f}  "
                  f"{row['attributes']}  ({seconds:.0f} s)", flush=True)
    ground_truth = {**metrics.evaluate(truth["video"], prompts, other["video"], evaluator, seed=seed),
                    **saturation(truth["video"]), "attributes": attribute_accuracy(truth["video"], prompts)}
    return {
        "command": command(num_videos, num_steps, batch_size, seed, out),
        "what": "guidance sweep of the shipped toy base model on held-out prompts (chapter 08)",
        "weights": {"file": f"ivlib/assets/weights/{weights.name}", "steps": trained_steps},
        "settings": {"num_videos": num_videos, "num_steps": num_steps, "sampler": SamplerSettings().sampler,
                     "gamma": SamplerSettings().gamma,
                     "batch_size": batch_size, "seed": seed, "dataset": DATASET, "dataset_options": DATASET_OPTIONS,
                     "split": "test", "saturation_level": LEVEL,
                     "oscillate_constant_steps": num_steps // 4},
        "rows": rows,
        "ground_truth": ground_truth,
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.machine()}, {jax.devices()[0].platform}, {jax.device_count()} device(s)",
    }


def command(num_videos, num_steps, batch_size, seed, out=OUT) -> str:
    """The command line that reproduces a sweep (written into its JSON)."""
    where = "" if pathlib.Path(out).resolve() == OUT else f" --out {out}"
    return (f"python benchmarks/guidance_sweep.py --num-videos {num_videos} --steps {num_steps} "
            f"--batch-size {batch_size} --seed {seed}{where}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-videos", type=int, default=64, help="held-out prompts per setting")
    parser.add_argument("--steps", type=int, default=32, help="sampling steps of the base model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT), help="where to write the JSON (default: the file chapter 08 reads)")
    args = parser.parse_args(argv)
    if args.num_videos < 2:
        parser.error("--num-videos must be at least 2 (FVD needs a covariance)")
    result = sweep(args.num_videos, args.steps, args.batch_size, args.seed, out=args.out)
    gt = result["ground_truth"]
    print(f"{'ground truth':>26}: CLIP {gt['clip_score']:6.2f}  R-prec {gt['r_precision']:.3f}  FVD {gt['fvd']:7.2f}  "
          f"saturated {gt['saturated']:.3f}  bright {gt['bright']:.4f}  mean {gt['mean_pixel']:+.3f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['seconds']:.0f} s in all; wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
