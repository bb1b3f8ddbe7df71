"""How strongly the toy base model reads each word of its prompt, over training (chapter 04; `ivlib.listening`).

    python benchmarks/listening.py --workdir runs/ablation/random-t5 --steps 200 600 1000 1400 2000

For each checkpoint's EMA weights: the loss gap when the digit, the colour or the motion of 64 held-out
captions is swapped (`ivlib.listening.loss_gaps`), at log-SNRs -4, -2, 0 and 2. Rows are appended to
ivlib/assets/weights/toy_base.listening.json (a step already there is skipped), which chapter 04 reads.

    python benchmarks/listening.py --direction --workdir runs/base-joint --steps 1000 2000 4000 6000 8000

With --direction: the gaps when a straight-line motion is reversed or turned a quarter
(`ivlib.listening.direction_gaps`, 64 held-out clips moving left, right, up or down), appended to
ivlib/assets/weights/toy_base.direction.json.
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.listening.json"
OUT_DIRECTION = OUT.with_name("toy_base.direction.json")


def restore_ema(workdir, step):
    """(stage, model_def, EMA params, text encoder name) of the checkpoint at `step` in an `ivlib train` workdir."""
    from flax import nnx

    from ivlib.nn.model_def import ModelDef
    from ivlib.nn.unet import VideoUNet
    from ivlib.trainer import TrainConfig, checkpoint_state, stage_for

    cfg = TrainConfig.read(workdir / "config.json")
    stage = stage_for(cfg)
    model_def = ModelDef.split(VideoUNet(stage.unet, rngs=nnx.Rngs(0)))[0]
    return stage, model_def, checkpoint_state(workdir, cfg, stage, step)["ema"], cfg.text_encoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--direction", action="store_true", help="reverse or turn straight-line motions instead")
    args = parser.parse_args()

    from ivlib.listening import direction_gaps, held_out_clips, loss_gaps, straight_line_clips
    from ivlib.text import EmbeddingCache, text_encoder

    out = OUT_DIRECTION if args.direction else OUT
    table = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {(r["workdir"], r["step"]) for r in table["rows"]}
    videos, prompts = (straight_line_clips if args.direction else held_out_clips)(args.num_videos)
    measure = direction_gaps if args.direction else loss_gaps
    workdir = (ROOT / args.workdir).resolve()
    for step in args.steps:
        if (args.workdir, step) in done:
            continue
        stage, model_def, params, encoder = restore_ema(workdir, step)
        cache = EmbeddingCache(text_encoder(encoder))
        gaps = measure(model_def.bind(params), cache.get, videos, prompts, target=stage.unet.target)
        row = {"workdir": args.workdir, "step": step, "text_encoder": encoder, **gaps}
        print(json.dumps(row), flush=True)
        table["rows"].append(row)
        commands = table.setdefault("commands", [])
        command = "python benchmarks/listening.py " + " ".join(sys.argv[1:])
        if command not in commands:
            commands.append(command)
        table.update(num_videos=args.num_videos, command=command)
        out.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
