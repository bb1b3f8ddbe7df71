"""The `ivlib` command line: demo, generate, train, eval, export and the toy's helper models.

Bad input ends a command with one line on stderr, `error: <message>`, and exit status 2, without a
traceback: a bad option, a ValueError, or a FileNotFoundError or other OSError (a path that cannot be
read or written). Anything else is a bug and shows its traceback; `--debug` or IVLIB_DEBUG=1 shows the
traceback of every error. The cheap checks (numbers, names, paths, the prompt's words) run before any
model is built, so a mistake is reported at once. Warnings of the library (a legal value that surprises,
such as a negative guidance weight) print as one line, `warning: <message>`.
"""

import argparse
import json
import math
import os
import pathlib
import sys
import traceback
import warnings

ALLOW_HINT = "pass --allow-unknown-words to see what the model makes of them"
# How `generate` and `eval` sample when not told: the shipped distilled students in the steps they were distilled
# to (tests check their weight files agree) with the sampler of chapter 09's Table 1, or with --teacher the
# undistilled stages in (base, SR) ancestral steps.
DISTILLED_STEPS, DISTILLED_SAMPLER = 8, "stochastic"
TEACHER_STEPS, TEACHER_SAMPLER = (64, 32), "ancestral"


class UsageError(ValueError):
    """A mistake in the command line itself: an unknown option, a missing or malformed value."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError, so that `main` reports them like every other error."""

    def error(self, message):
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _number_type(name, parse, ok, expected):
    """An argparse `type`: parse(text), kept when ok(value), else an error saying what was expected."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = name
    return convert


_count = _number_type("count", int, lambda v: v >= 1, "a positive integer")
_natural = _number_type("natural", int, lambda v: v >= 0, "an integer >= 0")
_real = _number_type("real", float, math.isfinite, "a finite number")
_positive = _number_type("positive", float, lambda v: 0 < v < math.inf, "a positive finite number")
_snr = _number_type("snr", float, lambda v: not math.isnan(v), "a number (inf: no augmentation)")


def _check_writable(path, what, kind="file", suffixes=()):
    """ValueError unless a `kind` ("file" or "directory") can be written at `path`; creates nothing."""
    path = pathlib.Path(path).absolute()
    if kind == "file" and path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give the name of the file to write")
    if kind == "directory" and path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a directory")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} {path} must end in {' or '.join(suffixes)}")
    parent = path if kind == "directory" else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {path} cannot be written: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} cannot be written: {parent} is not writable")
    return path


def _json_object(text, what):
    """The dict a JSON option holds ("" -> {}); ValueError naming the option otherwise."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} must be a JSON object such as '{{\"max_objects\": 1}}', got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object such as '{{\"max_objects\": 1}}', got {text!r}")
    return value


def _check_own_workdir(path, command):
    """ValueError if `path` holds an `ivlib train` run: its checkpoints are not `command`'s to resume."""
    if (pathlib.Path(path) / "config.json").is_file():
        raise ValueError(f"--workdir {pathlib.Path(path).absolute()} holds an `ivlib train` run; "
                         f"give `ivlib {command}` a work directory of its own")


def _demo(args):
    """Noise a few toy videos along the cosine schedule, then sample with the exact denoiser of that data."""
    _check_writable(args.out, "--out", suffixes=(".mp4", ".gif"))
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
    parser.add_argument("--teacher", action="store_true",
                        help="sample the undistilled cascade (two passes per step with guidance) instead of its "
                             "distilled students (chapter 09)")
    parser.add_argument("--steps", type=_count, default=None,
                        help=f"sampling steps of the base model (default: {DISTILLED_STEPS} distilled, "
                             f"{TEACHER_STEPS[0]} with --teacher)")
    parser.add_argument("--sr-steps", type=_count, default=None,
                        help=f"sampling steps of each super-resolution stage (default: {DISTILLED_STEPS} distilled, "
                             f"{TEACHER_STEPS[1]} with --teacher)")
    parser.add_argument("--sampler", default=None, choices=["ancestral", "ddim", "stochastic"],  # diffusion.SAMPLERS (not imported: jax loads lazily)
                        help=f"default: {DISTILLED_SAMPLER} distilled, {TEACHER_SAMPLER} with --teacher")
    parser.add_argument("--guidance", type=_real, default=None,
                        help="guidance weight w of the base model (eq. 5); default: the best of chapter 08's sweep")
    parser.add_argument("--sr-guidance", type=_real, default=1.0, help="guidance weight of the SR stages")
    parser.add_argument("--oscillate", action="store_true", help="oscillating guidance: w, low, w, low, ... (§2.6.2)")
    parser.add_argument("--oscillate-low", type=_real, default=1.0)
    parser.add_argument("--constant-steps", type=_natural, default=0, help="steps at the high weight before oscillating")
    parser.add_argument("--threshold", default="static", choices=["dynamic", "static", "none"])
    parser.add_argument("--aug-snr", type=_snr, default=None,
                        help="conditioning augmentation SNR of SR stages (§2.5; default: 5, or the distilled SR "
                             "stages' own, chosen on validation prompts by benchmarks/student_aug.py)")
    parser.add_argument("--allow-unknown-words", action="store_true",
                        help="sample prompts with words the toy text encoder does not know, instead of stopping")


def _sampler_settings(args, distilled=False):
    """(base, sr) SamplerSettings from the options of `_add_sampling_args`, checked (and warned about)
    before anything is loaded; the defaults of steps and sampler are the distilled cascade's or its teacher's."""
    from ivlib.cascade import SamplerSettings
    from ivlib.configs import toy

    steps, sr_steps = (DISTILLED_STEPS,) * 2 if distilled else TEACHER_STEPS
    steps, sr_steps = args.steps or steps, args.sr_steps or sr_steps
    sampler = args.sampler or (DISTILLED_SAMPLER if distilled else TEACHER_SAMPLER)
    if args.guidance is None:
        args.guidance = toy.GUIDANCE  # the best weight of chapter 08's sweep (see ivlib/configs/toy.py)
    aug_snr = args.aug_snr  # default: the students' own SNR (see ivlib/configs/toy.py), the paper's 5 for the teachers
    if aug_snr is None:
        aug_snr = toy.DISTILLED_AUG_SNR if distilled else toy.AUG_SNR
    oscillate = (args.guidance, args.oscillate_low, args.constant_steps) if args.oscillate else None
    base = SamplerSettings(num_steps=steps, sampler=sampler, guidance=args.guidance, oscillate=oscillate,
                           threshold=args.threshold, aug_snr=aug_snr)
    sr = SamplerSettings(num_steps=sr_steps, sampler=sampler, guidance=args.sr_guidance,
                         threshold=args.threshold, aug_snr=aug_snr)
    return base, sr


def _distilled(args, names) -> bool:
    """Whether to sample the distilled students: unless --teacher, whenever every stage to run ships one that
    was distilled from the weights the stage ships now (a student of earlier weights is never run silently)."""
    from ivlib.pretrained import has_distilled, stale_students, teacher_weights_path

    if args.teacher:
        return False
    if not has_distilled(args.config, names):
        print(f"note: the {args.config} cascade ships no distilled students; sampling its undistilled stages")
        return False
    stale = stale_students(args.config, names)
    if stale:
        earlier = ", ".join(f"{name} from {teacher_weights_path(args.config, name).name}" for name in stale)
        print(f"note: distilled students of earlier weights ({earlier}), not of the shipped stages; sampling the "
              "undistilled stages (`ivlib distill`, chapter 09, makes new students)")
        return False
    return True


def _stage_names(args):
    """The --stages of a shipped cascade as a list (None: all that ship), after checking them and --config."""
    from ivlib.configs import get_cascade
    from ivlib.pretrained import shipped_stages
    from ivlib.stage import check_chain

    get_cascade(args.config)  # an unknown config: ValueError listing the valid names
    if not args.stages:
        return None
    names = [name.strip() for name in args.stages.split(",")]
    check_chain(shipped_stages(args.config, names))
    return names


def _generate(args):
    """Text -> video with the shipped cascade; writes the final video (and optionally every stage's)."""
    if not args.prompt.strip():
        raise ValueError("the prompt is empty; give a description such as 'a red 3 moving left'")
    out = _check_writable(args.out, "--out", suffixes=(".mp4", ".gif"))
    _sampler_settings(args)  # every option is checked before anything is loaded
    names = _stage_names(args)
    distilled = _distilled(args, names)
    base, sr = _sampler_settings(args, distilled)
    from ivlib.text import check_toy_words

    if not args.allow_unknown_words:  # the shipped cascades read the toy text encoders
        check_toy_words([args.prompt], hint=ALLOW_HINT)

    import time

    import jax

    from ivlib.cascade import Cascade, stage_settings
    from ivlib.media import write_video

    cascade = Cascade.pretrained(args.config, stages=names, distilled=distilled)
    settings = stage_settings(cascade.stages, base, sr)
    start = time.perf_counter()
    videos = cascade.sample([args.prompt] * args.num_videos, jax.random.PRNGKey(args.seed), settings,
                            allow_unknown_words=args.allow_unknown_words)
    seconds = time.perf_counter() - start
    fps = cascade.stages[-1].fps or 8
    path = write_video(args.out, videos[-1][0], fps=fps, scale=args.scale)
    if args.all_stages:
        for stage, video in zip(cascade.stages, videos):
            write_video(str(out.with_name(f"{out.stem}_{stage.name}{out.suffix}")), video[0], fps=stage.fps or 8,
                        scale=args.scale)
    shape = "x".join(map(str, videos[-1].shape[1:4]))
    kind = "distilled students" if distilled else "undistilled stages" + (" (--teacher)" if args.teacher else "")
    print(f'"{args.prompt}" -> {shape} (frames x height x width) through {len(cascade.stages)} {kind}, '
          f"{base.num_steps} base / {sr.num_steps} SR {base.sampler} steps"
          + (f", SR input noised at SNR {sr.aug_snr:g}" if len(cascade.stages) > 1 else "")
          + f", in {seconds:.1f} s (including compilation)")
    print(f"wrote {path}")


def _train(args):
    workdir = _check_writable(args.workdir, "--workdir", kind="directory")
    from ivlib.trainer import check_resumable, stage_for, train

    cfg = _train_config(args)
    cfg.validate()
    stage_for(cfg)  # an unknown config or stage
    check_resumable(workdir, cfg)  # a work directory of another run
    train(cfg)
    print(f"done: EMA weights in {args.workdir}/ema.safetensors, metrics in {args.workdir}/metrics.jsonl")


def _train_config(args):
    """The TrainConfig of `ivlib train`'s parsed arguments (--image-fraction goes into the dataset options)."""
    options = _json_object(args.dataset_options, "--dataset-options")
    if args.image_fraction is not None:
        if "image_fraction" in options:
            raise UsageError("give the image fraction once: --image-fraction or image_fraction in --dataset-options")
        if not 0.0 <= args.image_fraction <= 1.0:
            raise UsageError(f"--image-fraction must be a fraction in [0, 1], got {args.image_fraction}")
        options["image_fraction"] = args.image_fraction
    from ivlib.trainer import TrainConfig

    return TrainConfig(workdir=args.workdir, config=args.config, stage=args.stage, steps=args.steps,
                       batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                       ema_decay=args.ema_decay, text_dropout=args.text_dropout, aug_max_t=args.aug_max_t,
                       target=args.target, text_encoder=args.text_encoder, max_text_length=args.max_text_length,
                       dataset=args.dataset, dataset_options=options, checkpoint_every=args.checkpoint_every,
                       keep_checkpoints=args.keep_checkpoints, log_every=args.log_every, seed=args.seed,
                       init_weights=args.init_weights, image_mask=not args.no_image_mask,
                       model_parallel=args.model_parallel, split_activations=args.split_activations,
                       remat=args.remat, relative_keys_from=args.relative_keys_from)


def _distill(args):
    _check_writable(args.workdir, "--workdir", kind="directory")
    from ivlib.distiller import distill, distill_halvings

    cfg = _distill_config(args)
    if args.steps_per_halving is None:
        distill(cfg)  # checks the settings, the teacher and the work directory before it writes anything
    else:
        if args.phase != "progressive" or not args.teacher_steps or not args.student_steps:
            raise ValueError("--steps-per-halving runs progressive halvings: give --phase progressive, --teacher-steps "
                             "(the teacher's sampling steps) and --student-steps (the last student's)")
        distill_halvings(cfg, args.teacher_steps, args.steps_per_halving)
    print(f"done: the student's EMA weights in {args.workdir}/ema.safetensors, metrics in {args.workdir}/metrics.jsonl")


def _distill_config(args):
    from ivlib.distiller import DistillConfig

    return DistillConfig(workdir=args.workdir, teacher=args.teacher, config=args.config, stage=args.stage,
                         phase=args.phase, student_steps=args.student_steps or 0, steps=args.steps,
                         batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                         ema_decay=args.ema_decay, w_min=args.w_min, w_max=args.w_max,
                         dataset=args.dataset, dataset_options=_json_object(args.dataset_options, "--dataset-options"),
                         checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                         log_every=args.log_every, seed=args.seed)


def _eval(args):
    import dataclasses

    if args.num_videos < 2:
        raise ValueError(f"--num-videos must be at least 2 (FVD needs a covariance), got {args.num_videos}")
    options = _json_object(args.dataset_options, "--dataset-options")
    if args.out:
        _check_writable(args.out, "--out", suffixes=(".json",))
    _sampler_settings(args)  # every option is checked before anything is loaded
    names = _stage_names(args)
    distilled = _distilled(args, names)
    base, sr = _sampler_settings(args, distilled)
    from ivlib.data import DATASETS

    if args.dataset not in DATASETS:
        raise ValueError(f"--dataset: unknown dataset {args.dataset!r}; expected one of {', '.join(DATASETS)}")

    from ivlib.cascade import Cascade, stage_settings
    from ivlib.evaluation import evaluate_cascade

    cascade = Cascade.pretrained(args.config, stages=names, distilled=distilled)
    settings = stage_settings(cascade.stages, base, sr)
    result = evaluate_cascade(cascade, dataset=args.dataset, dataset_options=options, num_videos=args.num_videos,
                              batch_size=args.batch_size, settings=settings, seed=args.seed,
                              allow_unknown_words=args.allow_unknown_words)
    result["settings"] = {name: dataclasses.asdict(s) for name, s in settings.items()}
    result["distilled"] = distilled
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
    _check_writable(args.workdir, "--workdir", kind="directory")
    _check_own_workdir(args.workdir, "train-evaluator")
    from ivlib.metrics import train_evaluator

    path = train_evaluator(args.workdir, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(f"done: {path}; ship it with: cp {path} ivlib/assets/weights/evaluator.safetensors")


def _pretrain_text(args):
    _check_writable(args.out, "--out", suffixes=(".safetensors",))
    from ivlib.text.pretrain import pretrain_toy_t5, save_toy_t5

    encoder, history = pretrain_toy_t5(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                       seed=args.seed)
    command = f"ivlib pretrain-text --steps {args.steps} --batch-size {args.batch_size} --seed {args.seed}"
    path = save_toy_t5(encoder, args.out, {"command": command, "history": history,
                                           "objective": "masked-token prediction on toy captions"})
    print(f"wrote the pretrained toy T5 to {path} (masked-token accuracy {history[-1]['accuracy']:.3f})")


def _train_attributes(args):
    _check_writable(args.workdir, "--workdir", kind="directory")
    _check_own_workdir(args.workdir, "train-attributes")
    if args.out:
        _check_writable(args.out, "--out", suffixes=(".safetensors",))
    from flax import nnx

    from ivlib.attributes import WEIGHTS_PATH, train_attribute_classifier
    from ivlib.weights import save_params

    model, accuracy = train_attribute_classifier(args.workdir, steps=args.steps, seed=args.seed)
    command = f"ivlib train-attributes --workdir {args.workdir} --steps {args.steps}" + (f" --seed {args.seed}" if args.seed else "")
    out = save_params(args.out or WEIGHTS_PATH, nnx.state(model, nnx.Param),
                      metadata={"command": command, "test_accuracy": accuracy})
    print(f"wrote {out}; held-out ground-truth accuracy {accuracy}")


def _export(args):
    workdir = pathlib.Path(args.workdir).absolute()
    if not workdir.is_dir():
        raise FileNotFoundError(f"--workdir {workdir} is not a directory, so not an `ivlib train` work directory")
    if args.out:
        _check_writable(args.out, "--out", suffixes=(".safetensors",))
    from ivlib.trainer import export_ema

    path, step = export_ema(args.workdir, args.out, args.step)
    print(f"wrote the EMA weights of step {step} to {path}")


def _add_loop_args(parser, *, steps, learning_rate, warmup_steps, ema_decay, checkpoint_every):
    """The options of the one training loop that `train` and `distill` share; the defaults differ (a distillation
    fine-tunes a trained stage: fewer steps, a smaller learning rate, a shorter EMA)."""
    parser.add_argument("--steps", type=_count, default=steps)
    parser.add_argument("--batch-size", type=_count, default=32)
    parser.add_argument("--learning-rate", type=_positive, default=learning_rate)
    parser.add_argument("--warmup-steps", type=_natural, default=warmup_steps)
    parser.add_argument("--ema-decay", type=_real, default=ema_decay)
    parser.add_argument("--checkpoint-every", type=_count, default=checkpoint_every)
    parser.add_argument("--keep-checkpoints", type=_count, default=3)
    parser.add_argument("--log-every", type=_count, default=10)
    parser.add_argument("--seed", type=_natural, default=0)
    parser.add_argument("--cpu-devices", type=_count, default=2,
                        help="simulated CPU devices for data parallelism (2 was fastest on a 2-core CPU)")


def _set_cpu_devices(argv):
    """Simulated CPU devices must be requested before jax is imported (XLA reads XLA_FLAGS once)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("train", "distill"):
        return
    count = argv[argv.index("--cpu-devices") + 1] if "--cpu-devices" in argv[:-1] else "2"
    if not count.isdigit() or int(count) < 1:  # argparse reports it
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def build_parser() -> argparse.ArgumentParser:
    """The `ivlib` argument parser: one subcommand per command."""
    parser = _Parser(prog="ivlib", description="Imagen Video, rebuilt in JAX.",
                     epilog="Bad input ends a command with one 'error:' line and exit status 2; --debug (or "
                            "IVLIB_DEBUG=1) shows the traceback of any error.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write a short video showing the diffusion process on toy data")
    demo.add_argument("--out", default="outputs/demo.mp4")
    demo.add_argument("--frames", type=_count, default=8)
    demo.add_argument("--size", type=_count, default=32)
    demo.add_argument("--videos", type=_count, default=8)
    demo.add_argument("--steps", type=_count, default=32)
    demo.add_argument("--seed", type=_natural, default=0)
    demo.set_defaults(run=_demo)

    gen = commands.add_parser("generate", help="text -> video with the shipped toy cascade")
    gen.add_argument("prompt", help='e.g. "a red 3 moving left"')
    gen.add_argument("--out", default="outputs/video.mp4")
    gen.add_argument("--config", default="toy")
    gen.add_argument("--stages", default="", help="comma-separated subset of stages (default: all)")
    gen.add_argument("--seed", type=_natural, default=0)
    gen.add_argument("--num-videos", type=_count, default=1)
    _add_sampling_args(gen)
    gen.add_argument("--scale", type=_count, default=8, help="upscale the tiny video by this factor when writing it")
    gen.add_argument("--all-stages", action="store_true", help="also write every stage's video")
    gen.set_defaults(run=_generate)

    tr = commands.add_parser("train", help="train (or resume) one stage of a cascade; see chapter 04")
    tr.add_argument("--config", default="toy", help="cascade config: toy, colab, paper")
    tr.add_argument("--stage", default="base", help="stage name within the config (e.g. base, tsr, ssr)")
    tr.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and ema.safetensors go here")
    _add_loop_args(tr, steps=1000, learning_rate=1e-3, warmup_steps=100, ema_decay=0.999, checkpoint_every=100)
    tr.add_argument("--text-dropout", type=_real, default=0.1)
    tr.add_argument("--aug-max-t", type=_real, default=0.6,
                    help="SR stages: conditioning augmentation at log-SNR λ(t'), t' ~ U(0, this); 0 turns it off (chapter 06)")
    tr.add_argument("--target", default=None, choices=["v", "eps", "x"],
                    help="what the network predicts, for this run (default: the stage's own, v in every config); "
                         "recorded in the weight file, so sampling decodes the same target (chapter 02)")
    tr.add_argument("--text-encoder", default=None,
                    help="the frozen text encoder (default: the config's own, TEXT_ENCODER): toy-t5-random (the toy's), "
                         "toy-t5 (pretrained on toy captions, chapter 04), or a T5 v1.1 checkpoint, a Hugging Face name "
                         "such as google/t5-v1_1-base (colab's) or a local folder (chapter 10)")
    tr.add_argument("--model-parallel", type=int, default=1,
                    help="devices per model group: parameters, Adam's moments and EMA weights are split over them "
                         "(FSDP), the batch over every device (chapter 10; default 1: data parallelism)")
    tr.add_argument("--split-activations", action="store_true",
                    help="with --model-parallel: each model group shares its examples and splits their activations, "
                         "frames for spatial layers, rows for temporal ones (long, high-resolution stages; chapter 10)")
    tr.add_argument("--remat", choices=["none", "block", "dots"], default=None,  # nn.unet.REMAT (jax loads lazily)
                    help="recompute each space-time block in the backward pass instead of keeping its activations: "
                         "'block' keeps only its inputs, 'dots' also its matrix products (default: the stage's own; "
                         "chapter 10's memory plans use 'block')")
    tr.add_argument("--max-text-length", type=int, default=None,
                    help="tokens per caption (default: the config's TEXT_LENGTH; 32 for the toy)")
    tr.add_argument("--dataset", default="digits")
    tr.add_argument("--dataset-options", default="", help='JSON, e.g. \'{"max_objects": 1}\'')
    tr.add_argument("--image-fraction", type=_real, default=None,
                    help="fraction of each batch that is packed still images (chapter 07; toy datasets)")
    tr.add_argument("--no-image-mask", action="store_true",
                    help="treat packed still images as videos: their temporal layers are not bypassed (chapter 07)")
    tr.add_argument("--relative-keys-from", type=_natural, default=0,
                    help="hold temporal attention's relative keys at zero until this step, then let them learn "
                         "(chapter 04, 'Which way?'; default 0: from the start)")
    tr.add_argument("--init-weights", default=None,
                    help="start from this weight file of the same stage (e.g. the shipped one) instead of random weights")
    tr.set_defaults(run=_train)

    ds = commands.add_parser("distill", help="guided or progressive distillation of a trained stage; see chapter 09")
    ds.add_argument("--teacher", required=True,
                    help="weight file: a trained stage (--phase guided) or a guided-distilled student (progressive)")
    ds.add_argument("--phase", default="guided", choices=["guided", "progressive"])
    ds.add_argument("--student-steps", type=_count, default=None,
                    help="progressive: the student samples in this many steps, half its teacher's (with "
                         "--steps-per-halving: the last student's)")
    ds.add_argument("--steps-per-halving", type=_count, default=None,
                    help="progressive: halve --teacher-steps again and again down to --student-steps, this many "
                         "optimisation steps each, in <workdir>/<N>-steps")
    ds.add_argument("--teacher-steps", type=_count, default=None,
                    help="with --steps-per-halving: the steps the teacher samples in (e.g. 32)")
    ds.add_argument("--config", default="toy")
    ds.add_argument("--stage", default="base")
    ds.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and ema.safetensors go here")
    _add_loop_args(ds, steps=500, learning_rate=1e-4, warmup_steps=20, ema_decay=0.99, checkpoint_every=50)
    ds.add_argument("--w-min", type=_real, default=0.0, help="guidance weights w ~ U(w-min, w-max) per sample")
    ds.add_argument("--w-max", type=_real, default=4.0)
    ds.add_argument("--dataset", default="digits")
    ds.add_argument("--dataset-options", default='{"max_objects": 1}', help="JSON")
    ds.set_defaults(run=_distill)

    evl = commands.add_parser("eval", help="Table-1-style metrics of the shipped cascade on held-out prompts")
    evl.add_argument("--config", default="toy")
    evl.add_argument("--stages", default="", help="comma-separated subset of stages (default: all)")
    evl.add_argument("--num-videos", type=_count, default=128)
    evl.add_argument("--batch-size", type=_count, default=32)
    evl.add_argument("--dataset", default="digits")
    evl.add_argument("--dataset-options", default='{"max_objects": 1}')
    _add_sampling_args(evl)
    evl.add_argument("--seed", type=_natural, default=0)
    evl.add_argument("--out", default="", help="write the rows as JSON here")
    evl.set_defaults(run=_eval)

    ev = commands.add_parser("train-evaluator", help="train the toy video-text dual encoder behind ivlib.metrics")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--steps", type=_count, default=2000)
    ev.add_argument("--batch-size", type=_count, default=64)
    ev.add_argument("--seed", type=_natural, default=0)
    ev.set_defaults(run=_train_evaluator)

    pt = commands.add_parser("pretrain-text", help="pretrain the toy T5 encoder on toy captions (chapter 04)")
    pt.add_argument("--out", default="ivlib/assets/text/toy_t5.safetensors")
    pt.add_argument("--steps", type=_count, default=3000)
    pt.add_argument("--batch-size", type=_count, default=256)
    pt.add_argument("--learning-rate", type=_positive, default=3e-3)
    pt.add_argument("--seed", type=_natural, default=0)
    pt.set_defaults(run=_pretrain_text)

    ta = commands.add_parser("train-attributes", help="train the digit/colour/motion classifier of ivlib.attributes")
    ta.add_argument("--workdir", required=True, help="checkpoints and metrics.jsonl go here (resumes from them)")
    ta.add_argument("--steps", type=_count, default=2000)
    ta.add_argument("--seed", type=_natural, default=0)
    ta.add_argument("--out", default="", help="default: ivlib/assets/weights/attributes.safetensors")
    ta.set_defaults(run=_train_attributes)

    ex = commands.add_parser("export", help="write the EMA weights of a run's checkpoint (safe while it trains)")
    ex.add_argument("--workdir", required=True)
    ex.add_argument("--out", default=None, help="default: <workdir>/ema.safetensors")
    ex.add_argument("--step", type=_natural, default=None, help="the checkpoint's step (default: the newest)")
    ex.set_defaults(run=_export)
    for command in commands.choices.values():  # --debug after the command name too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


# What a user's mistake raises (anything else is a bug, and shows its traceback).
USER_ERRORS = (ValueError, OSError)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def main(argv=None) -> int:
    """Run one `ivlib` command; returns its exit status: 0, or 2 after one `error:` line for bad input."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("IVLIB_DEBUG", "") not in ("", "0") or "--debug" in argv
    shown = set()

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if (text := _one_line(message)) not in shown:
            shown.add(text)
            print(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            _set_cpu_devices(argv)
            args = build_parser().parse_args(argv)
            args.run(args)
        except USER_ERRORS as err:
            if debug:
                traceback.print_exc()
            message = _one_line(err) or type(err).__name__
            print(f"error: {message}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
