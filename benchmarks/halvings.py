"""Base-model students of progressive distillation against their teacher, on validation prompts (chapter 09).

    python benchmarks/halvings.py runs/distill-guided/ema.safetensors:32 runs/distill2-p16/ema.safetensors:16 \
        runs/distill2-p8/ema.safetensors:8 --teacher-steps 256

Each STUDENT:STEPS samples with the stochastic sampler at the toy's guidance weight; the shipped teacher samples
with `--teacher-steps` ancestral steps and classifier-free guidance (Table 1's original base), unless 0. The
prompts are a *validation* draw (seed 7, FVD against seed 8), not Table 1's test prompts (seed 0), so choosing
between runs here does not tune on the table. Base stage only: a halving's cost before the SR stages mix in.
Each row is `ivlib.evaluation.evaluate_cascade`'s. With 64 prompts, R-precision's standard error is about
0.06: differences smaller than that are not a ranking. Prints the rows; writes nothing.
"""

import argparse
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALIDATION_SEED = 7


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("students", nargs="*", metavar="STUDENT:STEPS",
                        help="weight file of `ivlib distill` and the steps it samples in")
    parser.add_argument("--teacher-steps", type=int, default=256, help="0: leave the teacher out")
    parser.add_argument("--num-videos", type=int, default=64)
    args = parser.parse_args()
    students = []
    for spec in args.students:
        path, _, steps = spec.rpartition(":")
        if not path or not steps.isdigit():
            parser.error(f"expected STUDENT:STEPS (e.g. runs/distill2-p8/ema.safetensors:8), got {spec!r}")
        if not (ROOT / path).is_file():
            parser.error(f"no weight file at {ROOT / path}")
        students.append((ROOT / path, int(steps)))

    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.configs import toy
    from ivlib.evaluation import evaluate_cascade
    from ivlib.metrics import load_evaluator
    from ivlib.pretrained import teacher_weights_path

    teacher = Cascade.pretrained("toy", stages=["base"], weights={"base": teacher_weights_path("toy", "base")})
    evaluator = load_evaluator()
    rows = [("teacher", teacher, SamplerSettings(num_steps=args.teacher_steps, sampler="ancestral",
                                                 guidance=toy.GUIDANCE))] if args.teacher_steps else []
    for path, steps in students:
        rows.append((str(path.relative_to(ROOT)), Cascade.pretrained("toy", stages=["base"], weights={"base": path}),
                     SamplerSettings(num_steps=steps, sampler="stochastic", guidance=toy.GUIDANCE)))
    for name, cascade, settings in rows:
        result = evaluate_cascade(cascade, dataset_options={"max_objects": 1}, num_videos=args.num_videos,
                                  settings=settings, seed=VALIDATION_SEED, evaluator=evaluator)
        row = result["model"]
        print(f"{name} ({settings.num_steps} {settings.sampler} steps): R-precision {row['r_precision']:.3f}  "
              f"FVD {row['fvd']:.1f}  " + "  ".join(f"{k} {v:.2f}" for k, v in row["attributes"].items())
              + f"  ({result['seconds_per_video'] * args.num_videos:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
