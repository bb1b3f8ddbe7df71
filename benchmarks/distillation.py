"""A guided-distilled base student against its teacher (chapter 09; issue 15's scoring, before the Table 1 file).

    python benchmarks/distillation.py --student runs/distill-guided/ema.safetensors

Both sample chapter 04's 64 held-out prompts with 32 ancestral steps from the same noise as
`benchmarks/guidance_sweep.py` (so the teacher's rows equal the sweep's) at w = 0, 1 and 3: the teacher
with two passes per step (classifier-free guidance), the student, told w, with one. Each row: R-precision
and FVD of the toy evaluator, digit / colour / motion accuracy and the seconds of sampling (compilation
included). Prints the rows; writes nothing.
"""

import argparse
import pathlib
import sys
import time

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

    import jax
    import numpy as np

    from ivlib import metrics
    from ivlib.attributes import attribute_accuracy
    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.data import make_dataset
    from ivlib.pretrained import load_stage

    draw = lambda seed: make_dataset("digits", frames=8, height=16, width=16, split="test", seed=seed,
                                     max_objects=1).batch(0, args.num_videos)
    truth, other = draw(0), draw(1)
    teacher = Cascade.pretrained("toy", stages=["base"])
    stage, model_def, params = load_stage("toy", "base", path=student_path)
    student = Cascade([stage], [model_def], [params], teacher.text_encoder)
    evaluator = metrics.load_evaluator()
    for w in args.weights:
        for name, cascade in (("teacher", teacher), ("student", student)):
            start = time.perf_counter()
            settings = SamplerSettings(num_steps=args.steps, guidance=w)
            videos = np.asarray(cascade.sample_final(truth["caption"], jax.random.PRNGKey(0), settings, 32))
            seconds = time.perf_counter() - start
            row = metrics.evaluate(videos, truth["caption"], other["video"], evaluator, seed=0)
            acc = attribute_accuracy(videos, truth["caption"])
            print(f"w = {w:g} {name}: R-precision {row['r_precision']:.3f}  FVD {row['fvd']:.1f}  "
                  + "  ".join(f"{k} {v:.2f}" for k, v in acc.items()) + f"  ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
