"""Chapter 07's experiments: joint image-video training of the toy base model.

    python benchmarks/joint_training.py train ARM      # train (or resume) one arm
    python benchmarks/joint_training.py eval           # score every arm -> toy_base.joint.json

Every arm fine-tunes the shipped base model (4000 steps on videos only) for STEPS more steps with the
recipe of chapter 04 (`ivlib train --config toy --stage base`, batch 32, learning rate 1e-3 with 100
warm-up steps, EMA 0.999, two simulated CPU devices) on one-digit captions, seed 1 (fresh samples), and
the arms differ only in what the batches hold:
  video           videos only: the baseline at the same compute
  joint-0.25      a quarter of every batch packed still images (8 independent images per sample)
  joint-0.5       half of every batch packed still images
  joint-0.5-nomask  as joint-0.5, but the images are not flagged: the temporal layers see the 8 unrelated
                  images as if they were a video (`--no-image-mask`)
Half of the still images carry the image-only colour "orange", a word no video caption contains.

Why fine-tune rather than train from scratch: the toy base needs ~4000 steps (about 3.5 CPU hours) before it
draws the digit it is asked for (chapter 04); starting all arms from the same video-only model and spending
the same steps on each keeps the comparison fair at a cost a laptop can pay. Each arm's CPU minutes
(user + system time of its training processes) are recorded in <workdir>/cpu.json.
"""

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.joint.json"
INIT = "ivlib/assets/weights/toy_base.safetensors"
STEPS = 400
RECIPE = ["--config", "toy", "--stage", "base", "--batch-size", "32", "--learning-rate", "1e-3",
          "--dataset", "digits", "--dataset-options", '{"max_objects": 1}', "--seed", "1",
          "--init-weights", INIT, "--keep-checkpoints", "10", "--cpu-devices", "2"]
ARMS = {
    "video": ["--image-fraction", "0"],
    "joint-0.25": ["--image-fraction", "0.25"],
    "joint-0.5": ["--image-fraction", "0.5"],
    "joint-0.5-nomask": ["--image-fraction", "0.5", "--no-image-mask"],
}


def workdir(arm):
    return f"runs/joint/{arm}"


def command(arm, steps=STEPS):
    """The `ivlib train` command of an arm (what the weight files and the JSON record)."""
    return ["ivlib", "train", *RECIPE, *ARMS[arm], "--workdir", workdir(arm), "--steps", str(steps)]


def _record_cpu(path, seconds):
    total = json.loads(path.read_text())["cpu_seconds"] if path.exists() else 0.0
    path.write_text(json.dumps({"cpu_seconds": total + seconds}))


def train(arm, steps):
    """Train (or resume) one arm with the `ivlib train` command itself, adding its CPU time to cpu.json."""
    start = time.time()
    (ROOT / workdir(arm)).mkdir(parents=True, exist_ok=True)
    try:
        argv = [sys.executable, "-m", "ivlib.cli", *command(arm, steps)[1:]]
        print(" ".join(command(arm, steps)), flush=True)
        subprocess.run(argv, cwd=ROOT, check=True)
    finally:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        _record_cpu(ROOT / workdir(arm) / "cpu.json", usage.ru_utime + usage.ru_stime)
        print(f"{arm}: {(time.time() - start) / 60:.1f} wall minutes this call", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("arm", choices=list(ARMS))
    tr.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    if args.command == "train":
        train(args.arm, args.steps)


if __name__ == "__main__":
    main()
