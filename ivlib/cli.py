"""The `ivlib` command line: `ivlib demo` (and, as the book grows, generate / train / distill / eval)."""

import argparse
import json
import os
import sys


def _demo(args):
    """Noise a few toy videos along the cosine schedule, then sample with the exact denoiser of that data."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ivlib.analytic import dataset_denoiser
    from ivlib.data import make_dataset
    from ivlib.diffusion import diffuse, sample
    from ivlib.schedules import cosine_logsnr
    from ivlib.media import write_video
    from ivlib.viz import tile

    batch = make_dataset("digits", frames=args.frames, height=args.size, width=args.size, seed=args.seed).batch(0, args.videos)
    videos = jnp.asarray(batch["video"])
    t = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
    noise = jax.random.normal(jax.random.PRNGKey(args.seed), (len(t),) + videos.shape[1:])
    noised = diffuse(jnp.broadcast_to(videos[0], noise.shape), cosine_logsnr(t), noise)
    samples = sample(dataset_denoiser(videos), (4,) + videos.shape[1:], jax.random.PRNGKey(args.seed + 1),
                     args.steps, "ddim")
    nearest = np.argmin(np.asarray(jnp.sum((samples[:, None] - videos[None]) ** 2, axis=(2, 3, 4, 5))), axis=1)
    grid = tile(np.concatenate([np.clip(noised, -1, 1), samples[:1] * 0 - 1, samples]), columns=len(t))
    path = write_video(args.out, grid, fps=4, scale=4)
    print(f'toy video "{batch["caption"][0]}" noised at t = {[float(x) for x in t]} (top row)')
    print(f"{args.steps}-step DDIM samples from the exact denoiser of {args.videos} toy videos (bottom row) "
          f"reproduce training videos {nearest.tolist()}: the optimal denoiser of a finite dataset memorises it.")
    print(f"wrote {path}")


def _add_sampling_args(parser):
    """How each stage is sampled: the options `generate` and `eval` share."""
    parser.add_argument("--steps", type=int, default=64, help="sampling steps of the base model")
    parser.add_argument("--sr-steps", type=int, default=32, help="sampling steps of each super-resolution stage")
    parser.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"])
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance weight w of the base model (eq. 5); default: the best of chapter 08's sweep")
    parser.add_argument("--sr-guidance", type=float, default=1.0, help="guidance weight of the SR stages")
    parser.add_argument("--oscillate", action="store_true", help="oscillating guidance: w, low, w, low, ... (§2.6.2)")
    parser.add_argument("--oscillate-low", type=float, default=1.0)
    parser.add_argument("--constant-steps", type=int, default=0, help="steps at the high weight before oscillating")
    parser.add_argument("--threshold", default="static", choices=["dynamic", "static", "none"])
    parser.add_argument("--aug-snr", type=float, default=5.0, help="conditioning augmentation SNR of SR stages (§2.5)")


def _sampling_settings(args, stages):
    """Per-stage SamplerSettings from the options of `_add_sampling_args`."""
    from ivlib.cascade import SamplerSettings, stage_settings
    from ivlib.configs import toy

    if args.guidance is None:
        args.guidance = toy.GUIDANCE  # the best weight of chapter 08's sweep (see ivlib/configs/toy.py)
    oscillate = (args.guidance, args.oscillate_low, args.constant_steps) if args.oscillate else None
    base = SamplerSettings(num_steps=args.steps, sampler=args.sampler, guidance=args.guidance, oscillate=oscillate,
                           threshold=args.threshold, aug_snr=args.aug_snr)
    sr = SamplerSettings(num_steps=args.sr_steps, sampler=args.sampler, guidance=args.sr_guidance,
                         threshold=args.threshold, aug_snr=args.aug_snr)
    return stage_settings(stages, base, sr)


def _generate(args):
    """Text -> video with the shipped cascade; writes the final video (and optionally every stage's)."""
    import time

    import jax

    from ivlib.cascade import Cascade
    from ivlib.media import write_video

    if not args.prompt.strip():
        raise SystemExit("error: the prompt is empty; give a description such as 'a red 3 moving left'")
    cascade = Cascade.pretrained(args.config, stages=args.stages.split(",") if args.stages else None)
    settings = _sampling_settings(args, cascade.stages)
    start = time.perf_counter()
    videos = cascade.sample([args.prompt] * args.num_videos, jax.random.PRNGKey(args.seed), settings)
    seconds = time.perf_counter() - start
    fps = cascade.stages[-1].fps or 8
    path = write_video(args.out, videos[-1][0], fps=fps, scale=args.scale)
    if args.all_stages:
        for stage, video in zip(cascade.stages, videos):
            write_video(args.out.replace(".mp4", f"_{stage.name}.mp4"), video[0], fps=stage.fps or 8, scale=args.scale)
    shape = "x".join(map(str, videos[-1].shape[1:4]))
    print(f'"{args.prompt}" -> {shape} (frames x height x width) through {len(cascade.stages)} stages '
          f"in {seconds:.1f} s (including compilation)")
    print(f"wrote {path}")


def _train(args):
    from ivlib.trainer import TrainConfig, train

    options = json.loads(args.dataset_options) if args.dataset_options else {}
    cfg = TrainConfig(workdir=args.workdir, config=args.config, stage=args.stage, steps=args.steps,
                      batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                      ema_decay=args.ema_decay, text_dropout=args.text_dropout, aug_max_t=args.aug_max_t,
                      target=args.target, text_encoder=args.text_encoder,
                      dataset=args.dataset, dataset_options=options, checkpoint_every=args.checkpoint_every,
                      keep_checkpoints=args.keep_checkpoints, log_every=args.log_every, seed=args.seed)
    train(cfg)
    print(f"done: EMA weights in {args.workdir}/ema.safetensors, metrics in {args.workdir}/metrics.jsonl")


def _eval(args):
    import dataclasses

    from ivlib.cascade import Cascade
    from ivlib.evaluation import evaluate_cascade

    cascade = Cascade.pretrained(args.config, stages=args.stages.split(",") if args.stages else None)
    settings = _sampling_settings(args, cascade.stages)
    result = evaluate_cascade(cascade, dataset=args.dataset, dataset_options=json.loads(args.dataset_options or "{}"),
                              num_videos=args.num_videos, batch_size=args.batch_size, settings=settings, seed=args.seed)
    result["settings"] = {name: dataclasses.asdict(s) for name, s in settings.items()}
    result["command"] = "ivlib " + " ".join(sys.argv[1:])
    for name in ("model", "ground_truth"):
        row = result[name]
        print(f"{name:>12}: CLIP score {row['clip_score']:.2f}  R-precision {row['r_precision']:.3f} "
              f"(chance {row['chance']:.3f})  FVD {row['fvd']:.2f}")
    print(f"{result['seconds_per_video']:.2f} s per video (batch {args.batch_size}, including compilation)")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


def _train_evaluator(args):
    from ivlib.metrics import train_evaluator

    path = train_evaluator(args.workdir, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(f"done: {path}; ship it with: cp {path} ivlib/assets/weights/evaluator.safetensors")


def _pretrain_text(args):
    from ivlib.text.pretrain import pretrain_toy_t5, save_toy_t5

    encoder, history = pretrain_toy_t5(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                       seed=args.seed)
    command = f"ivlib pretrain-text --steps {args.steps} --batch-size {args.batch_size} --seed {args.seed}"
    path = save_toy_t5(encoder, args.out, {"command": command, "history": history,
                                           "objective": "masked-token prediction on toy captions"})
    print(f"wrote the pretrained toy T5 to {path} (masked-token accuracy {history[-1]['accuracy']:.3f})")


def _train_attributes(args):
    from flax import nnx

    from ivlib.attributes import WEIGHTS_PATH, train_attribute_classifier
    from ivlib.weights import save_params

    model, accuracy = train_attribute_classifier(args.workdir, steps=args.steps, seed=args.seed)
    command = f"ivlib train-attributes --workdir {args.workdir} --steps {args.steps}" + (f" --seed {args.seed}" if args.seed else "")
    out = save_params(args.out or WEIGHTS_PATH, nnx.state(model, nnx.Param),
                      metadata={"command": command, "test_accuracy": accuracy})
    print(f"wrote {out}; held-out ground-truth accuracy {accuracy}")


def _export(args):
    from ivlib.trainer import export_ema

    path, step = export_ema(args.workdir, args.out)
    print(f"wrote the EMA weights of step {step} to {path}")


def _set_cpu_devices(argv):
    """Simulated CPU devices must be requested before jax is imported (XLA reads XLA_FLAGS once)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] != "train":
        return
    count = argv[argv.index("--cpu-devices") + 1] if "--cpu-devices" in argv[:-1] else "2"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ivlib", description="Imagen Video, rebuilt in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write a short video showing the diffusion process on toy data")
    demo.add_argument("--out", default="outputs/demo.mp4")
    demo.add_argument("--frames", type=int, default=8)
    demo.add_argument("--size", type=int, default=32)
    demo.add_argument("--videos", type=int, default=8)
    demo.add_argument("--steps", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    gen = commands.add_parser("generate", help="text -> video with the shipped toy cascade")
    gen.add_argument("prompt", help='e.g. "a red 3 moving left"')
    gen.add_argument("--out", default="outputs/video.mp4")
    gen.add_argument("--config", default="toy")
    gen.add_argument("--stages", default="", help="comma-separated subset of stages (default: all)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--num-videos", type=int, default=1)
    _add_sampling_args(gen)
    gen.add_argument("--scale", type=int, default=8, help="upscale the tiny video by this factor when writing it")
    gen.add_argument("--all-stages", action="store_true", help="also write every stage's video")
    gen.set_defaults(run=_generate)

    tr = commands.add_parser("train", help="train (or resume) one stage of a cascade; see chapter 04")
    tr.add_argument("--config", default="toy", help="cascade config: toy, colab, paper")
    tr.add_argument("--stage", default="base", help="stage name within the config (e.g. base, tsr, ssr)")
    tr.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and ema.safetensors go here")
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--learning-rate", type=float, default=1e-3)
    tr.add_argument("--warmup-steps", type=int, default=100)
    tr.add_argument("--ema-decay", type=float, default=0.999)
    tr.add_argument("--text-dropout", type=float, default=0.1)
    tr.add_argument("--aug-max-t", type=float, default=0.6,
                    help="SR stages: conditioning augmentation at log-SNR λ(t'), t' ~ U(0, this); 0 turns it off (chapter 06)")
    tr.add_argument("--target", default=None, choices=["v", "eps", "x"],
                    help="what the network predicts, for this run (default: the stage's own, v in every config); "
                         "recorded in the weight file, so sampling decodes the same target (chapter 02)")
    tr.add_argument("--text-encoder", default="toy-t5-random", choices=["toy-t5-random", "toy-t5"],
                    help="frozen toy text encoder: random weights (default) or pretrained on toy captions (chapter 04)")
    tr.add_argument("--dataset", default="digits")
    tr.add_argument("--dataset-options", default="", help='JSON, e.g. \'{"max_objects": 1}\'')
    tr.add_argument("--checkpoint-every", type=int, default=100)
    tr.add_argument("--keep-checkpoints", type=int, default=3)
    tr.add_argument("--log-every", type=int, default=10)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--cpu-devices", type=int, default=2,
                    help="simulated CPU devices for data parallelism (2 was fastest on a 2-core CPU)")
    tr.set_defaults(run=_train)

    evl = commands.add_parser("eval", help="Table-1-style metrics of the shipped cascade on held-out prompts")
    evl.add_argument("--config", default="toy")
    evl.add_argument("--stages", default="", help="comma-separated subset of stages (default: all)")
    evl.add_argument("--num-videos", type=int, default=128)
    evl.add_argument("--batch-size", type=int, default=32)
    evl.add_argument("--dataset", default="digits")
    evl.add_argument("--dataset-options", default='{"max_objects": 1}')
    _add_sampling_args(evl)
    evl.add_argument("--seed", type=int, default=0)
    evl.add_argument("--out", default="", help="write the rows as JSON here")
    evl.set_defaults(run=_eval)

    ev = commands.add_parser("train-evaluator", help="train the toy video-text dual encoder behind ivlib.metrics")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--steps", type=int, default=2000)
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(run=_train_evaluator)

    pt = commands.add_parser("pretrain-text", help="pretrain the toy T5 encoder on toy captions (chapter 04)")
    pt.add_argument("--out", default="ivlib/assets/text/toy_t5.safetensors")
    pt.add_argument("--steps", type=int, default=3000)
    pt.add_argument("--batch-size", type=int, default=256)
    pt.add_argument("--learning-rate", type=float, default=3e-3)
    pt.add_argument("--seed", type=int, default=0)
    pt.set_defaults(run=_pretrain_text)

    ta = commands.add_parser("train-attributes", help="train the digit/colour/motion classifier of ivlib.attributes")
    ta.add_argument("--workdir", required=True, help="checkpoints and metrics.jsonl go here (resumes from them)")
    ta.add_argument("--steps", type=int, default=2000)
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--out", default="", help="default: ivlib/assets/weights/attributes.safetensors")
    ta.set_defaults(run=_train_attributes)

    ex = commands.add_parser("export", help="write the EMA weights of a run's newest checkpoint (safe while it trains)")
    ex.add_argument("--workdir", required=True)
    ex.add_argument("--out", default=None, help="default: <workdir>/ema.safetensors")
    ex.set_defaults(run=_export)
    _set_cpu_devices(argv)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
