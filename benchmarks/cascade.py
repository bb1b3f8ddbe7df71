"""Seconds per video of the shipped toy cascade, whole and per stage, compile time separate (chapter 05).

    python benchmarks/cascade.py [--config toy] [--batch-size 1 8] [--steps 32] [--sr-steps 32] [--repeats 3]

For each batch size, every stage is sampled once to compile (reported as compile_s) and then `repeats`
more times; the median wall time of a call, divided by the batch size, is the stage's s/video. The
sampler settings are `ivlib generate`'s defaults (the same `cascade.stage_settings`), text embeddings
are computed once and cached, as in the library. Prints one JSON line per stage and batch size and one
for the whole cascade.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from ivlib.cascade import Cascade, SamplerSettings, sample_stage, stage_settings

PROMPTS = ["a red 3 moving left", "a blue 7 moving up", "a green 1 moving down and right", "a white 0 moving right"]


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def bench(cascade, batch_size, settings, repeats):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]
    rows, video, total = [], None, 0.0
    for i, (stage, model_def, params) in enumerate(zip(cascade.stages, cascade.model_defs, cascade.params)):
        s = settings[stage.name]
        text, mask = cascade.embed(prompts, stage.name)  # each stage reads the encoder it was trained on

        def run(seed, low_res=video):
            return sample_stage(stage, model_def, params, jax.random.PRNGKey(seed), text=text, text_mask=mask,
                                low_res=low_res, batch_size=batch_size, **s.sample_kwargs())

        video, compile_s = _timed(lambda: run(0))
        times = [_timed(lambda: run(r + 1))[1] for r in range(repeats)]
        per_video = statistics.median(times) / batch_size
        total += per_video
        rows.append({"stage": stage.name, "batch_size": batch_size, "shape": list(np.shape(video)[1:4]),
                     "num_steps": s.num_steps, "s_per_video": round(per_video, 4),
                     "steps_per_s": round(s.num_steps / statistics.median(times), 2),
                     "first_call_s": round(compile_s, 2)})
    rows.append({"stage": "cascade", "batch_size": batch_size, "shape": list(np.shape(video)[1:4]),
                 "s_per_video": round(total, 4), "first_call_s": round(sum(r["first_call_s"] for r in rows), 2)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="toy")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=32, help="base-stage steps (ivlib generate's default)")
    parser.add_argument("--sr-steps", type=int, default=32, help="steps of each SR stage (ivlib generate's default)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--sr-guidance", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cascade = Cascade.pretrained(args.config)
    settings = stage_settings(cascade.stages, SamplerSettings(num_steps=args.steps, guidance=args.guidance),
                              SamplerSettings(num_steps=args.sr_steps, guidance=args.sr_guidance))
    print(json.dumps({"devices": [str(d) for d in jax.devices()], "stages": [s.name for s in cascade.stages]}))
    for b in args.batch_size:
        for row in bench(cascade, b, settings, args.repeats):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
