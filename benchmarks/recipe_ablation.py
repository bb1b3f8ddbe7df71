"""Chapter 04's recipe ablation for the toy base model: text encoder, cross-attention placement, EMA, steps.

    python benchmarks/recipe_ablation.py train ARM [--steps N]     # train (or resume) one arm
    python benchmarks/recipe_ablation.py eval [--previous FILE]    # score every arm's checkpoints

Every arm is `ivlib train --config toy --stage base` (batch 32, learning rate 1e-3, EMA 0.999, one CPU
device, seed 0; the random-t5 arm, which became the shipped base model, was resumed from step 1400 to 4000
with `--cpu-devices 2`, the same steps split over two simulated devices) with text cross-attention at both
levels (16x16 and 8x8), and differs in one thing:
  pretrained-t5  the frozen toy T5 pretrained on toy captions ("toy-t5", `ivlib pretrain-text`)
  random-t5      the same T5 with random frozen weights ("toy-t5-random")
  from-scratch   the whole recipe of the shipped base in one run from step 0: random-t5, relative keys in
                 temporal attention (chapter 04, "Which way?"), half of every batch still images (chapter 07),
                 two simulated CPU devices (`train from-scratch --steps 6000 --cpu-devices 2`)
  keys-from-2500 from-scratch, with the relative keys held at zero until step 2500 and grown from there, as
                 "Which way?" grew them into the trained base (`train keys-from-2500 --steps 5000 --cpu-devices 4`)
  keys-from-5000 the same with the keys held until step 5000, two simulated devices (`train keys-from-5000
                 --steps 7000 --cpu-devices 2`: about two hours of wall clock on two cores)
and the row "previous" is the base model shipped before this ablation: the random toy T5 with
cross-attention at 8x8 only, 1400 steps, otherwise the same command (`--previous` scores its weight file).

Rows are scored as `ivlib eval --stages base --guidance 0` scores the shipped model: 64 held-out prompts, 32
ancestral steps, no guidance (w = 0; chapter 08 sweeps w) and static clipping, the toy evaluator's CLIP score /
R-precision / FVD, plus the accuracy of digit, colour and motion (`ivlib.attributes`), for the EMA and the raw
weights of each checkpoint. Each arm's CPU minutes (user + system time of its training processes) come from
<workdir>/cpu.json. The table goes to ivlib/assets/weights/toy_base.ablation.json, which chapter 04 reads.
"""

import argparse
import dataclasses
import json
import pathlib
import resource
import shlex
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.ablation.json"
RECIPE = ["--config", "toy", "--stage", "base", "--batch-size", "32", "--learning-rate", "1e-3",
          "--dataset", "digits", "--dataset-options", '{"max_objects": 1}', "--keep-checkpoints", "50"]
ARMS = {
    "pretrained-t5": {"workdir": "runs/ablation/pretrained-t5", "args": ["--text-encoder", "toy-t5"]},
    "random-t5": {"workdir": "runs/ablation/random-t5", "args": ["--text-encoder", "toy-t5-random"]},
    "from-scratch": {"workdir": "runs/ablation/from-scratch",
                     "args": ["--text-encoder", "toy-t5-random", "--image-fraction", "0.5", "--checkpoint-every", "250"]},
    "keys-from-2500": {"workdir": "runs/relkeys-from-2500",
                       "args": ["--text-encoder", "toy-t5-random", "--image-fraction", "0.5",
                                "--checkpoint-every", "250", "--relative-keys-from", "2500"]},
    "keys-from-5000": {"workdir": "runs/relkeys-from-5000",
                       "args": ["--text-encoder", "toy-t5-random", "--image-fraction", "0.5",
                                "--checkpoint-every", "250", "--relative-keys-from", "5000"]},
}
GUIDANCE = 0.0  # the recipe's own model, no guidance: chapter 08 sweeps w on the model the recipe makes


def arm_stage(arm):
    """The Stage an arm trains: the toy base; "previous" has text cross-attention at 8x8 only."""
    from ivlib.configs import get_stage

    stage = get_stage("toy", "base")
    if arm != "previous":
        return stage
    levels = (dataclasses.replace(stage.unet.levels[0], cross_attention=False),) + stage.unet.levels[1:]
    return dataclasses.replace(stage, unet=dataclasses.replace(stage.unet, levels=levels))


def record_cpu(workdir):
    """Add this process's CPU time (and its children's, e.g. an `ivlib train` subprocess) to <workdir>/cpu.json."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    seconds = sum(u.ru_utime + u.ru_stime for u in usage)
    path = ROOT / workdir / "cpu.json"
    total = json.loads(path.read_text())["cpu_seconds"] if path.exists() else 0.0
    path.write_text(json.dumps({"cpu_seconds": total + seconds}))


def train(arm, steps, cpu_devices):
    """Train (or resume) one arm with the `ivlib train` command itself."""
    spec = ARMS[arm]
    start = time.time()
    try:
        command = [sys.executable, "-m", "ivlib.cli", "train", *RECIPE, *spec["args"], "--workdir", spec["workdir"],
                   "--steps", str(steps), "--cpu-devices", str(cpu_devices)]
        print(" ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    finally:
        record_cpu(spec["workdir"])
        print(f"{arm}: {(time.time() - start) / 60:.1f} wall minutes this call")


def restore(arm, step):
    """(stage, model_def, {"ema": ..., "params": ...}, text encoder name) of an arm's checkpoint at `step`."""
    from flax import nnx

    from ivlib.nn.model_def import ModelDef
    from ivlib.nn.unet import VideoUNet
    from ivlib.trainer import TrainConfig, checkpoint_state

    stage = arm_stage(arm)
    workdir = ROOT / ARMS[arm]["workdir"]
    cfg = TrainConfig.read(workdir / "config.json")
    model_def = ModelDef.split(VideoUNet(stage.unet, rngs=nnx.Rngs(0)))[0]
    return stage, model_def, checkpoint_state(workdir, cfg, stage, step), cfg.text_encoder


def evaluate_model(stage, model_def, params, encoder, num_videos, guidance, **label):
    """One row: `label` (arm, step, weights) and the `ivlib eval --stages base` metrics of one set of weights."""
    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.evaluation import evaluate_cascade
    from ivlib.text import text_encoder

    cascade = Cascade([stage], [model_def], [params], text_encoder(encoder))
    settings = {"base": SamplerSettings(num_steps=32, guidance=guidance, threshold="static")}
    result = evaluate_cascade(cascade, dataset="digits", dataset_options={"max_objects": 1}, num_videos=num_videos,
                              settings=settings)
    return {**label, "text_encoder": encoder, "guidance": guidance,
            **{k: result["model"][k] for k in ("clip_score", "r_precision", "fvd", "attributes")},
            "ground_truth": result["ground_truth"]}


def score(arm, step, weights, num_videos, guidance=GUIDANCE):
    """The row of an arm's checkpoint (EMA or raw weights)."""
    stage, model_def, state, encoder = restore(arm, step)
    return evaluate_model(stage, model_def, state[weights], encoder, num_videos, guidance,
                          arm=arm, step=step, weights=weights)


def score_previous(num_videos, path, guidance=GUIDANCE):
    """The row of the base model shipped before this recipe (random toy T5, cross-attention at 8x8, 1400 steps,
    EMA 0.999): its weight file, as it is in git before the recipe's model replaced it."""
    from ivlib.pretrained import load_weights
    from ivlib.weights import read_metadata

    stage, model_def, params = load_weights(arm_stage("previous"), path)
    return evaluate_model(stage, model_def, params, "toy-t5-random", num_videos, guidance,
                          arm="previous", step=read_metadata(path)["steps"], weights="ema")


def write(rows, num_videos):
    """The table, with each arm's CPU minutes, to OUT (rewritten after every row: an interrupted run keeps its rows).
    An arm whose workdir is gone (runs/ is not kept) keeps the CPU minutes OUT already records; every eval command
    that added rows is kept in "commands"."""
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    cpu = {arm: ROOT / spec["workdir"] / "cpu.json" for arm, spec in ARMS.items()}
    minutes = {**previous.get("cpu_minutes", {}),
               **{arm: round(json.loads(path.read_text())["cpu_seconds"] / 60, 1)
                  for arm, path in cpu.items() if path.exists()}}
    command = "python benchmarks/recipe_ablation.py " + shlex.join(sys.argv[1:])
    commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    table = {"rows": rows, "num_videos": num_videos, "guidance": GUIDANCE, "cpu_minutes": minutes,
             "commands": commands + [command] * (command not in commands)}
    OUT.write_text(json.dumps(table, indent=1))


def evaluate(num_videos, steps_of, previous=None):
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    done = {(r["arm"], r["step"], r["weights"]) for r in rows}
    if previous and not any(r["arm"] == "previous" for r in rows):
        rows.append(score_previous(num_videos, previous))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "ground_truth"}), flush=True)
        write(rows, num_videos)
    for arm, steps in steps_of.items():
        for step in steps:
            for weights in ("ema", "params"):
                if (arm, step, weights) in done:
                    continue
                row = score(arm, step, weights, num_videos)
                print(json.dumps({k: v for k, v in row.items() if k != "ground_truth"}), flush=True)
                rows.append(row)
                write(rows, num_videos)
    return OUT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("arm", choices=list(ARMS))
    tr.add_argument("--steps", type=int, default=500)
    tr.add_argument("--cpu-devices", type=int, default=1)
    ev = sub.add_parser("eval")
    ev.add_argument("--num-videos", type=int, default=64)
    ev.add_argument("--steps", default='{"pretrained-t5": [200, 500], "random-t5": [200, 500, 1000, 1400, 2000, 3000, 4000]}',
                    help="JSON: arm -> checkpoint steps to score")
    ev.add_argument("--previous", default="", help="also score this weight file of the previously shipped base model "
                    "(git show a37d41c:ivlib/assets/weights/toy_base.safetensors > previous.safetensors)")
    args = parser.parse_args()
    if args.command == "train":
        train(args.arm, args.steps, args.cpu_devices)
    else:
        print(f"wrote {evaluate(args.num_videos, json.loads(args.steps), args.previous)}")


if __name__ == "__main__":
    main()
