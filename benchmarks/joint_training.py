"""Chapter 07's experiments: joint image-video training of the toy base model.

    python benchmarks/joint_training.py train ARM      # train (or resume) one arm
    python benchmarks/joint_training.py eval [--arms A,B]   # score arms -> ivlib/assets/weights/toy_base.joint.json

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
import subprocess
import sys
import time

from ivlib.appearance import SMOOTH_JUMP
from recipe_ablation import record_cpu  # benchmarks/ is on the path of a script run from it

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.joint.json"
INIT = "ivlib/assets/weights/toy_base_step4000.safetensors"  # the shipped base at step 4000 of its run
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


def train(arm, steps):
    """Train (or resume) one arm with the `ivlib train` command itself, adding its CPU time to cpu.json."""
    start = time.time()
    (ROOT / workdir(arm)).mkdir(parents=True, exist_ok=True)
    try:
        argv = [sys.executable, "-m", "ivlib.cli", *command(arm, steps)[1:]]
        print(" ".join(command(arm, steps)), flush=True)
        subprocess.run(argv, cwd=ROOT, check=True)
    finally:
        record_cpu(workdir(arm))
        print(f"{arm}: {(time.time() - start) / 60:.1f} wall minutes this call", flush=True)


def image_only_prompts():
    """70 video prompts with the image-only colour: every digit with every motion ("an orange 4 moving up")."""
    from ivlib.data import captions as C

    return [C.caption([C.ObjectSpec("digit", d, "orange", None, "plain", m)]) for m in C.MOTIONS for d in C.DIGITS]


def transfer_scores(videos, prompts) -> dict:
    """What the videos of image-only prompts get right: orange, motion, digit, smooth motion (`ivlib.appearance`)."""
    import numpy as np

    from ivlib import appearance
    from ivlib.attributes import classes, predict, load_attribute_classifier
    from ivlib.data import captions as C

    specs = [C.parse_caption(p)[0][0] for p in prompts]
    predicted = predict(load_attribute_classifier(), videos)
    names = classes()
    jump = appearance.largest_jump(videos)
    return {"orange": float(appearance.looks_orange(videos).mean()),
            "motion": float(np.mean([names["motion"][k] == s.motion for k, s in zip(predicted["motion"], specs)])),
            "digit": float(np.mean([names["digit"][k] == s.label for k, s in zip(predicted["digit"], specs)])),
            "smooth": float(appearance.moves_smoothly(videos).mean()), "largest_jump": float(jump.mean())}


def ground_truth_row():
    """The measures on ground-truth videos of the image-only prompts (held-out handwriting): what a perfect
    model would score, and a check that the measures see what they claim to."""
    from ivlib.data import clips
    from ivlib.data.render import render

    prompts = image_only_prompts()
    videos = render([clips.clip_for_caption(p, seed=i, split="test") for i, p in enumerate(prompts)], 8, 16, 16)
    return {"arm": "ground truth", "image_only": transfer_scores(videos, prompts)}


def score(arm, path, num_videos=64, guidance=0.0):
    """One row: an arm's EMA weights on the 64 held-out ordinary prompts (as `ivlib eval --stages base`) and on
    the 70 image-only prompts (same sampler: 32 ancestral steps, static clipping, guidance w)."""
    import jax

    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.evaluation import evaluate_cascade
    from ivlib import appearance
    from ivlib.weights import read_metadata

    cascade = Cascade.pretrained("toy", stages=["base"], weights={"base": path})
    settings = {"base": SamplerSettings(num_steps=32, guidance=guidance, threshold="static")}
    ordinary = evaluate_cascade(cascade, dataset="digits", dataset_options={"max_objects": 1},
                                num_videos=num_videos, settings=settings, keep_videos=True)
    prompts = image_only_prompts()
    videos = cascade.sample_final(prompts, jax.random.PRNGKey(0), settings, 35)
    meta = read_metadata(path)
    model = ordinary["model"]
    return {"arm": arm, "steps": meta.get("steps"), "guidance": guidance,
            "train_config": meta.get("train_config"),
            "ordinary": {**{k: model[k] for k in ("clip_score", "r_precision", "fvd")}, **model["attributes"],
                         "smooth": float(appearance.moves_smoothly(ordinary["videos"]).mean())},
            "ordinary_ground_truth": {**{k: ordinary["ground_truth"][k] for k in ("clip_score", "r_precision", "fvd")},
                                      **ordinary["ground_truth"]["attributes"]},
            "image_only": transfer_scores(videos, prompts)}


def write(rows):
    """The table to OUT (rewritten after every row: an interrupted run keeps its rows)."""
    cpu = {}
    for arm in ARMS:
        path = ROOT / workdir(arm) / "cpu.json"
        if path.exists():
            cpu[arm] = json.loads(path.read_text())["cpu_seconds"] / 60
    OUT.write_text(json.dumps({"rows": rows, "cpu_minutes": cpu, "steps": STEPS, "init": INIT,
                               "smooth_jump": SMOOTH_JUMP, "image_only_prompts": len(image_only_prompts()),
                               "commands": {arm: " ".join(command(arm)) for arm in ARMS},
                               "command": "python benchmarks/joint_training.py eval"}, indent=1))


def evaluate(arms, guidance):
    """Score `arms` (names of ARMS, "start": the shipped base they start from, "ground truth") and keep the rows
    of OUT for the others, so arms can be scored as they finish; rows come out in a fixed order."""
    order = ["ground truth", "start", *ARMS]
    rows = {r["arm"]: r for r in json.loads(OUT.read_text())["rows"]} if OUT.exists() else {}
    rows = {arm: row for arm, row in rows.items() if arm not in arms}
    for arm in [a for a in order if a in arms or a in ("ground truth", "start") and a not in rows]:
        if arm == "ground truth":
            rows[arm] = ground_truth_row()
        else:
            path = ROOT / (INIT if arm == "start" else workdir(arm) + "/ema.safetensors")
            if not path.exists():
                print(f"{arm}: not trained yet ({path} missing); skipped", flush=True)
                continue
            rows[arm] = score(arm, path, guidance=guidance)
            print(json.dumps({k: rows[arm][k] for k in ("arm", "ordinary", "image_only")}), flush=True)
        write([rows[a] for a in order if a in rows])
    return [rows[a] for a in order if a in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("arm", choices=list(ARMS))
    tr.add_argument("--steps", type=int, default=STEPS)
    ev = sub.add_parser("eval")
    ev.add_argument("--arms", default=",".join(["ground truth", "start", *ARMS]),
                    help="comma-separated arms to (re)score; the rows of the others are kept")
    ev.add_argument("--guidance", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "train":
        train(args.arm, args.steps)
    else:
        evaluate([a for a in args.arms.split(",") if a], args.guidance)


if __name__ == "__main__":
    main()
