"""How strongly the toy base model reads each word of its prompt, over training (chapter 04; `ivlib.listening`).

    python benchmarks/listening.py --workdir runs/ablation/random-t5 --steps 200 600 1000 1400 2000

For each checkpoint's EMA weights: the loss gap when the digit, the colour or the motion of 64 held-out
captions is swapped (`ivlib.listening.loss_gaps`), at log-SNRs -4, -2, 0 and 2. Rows are appended to
ivlib/assets/weights/toy_base.listening.json (a step already there is skipped), which chapter 04 reads.
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.listening.json"


def restore_ema(workdir, step):
    """(stage, model_def, EMA params, text encoder name, target) of the checkpoint at `step` in an `ivlib train` workdir."""
    import jax
    import orbax.checkpoint as ocp

    from ivlib.loop import abstract_like, checkpoint_manager
    from ivlib.trainer import TrainConfig, stage_for
    from ivlib.train import create_state, default_optimizer

    cfg = TrainConfig(**json.loads((workdir / "config.json").read_text()))
    stage = stage_for(cfg)
    model_def, state = create_state(stage.unet, default_optimizer(cfg.learning_rate, cfg.warmup_steps),
                                    jax.random.PRNGKey(0))
    abstract = abstract_like(state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    state = checkpoint_manager(workdir / "checkpoints", keep=1000).restore(step, args=ocp.args.StandardRestore(abstract))
    return stage, model_def, state["ema"], cfg.text_encoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--num-videos", type=int, default=64)
    args = parser.parse_args()

    from ivlib.listening import held_out_clips, loss_gaps
    from ivlib.text import EmbeddingCache, text_encoder

    table = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    done = {(r["workdir"], r["step"]) for r in table["rows"]}
    videos, prompts = held_out_clips(args.num_videos)
    workdir = (ROOT / args.workdir).resolve()
    for step in args.steps:
        if (args.workdir, step) in done:
            continue
        stage, model_def, params, encoder = restore_ema(workdir, step)
        cache = EmbeddingCache(text_encoder(encoder))
        gaps = loss_gaps(model_def.bind(params), cache.get, videos, prompts, target=stage.unet.target)
        row = {"workdir": args.workdir, "step": step, "text_encoder": encoder, **gaps}
        print(json.dumps(row), flush=True)
        table["rows"].append(row)
        table.update(num_videos=args.num_videos, command="python benchmarks/listening.py " + " ".join(sys.argv[1:]))
        OUT.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
