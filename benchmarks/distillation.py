"""A guided-distilled base student against its teacher (chapter 09; issue 15's scoring, before the Table 1 file).

    python benchmarks/distillation.py --student runs/distill-guided/ema.safetensors

Both sample chapter 04's 64 held-out prompts with 32 ancestral steps from the same noise as
`benchmarks/guidance_sweep.py` (so the teacher's rows equal the sweep's) at w = 0, 1 and 3: the teacher
with two passes per step (classifier-free guidance), the student, told w, with one. Each row is
`ivlib.evaluation.evaluate_cascade`'s: R-precision and FVD of the toy evaluator, digit / colour / motion
accuracy and the seconds of sampling (compilation included). Prints the rows; writes nothing.
"""

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="runs/distill-guided/ema.safetensors",
                        help="weight file written by `ivlib distill --phase guided`")
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    args = parser.parse_args()
    student_path = ROOT / args.student
    if not student_path.is_file():
        sys.exit(f"no student at {student_path}: make one with `ivlib distill --teacher "
                 "ivlib/assets/weights/toy_base.safetensors --phase guided --workdir runs/distill-guided`")

    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.evaluation import evaluate_cascade
    from ivlib.pretrained import teacher_weights_path

    teacher = Cascade.pretrained("toy", stages=["base"], weights={"base": teacher_weights_path("toy", "base")})
    student = Cascade.pretrained("toy", stages=["base"], weights={"base": student_path})
    for w in args.weights:
        for name, cascade in (("teacher", teacher), ("student", student)):
            result = evaluate_cascade(cascade, dataset_options={"max_objects": 1}, num_videos=args.num_videos,
                                      settings=SamplerSettings(num_steps=args.steps, guidance=w))
            row = result["model"]
            print(f"w = {w:g} {name}: R-precision {row['r_precision']:.3f}  FVD {row['fvd']:.1f}  "
                  + "  ".join(f"{k} {v:.2f}" for k, v in row["attributes"].items())
                  + f"  ({result['seconds_per_video'] * args.num_videos:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
