"""Bad input at every entry point: one `error:` line, exit status 2, no traceback, nothing written.

`CASES` runs every command of the `ivlib` CLI in-process through `main(argv)` with bad input: empty and
unknown prompts, bad numbers (0, negative, NaN, a string), unknown configs and stages, missing, unwritable
and non-run work directories, a truncated weight file, corrupt checkpoints and checkpoints of another
stage. Each case asserts status 2, exactly one `error:` line naming the mistake, no traceback, and that
no file under the test's directories (nor the package's assets) was written, changed or removed: the
corrupt checkpoint and the good one before it survive untouched. Nothing is sampled or trained.

The library's side of the same checks follows: the toy encoder's unknown words (in `Cascade.sample`,
`evaluate_cascade` and the prompt widget), and settings that are legal but surprising (a warning).
"""

import dataclasses
import hashlib
import json
import pathlib
import shutil
import warnings

import jax
import numpy as np
import pytest

import ivlib
from ivlib import cli

ASSETS = pathlib.Path(ivlib.__file__).parent / "assets"


def _corrupt(directory: pathlib.Path):
    """Truncate every file of an orbax checkpoint to half its size."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Work directories and files the cases point at (built once; every case checks none of it changes)."""
    import orbax.checkpoint as ocp

    from ivlib.configs import get_stage
    from ivlib.loop import checkpoint_manager
    from ivlib.train import create_state, default_optimizer
    from ivlib.trainer import TrainConfig

    root = tmp_path_factory.mktemp("world")
    cfg = TrainConfig(workdir=str(root))
    tx = default_optimizer(cfg.learning_rate, cfg.warmup_steps)
    _, state = create_state(get_stage("toy", "base").unet, tx, jax.random.PRNGKey(0))  # a base model's state

    def run(name, stage="base", steps=(), corrupt=()):
        workdir = root / name
        workdir.mkdir()
        cfg = TrainConfig(workdir=str(workdir), stage=stage)
        (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        if steps:
            manager = checkpoint_manager(workdir / "checkpoints", 3)
            for step in steps:
                manager.save(step, args=ocp.args.StandardSave(dict(state, step=jax.numpy.int32(step))))
                manager.wait_until_finished()
            for step in corrupt:
                _corrupt(workdir / "checkpoints" / str(step))
        return workdir

    run("run", steps=(1, 2), corrupt=(2,))  # a base run: step 1 good, step 2 (the newest) corrupt
    run("broken", steps=(1,), corrupt=(1,))  # its only checkpoint corrupt
    run("tsr", stage="tsr", steps=(1,))  # config.json says tsr; the checkpoint is the base model's
    run("fresh")  # config.json, no checkpoint yet
    orphan = root / "orphan"  # checkpoints without config.json: not an `ivlib train` run
    shutil.copytree(root / "tsr" / "checkpoints", orphan / "checkpoints")
    (root / "badjson").mkdir()
    (root / "badjson" / "config.json").write_text("{not json")
    (root / "empty").mkdir()
    (root / "file").write_text("a file, not a directory")
    (root / "weights").mkdir()  # a truncated copy of the shipped base model's weights
    shipped = (ASSETS / "weights" / "toy_base.safetensors").read_bytes()
    (root / "weights" / "toy_base.safetensors").write_bytes(shipped[: len(shipped) // 3])
    return root


def _snapshot(*roots) -> dict:
    """Every file and folder under `roots`: path -> (size, mtime, sha1) or "dir"."""
    seen = {}
    for root in roots:
        for path in sorted(pathlib.Path(root).rglob("*")):
            if path.is_dir():
                seen[str(path)] = "dir"
            else:
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
    return seen


P = "a red 3 moving left"  # a valid prompt, for cases whose mistake is elsewhere
# (id, argv with {w} = the world's folder, what the error line must say)
CASES = [
    # generate: prompts
    ("generate-empty-prompt", ["generate", ""], "prompt is empty"),
    ("generate-blank-prompt", ["generate", "   "], "prompt is empty"),
    ("generate-unknown-colour", ["generate", "a purple 3 moving left"], r"'purple' \(the colours it knows: red"),
    ("generate-meaningless-prompt", ["generate", "x"], r"'x'; the words it knows: a an the"),
    ("generate-number-word", ["generate", "a red three moving left"], r"'three' \(try '3'\)"),
    ("generate-punctuation", ["generate", "a red 3, moving left"], "no punctuation"),
    # generate: numbers
    ("generate-steps-0", ["generate", P, "--steps", "0"], "--steps: expected a positive integer, got '0'"),
    ("generate-steps-negative", ["generate", P, "--steps", "-3"], "--steps: expected a positive integer"),
    ("generate-steps-nan", ["generate", P, "--steps", "nan"], "--steps: expected a positive integer"),
    ("generate-steps-string", ["generate", P, "--steps", "many"], "--steps: expected a positive integer"),
    ("generate-sr-steps-0", ["generate", P, "--sr-steps", "0"], "--sr-steps: expected a positive integer"),
    ("generate-guidance-nan", ["generate", P, "--guidance", "nan"], "--guidance: expected a finite number"),
    ("generate-guidance-inf", ["generate", P, "--guidance", "inf"], "--guidance: expected a finite number"),
    ("generate-guidance-string", ["generate", P, "--guidance", "high"], "--guidance: expected a finite number"),
    ("generate-oscillate-low-nan", ["generate", P, "--oscillate", "--oscillate-low", "nan"], "--oscillate-low"),
    ("generate-constant-steps-negative", ["generate", P, "--constant-steps", "-1"], "--constant-steps"),
    ("generate-aug-snr-nan", ["generate", P, "--aug-snr", "nan"], "--aug-snr: expected a number"),
    ("generate-num-videos-0", ["generate", P, "--num-videos", "0"], "--num-videos: expected a positive integer"),
    ("generate-scale-negative", ["generate", P, "--scale", "-2"], "--scale: expected a positive integer"),
    ("generate-seed-negative", ["generate", P, "--seed", "-1"], "--seed: expected an integer >= 0"),
    ("generate-sampler-unknown", ["generate", P, "--sampler", "euler"], "--sampler: invalid choice"),
    # generate: names and paths
    ("generate-config-unknown", ["generate", P, "--config", "nope"], "unknown config name 'nope'; valid names: toy"),
    ("generate-stage-unknown", ["generate", P, "--stages", "base,nope"], r"unknown stage\(s\) \['nope'\]"),
    ("generate-stages-no-base", ["generate", P, "--stages", "tsr"], "starts with a base stage"),
    ("generate-out-under-a-file", ["generate", P, "--out", "{w}/file/video.mp4"], "is a file, not a directory"),
    ("generate-out-is-a-directory", ["generate", P, "--out", "{w}/empty"], "is a directory"),
    ("generate-out-not-a-video", ["generate", P, "--out", "{w}/video.txt"], "must end in .mp4 or .gif"),
    ("generate-truncated-weights", ["generate", P], "not a readable safetensors file"),
    # train
    ("train-stage-unknown", ["train", "--stage", "nope", "--workdir", "{w}/new"], "has no stage 'nope'; valid stage"),
    ("train-config-unknown", ["train", "--config", "nope", "--workdir", "{w}/new"], "unknown config name 'nope'"),
    ("train-no-workdir", ["train"], "required: --workdir"),
    ("train-steps-0", ["train", "--workdir", "{w}/new", "--steps", "0"], "--steps: expected a positive integer"),
    ("train-steps-nan", ["train", "--workdir", "{w}/new", "--steps", "nan"], "--steps: expected a positive integer"),
    ("train-batch-negative", ["train", "--workdir", "{w}/new", "--batch-size", "-2"], "--batch-size: expected a pos"),
    ("train-lr-0", ["train", "--workdir", "{w}/new", "--learning-rate", "0"], "--learning-rate: expected a positive"),
    ("train-lr-nan", ["train", "--workdir", "{w}/new", "--learning-rate", "nan"], "--learning-rate: expected a pos"),
    ("train-lr-string", ["train", "--workdir", "{w}/new", "--learning-rate", "fast"], "--learning-rate: expected"),
    ("train-warmup-negative", ["train", "--workdir", "{w}/new", "--warmup-steps", "-1"], "--warmup-steps: expected"),
    ("train-text-dropout-1.5", ["train", "--workdir", "{w}/new", "--text-dropout", "1.5"], "text_dropout must lie in"),
    ("train-ema-decay-nan", ["train", "--workdir", "{w}/new", "--ema-decay", "nan"], "--ema-decay: expected a finite"),
    ("train-ema-decay-2", ["train", "--workdir", "{w}/new", "--ema-decay", "2"], "ema_decay must lie in"),
    ("train-aug-max-t-negative", ["train", "--workdir", "{w}/new", "--aug-max-t", "-0.5"], "aug_max_t must lie in"),
    ("train-target-unknown", ["train", "--workdir", "{w}/new", "--target", "z"], "--target: invalid choice"),
    ("train-cpu-devices-0", ["train", "--workdir", "{w}/new", "--cpu-devices", "0"], "--cpu-devices: expected"),
    ("train-dataset-unknown", ["train", "--workdir", "{w}/new", "--dataset", "nope"], "unknown dataset 'nope'"),
    ("train-dataset-options-bad-json", ["train", "--workdir", "{w}/new", "--dataset-options", "{max"], "JSON object"),
    ("train-dataset-options-a-list", ["train", "--workdir", "{w}/new", "--dataset-options", "[1]"], "JSON object"),
    ("train-unknown-option", ["train", "--workdir", "{w}/new", "--stpes", "3"], "unrecognized arguments: --stpes"),
    ("train-image-fraction-2", ["train", "--workdir", "{w}/new", "--image-fraction", "2"], "--image-fraction must be"),
    ("train-image-fraction-twice", ["train", "--workdir", "{w}/new", "--image-fraction", "0.5", "--dataset-options",
                                    '{"image_fraction": 0.25}'], "give the image fraction once"),
    ("train-image-fraction-folder", ["train", "--workdir", "{w}/new", "--image-fraction", "0.5", "--dataset",
                                     "folder"], "expected path=<folder of videos>"),
    ("train-init-weights-missing", ["train", "--workdir", "{w}/new", "--init-weights", "{w}/nope.safetensors"],
     "init_weights: no weight file at"),
    ("train-init-weights-not-weights", ["train", "--workdir", "{w}/new", "--init-weights", "{w}/file"],
     "is not a readable safetensors file"),
    ("train-workdir-is-a-file", ["train", "--workdir", "{w}/file"], "is a file, not a directory"),
    ("train-workdir-under-a-file", ["train", "--workdir", "{w}/file/run"], "is a file, not a directory"),
    ("train-workdir-of-another-stage", ["train", "--stage", "tsr", "--workdir", "{w}/run"],
     r"holds a run of another model \(stage 'base'; this run: stage 'tsr'\)"),
    ("train-workdir-of-another-target", ["train", "--target", "eps", "--workdir", "{w}/run"], "target None"),
    ("train-workdir-not-a-run", ["train", "--workdir", "{w}/orphan"], "checkpoints but no config.json"),
    ("train-workdir-bad-config", ["train", "--workdir", "{w}/badjson"], "is not the config.json of an `ivlib train`"),
    ("train-corrupt-checkpoint", ["train", "--workdir", "{w}/run"],
     "the newest checkpoint, step 2 .* cannot be read.* resume from step 1"),
    # distill
    ("distill-no-teacher", ["distill", "--workdir", "{w}/new"], "required: --teacher"),
    ("distill-teacher-missing", ["distill", "--teacher", "{w}/nope.safetensors", "--workdir", "{w}/new"],
     "teacher: no weight file at"),
    ("distill-teacher-not-weights", ["distill", "--teacher", "{w}/file", "--workdir", "{w}/new"],
     "is not a readable safetensors file"),
    ("distill-phase-unknown", ["distill", "--teacher", "{a}/toy_base.safetensors", "--phase", "fast", "--workdir",
                               "{w}/new"], "--phase: invalid choice"),
    ("distill-progressive-no-steps", ["distill", "--teacher", "{a}/toy_base.safetensors", "--phase", "progressive",
                                      "--workdir", "{w}/new"], "needs student_steps >= 1"),
    ("distill-progressive-from-a-trained-stage", ["distill", "--teacher", "{a}/toy_base.safetensors", "--phase",
                                                  "progressive", "--student-steps", "16", "--workdir", "{w}/new"],
     "is not guided-distilled: run --phase guided on it first"),
    ("distill-w-range", ["distill", "--teacher", "{a}/toy_base.safetensors", "--w-min", "3", "--w-max", "1",
                         "--workdir", "{w}/new"], "need 0 <= w_min <= w_max"),
    ("distill-steps-0", ["distill", "--teacher", "{a}/toy_base.safetensors", "--steps", "0", "--workdir", "{w}/new"],
     "--steps: expected a positive integer"),
    ("distill-teacher-of-another-stage", ["distill", "--teacher", "{a}/toy_base.safetensors", "--stage", "tsr",
                                          "--workdir", "{w}/new"], "is the toy/base stage, not toy/tsr"),
    ("distill-workdir-of-a-train-run", ["distill", "--teacher", "{a}/toy_base.safetensors", "--workdir", "{w}/run"],
     "holds another run"),
    ("distill-workdir-is-a-file", ["distill", "--teacher", "{a}/toy_base.safetensors", "--workdir", "{w}/file"],
     "is a file, not a directory"),
    ("distill-halvings-guided", ["distill", "--teacher", "{a}/toy_base.safetensors", "--steps-per-halving", "10",
                                 "--workdir", "{w}/new"], "--steps-per-halving runs progressive halvings"),
    ("distill-halvings-unreachable", ["distill", "--teacher", "{a}/toy_base.safetensors", "--phase", "progressive",
                                      "--steps-per-halving", "10", "--teacher-steps", "32", "--student-steps", "6",
                                      "--workdir", "{w}/new"], "6 steps cannot be reached by halving 32"),
    # eval
    ("eval-num-videos-1", ["eval", "--num-videos", "1"], "--num-videos must be at least 2"),
    ("eval-num-videos-0", ["eval", "--num-videos", "0"], "--num-videos: expected a positive integer"),
    ("eval-batch-size-0", ["eval", "--batch-size", "0"], "--batch-size: expected a positive integer"),
    ("eval-steps-string", ["eval", "--steps", "ten"], "--steps: expected a positive integer"),
    ("eval-guidance-nan", ["eval", "--guidance", "nan"], "--guidance: expected a finite number"),
    ("eval-config-unknown", ["eval", "--config", "nope"], "unknown config name 'nope'"),
    ("eval-stage-unknown", ["eval", "--stages", "nope"], r"unknown stage\(s\)"),
    ("eval-dataset-unknown", ["eval", "--dataset", "nope"], "unknown dataset 'nope'"),
    ("eval-dataset-options-bad-json", ["eval", "--dataset-options", "{"], "JSON object"),
    ("eval-out-is-a-directory", ["eval", "--out", "{w}/empty"], "is a directory"),
    ("eval-out-under-a-file", ["eval", "--out", "{w}/file/rows.json"], "is a file, not a directory"),
    # export
    ("export-no-workdir", ["export"], "required: --workdir"),
    ("export-workdir-missing", ["export", "--workdir", "{w}/missing"], "is not a directory"),
    ("export-workdir-is-a-file", ["export", "--workdir", "{w}/file"], "is not a directory"),
    ("export-workdir-not-a-run", ["export", "--workdir", "{w}/empty"], "not an `ivlib train` work directory"),
    ("export-workdir-orphan", ["export", "--workdir", "{w}/orphan"], "not an `ivlib train` work directory"),
    ("export-bad-config", ["export", "--workdir", "{w}/badjson"], "is not the config.json of an `ivlib train`"),
    ("export-no-checkpoint", ["export", "--workdir", "{w}/fresh"], "no checkpoint in"),
    ("export-corrupt-checkpoint", ["export", "--workdir", "{w}/broken"], "no readable checkpoint in"),
    ("export-checkpoint-of-another-stage", ["export", "--workdir", "{w}/tsr"], "no readable checkpoint in"),
    ("export-out-is-a-directory", ["export", "--workdir", "{w}/run", "--out", "{w}/empty"], "is a directory"),
    ("export-out-under-a-file", ["export", "--workdir", "{w}/run", "--out", "{w}/file/ema.safetensors"], "is a file"),
    # train-evaluator
    ("train-evaluator-no-workdir", ["train-evaluator"], "required: --workdir"),
    ("train-evaluator-steps-0", ["train-evaluator", "--workdir", "{w}/new", "--steps", "0"], "--steps: expected"),
    ("train-evaluator-batch-nan", ["train-evaluator", "--workdir", "{w}/new", "--batch-size", "nan"], "--batch-size"),
    ("train-evaluator-workdir-is-a-file", ["train-evaluator", "--workdir", "{w}/file"], "is a file, not a directory"),
    ("train-evaluator-workdir-of-a-run", ["train-evaluator", "--workdir", "{w}/run"], "holds an `ivlib train` run"),
    # pretrain-text
    ("pretrain-text-steps-0", ["pretrain-text", "--steps", "0"], "--steps: expected a positive integer"),
    ("pretrain-text-batch-string", ["pretrain-text", "--batch-size", "big"], "--batch-size: expected a positive"),
    ("pretrain-text-lr-negative", ["pretrain-text", "--learning-rate", "-1"], "--learning-rate: expected a pos"),
    ("pretrain-text-out-under-a-file", ["pretrain-text", "--out", "{w}/file/t5.safetensors"], "is a file"),
    ("pretrain-text-out-suffix", ["pretrain-text", "--out", "{w}/t5.bin"], "must end in .safetensors"),
    # train-attributes
    ("train-attributes-no-workdir", ["train-attributes"], "required: --workdir"),
    ("train-attributes-steps-0", ["train-attributes", "--workdir", "{w}/new", "--steps", "0"], "--steps: expected"),
    ("train-attributes-seed-negative", ["train-attributes", "--workdir", "{w}/new", "--seed", "-1"], "--seed"),
    ("train-attributes-workdir-is-a-file", ["train-attributes", "--workdir", "{w}/file"], "is a file, not a dir"),
    ("train-attributes-workdir-of-a-run", ["train-attributes", "--workdir", "{w}/run"], "holds an `ivlib train` run"),
    ("train-attributes-out-is-a-directory", ["train-attributes", "--workdir", "{w}/new", "--out", "{w}/empty"],
     "is a directory"),
    # demo, and no command at all
    ("demo-frames-0", ["demo", "--frames", "0"], "--frames: expected a positive integer"),
    ("demo-out-is-a-directory", ["demo", "--out", "{w}/empty"], "is a directory"),
    ("no-command", [], "required: command"),
    ("unknown-command", ["sing"], "invalid choice: 'sing'"),
]


@pytest.mark.parametrize("name,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_error_line_exit_2_and_writes_nothing(name, argv, expected, world, tmp_path, monkeypatch,
                                                                  capsys):
    import ivlib.weights

    monkeypatch.chdir(tmp_path)  # default outputs (outputs/video.mp4, ...) would land here
    monkeypatch.delenv("IVLIB_DEBUG", raising=False)
    if name == "generate-truncated-weights":
        monkeypatch.setattr(ivlib.weights, "WEIGHTS_DIR", world / "weights")
    argv = [a.replace("{w}", str(world)).replace("{a}", str(ASSETS / "weights")) for a in argv]
    before = _snapshot(world, tmp_path, ASSETS)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert status == 2, (out, err)
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], (out, err)
    assert __import__("re").search(expected, errors[0]), errors[0]
    assert "Traceback" not in out + err
    assert _snapshot(world, tmp_path, ASSETS) == before, "a file was written, changed or removed"


def test_export_falls_back_to_the_last_good_checkpoint_and_leaves_the_run_alone(world, tmp_path, capsys):
    from ivlib.configs import get_stage
    from ivlib.pretrained import load_weights

    before = _snapshot(world)
    out = tmp_path / "ema.safetensors"
    assert cli.main(["export", "--workdir", str(world / "run"), "--out", str(out)]) == 0
    assert "could not be read" in capsys.readouterr().out and _snapshot(world) == before
    _, _, params = load_weights(get_stage("toy", "base"), out)  # the good step-1 checkpoint's EMA weights
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(params))


def test_the_table_covers_every_command():
    commands = {c[1][0] for c in CASES if c[1]}
    subcommands = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert set(subcommands.choices) <= commands


def test_debug_shows_the_traceback_and_a_bug_still_shows_its_own(monkeypatch, capsys):
    monkeypatch.setenv("IVLIB_DEBUG", "1")
    assert cli.main(["generate", "a red 3 moving left", "--config", "nope"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: unknown config name")
    monkeypatch.delenv("IVLIB_DEBUG")
    assert cli.main(["--debug", "export", "--workdir", "/nonexistent/run"]) == 2
    assert "Traceback" in capsys.readouterr().err

    def bug(args):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(cli, "_export", bug)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["export", "--workdir", "/nonexistent/run"])


def test_a_surprising_value_is_one_warning_line_not_an_error(monkeypatch, capsys):
    """--guidance -5 is legal (it steers away from the prompt): one `warning:` line; the config's mistake
    after it is still the one error."""
    assert cli.main(["generate", "a red 3 moving left", "--guidance", "-5", "--aug-snr", "0", "--config", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("warning:")]
    assert len(warned) == 2 and "w = -5 < 0" in warned[0] and "steers away" in warned[0]
    assert "aug_snr = 0" in warned[1] and err[-1].startswith("error: unknown config name")


# ---------------------------------------------------------------- unknown words in the library
def test_toy_captions_never_trip_the_unknown_word_check():
    from ivlib.data import DATASETS, make_dataset
    from ivlib.text import check_toy_words, default_text_encoder

    prompts = ["a red 7 moving left", "the white digit 3 bouncing up and down",
               "a small blue circle standing still and a green 1 moving right", "an outlined big yellow triangle",
               "A Red 7 Moving Left", "", "   "]  # the tokenizer lower-cases; "" is the null prompt of guidance
    for name in DATASETS[:-1]:  # every toy dataset (not "folder": the user's own captions)
        for split in ("train", "test"):
            prompts += list(make_dataset(name, frames=2, height=8, width=8, split=split).batch(0, 64)["caption"])
    assert check_toy_words(prompts) == prompts
    assert default_text_encoder().check_words(prompts) == prompts


def test_unknown_words_name_the_nearest_known_ones():
    from ivlib.text import check_toy_words, text_encoder
    from ivlib.text.encoder import TextEncoder

    with pytest.raises(ValueError, match=r"'purple' \(the colours it knows: red, green, blue, yellow, cyan, magenta"):
        check_toy_words(["a purple 3 moving left"])
    with pytest.raises(ValueError, match=r"words 'pink' \(the colours.*'hexagon' \(the shapes it knows: circle"):
        check_toy_words(["a red 3 moving left", "a pink hexagon"])  # every prompt, each unknown word once
    with pytest.raises(ValueError, match=r"'circel' \(try 'circle'\).*allow_unknown_words=True"):
        check_toy_words(["a big red circel"])
    with pytest.raises(ValueError, match=r"'37' \(one digit at a time"):
        check_toy_words(["the red digit 37 moving left"])
    enc = text_encoder()
    with pytest.raises(ValueError, match="'purple'"):
        enc.check_words(["a purple 3"])
    t5_like = TextEncoder(enc.tokenizer, enc.encoder, 8, "no vocabulary")  # a real T5 has no unknown words
    assert t5_like.check_words(["a purple 3"]) == ["a purple 3"]


def _bare_cascade():
    """The shipped toy cascade's stages and text encoder, without networks: enough to check prompts."""
    from ivlib.cascade import Cascade
    from ivlib.configs import get_cascade
    from ivlib.text import default_text_encoder

    stages = get_cascade("toy")
    return Cascade(stages, [None] * 3, [None] * 3, default_text_encoder())


def test_cascade_sample_checks_words_before_sampling(monkeypatch):
    import ivlib.cascade

    cascade = _bare_cascade()
    with pytest.raises(ValueError, match="'purple'"):
        cascade.sample(["a purple 3 moving left"], jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="'purple'"):
        cascade.sample_final(["a red 3 moving left"] * 3 + ["a purple 3 moving left"], jax.random.PRNGKey(0),
                             batch_size=2)
    seen = []
    monkeypatch.setattr(ivlib.cascade, "sample_stage", lambda stage, *a, **k: seen.append(stage.name) or np.zeros(1))
    cascade.sample(["a purple 3 moving left"], jax.random.PRNGKey(0), allow_unknown_words=True)
    cascade.sample([""], jax.random.PRNGKey(0))  # the null prompt of classifier-free guidance
    assert seen == ["base", "tsr", "ssr"] * 2


def test_the_prompt_widget_shows_the_message_instead_of_a_video(monkeypatch, capsys):
    from ivlib import widgets

    cascade = _bare_cascade()
    with pytest.raises(ValueError, match="'purple'"):
        widgets.render_prompt(cascade, "a purple 3 moving left")
    widget = widgets.prompt_widget(cascade, "a purple 3 moving left")
    widget.update()
    assert "error: the toy text encoder does not know the word 'purple'" in capsys.readouterr().out


def test_evaluate_cascade_checks_captions_before_loading_anything(monkeypatch):
    import ivlib.data
    import ivlib.evaluation

    class Captions:
        def batch(self, index, size):
            return {"caption": ["a purple 3 moving left"] * size, "video": np.zeros((size, 1, 1, 1, 3))}

    monkeypatch.setattr(ivlib.data, "make_dataset", lambda *a, **k: Captions())
    monkeypatch.setattr(ivlib.evaluation, "load_evaluator", lambda: pytest.fail("loaded the evaluator"))
    with pytest.raises(ValueError, match="'purple'"):
        ivlib.evaluation.evaluate_cascade(_bare_cascade(), num_videos=4)


# ---------------------------------------------------------------- settings: errors and warnings
@pytest.mark.parametrize("kw,match", [({"num_steps": 0}, "num_steps"), ({"num_steps": 2.5}, "num_steps"),
                                      ({"guidance": float("nan")}, "guidance"), ({"guidance": "3"}, "guidance"),
                                      ({"aug_snr": float("nan")}, "aug_snr"), ({"sampler": "euler"}, "sampler"),
                                      ({"threshold": "soft"}, "threshold"), ({"gamma": 2.0}, "gamma"),
                                      ({"oscillate": (5.0, 1.0, -1)}, "constant_steps")])
def test_settings_no_sampler_can_run_raise(kw, match):
    from ivlib.cascade import SamplerSettings

    with pytest.raises(ValueError, match=match):
        SamplerSettings(**kw)


@pytest.mark.parametrize("kw,match", [({"guidance": -5.0}, "steers away from it"),
                                      ({"oscillate": (15.0, -2.0, 4)}, "low weight w = -2"),
                                      ({"aug_snr": 0.0}, "pure noise"), ({"aug_snr": -3.0}, "pure noise"),
                                      ({"num_steps": 8, "oscillate": (5.0, 1.0, 8)}, "never oscillates"),
                                      ({"num_steps": 2**25}, "more than the float32 noise schedule resolves")])
def test_surprising_settings_warn(kw, match):
    from ivlib.cascade import SamplerSettings

    with pytest.warns(UserWarning, match=match):
        SamplerSettings(**kw)


def test_ordinary_settings_do_not_warn():
    from ivlib.cascade import SamplerSettings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SamplerSettings(num_steps=256, guidance=15.0, aug_snr=float("inf"), oscillate=(15.0, 1.0, 8))


def test_idle_steps_of_the_cosine_grid():
    from ivlib.diffusion import idle_steps

    assert idle_steps(64) == 0 and idle_steps(10**6) == 0
    assert idle_steps(10**7) > 0  # float32 no longer tells neighbouring log-SNRs apart
    assert idle_steps(2**25) >= 2**23  # half the grid in [0.5, 1], where float32 has 2**23 values


def test_augmentation_at_snr_zero_or_below_is_pure_noise_not_nan():
    from ivlib.conditioning import augment_for_sampling
    from ivlib.schedules import LOGSNR_MIN

    cond = jax.numpy.ones((2, 1, 2, 2, 3))
    for snr in (0.0, -3.0):
        out, logsnr = augment_for_sampling(cond, jax.random.PRNGKey(0), snr)
        assert np.all(np.isfinite(out)) and np.allclose(logsnr, LOGSNR_MIN)


# ---------------------------------------------------------------- the training loop keeps a corrupt checkpoint
def test_fit_stops_at_an_unreadable_newest_checkpoint_and_changes_nothing(tmp_path):
    import orbax.checkpoint as ocp

    from ivlib.loop import checkpoint_manager, fit, restore_latest, abstract_like

    state = {"step": jax.numpy.int32(0), "w": jax.numpy.ones(3)}
    manager = checkpoint_manager(tmp_path / "checkpoints", 3)
    for step in (1, 2):
        manager.save(step, args=ocp.args.StandardSave(dict(state, step=jax.numpy.int32(step))))
        manager.wait_until_finished()
    _corrupt(tmp_path / "checkpoints" / "2")
    before = _snapshot(tmp_path)
    step_fn = lambda s, batch, key: pytest.fail("trained from a state it should not have")
    with pytest.raises(ValueError, match=r"step 2 .* cannot be read.*resume from step 1.*mv "):
        fit(step_fn, state, lambda k: None, workdir=tmp_path, steps=4, progress=False,
            on_start=lambda step: pytest.fail("started"))
    assert _snapshot(tmp_path) == before
    restored = restore_latest(checkpoint_manager(tmp_path / "checkpoints", 3), abstract_like(state))
    assert int(restored["step"]) == 1  # read-only use (export) still falls back to the last good one


def test_every_sampler_of_the_library_is_a_choice_of_the_cli():
    from ivlib.diffusion import SAMPLERS

    generate = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["generate"]
    sampler = next(a for a in generate._actions if a.dest == "sampler")
    assert tuple(sampler.choices) == SAMPLERS


def test_every_remat_policy_of_the_unet_is_a_choice_of_train():
    from ivlib.nn.unet import REMAT

    train = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["train"]
    remat = next(a for a in train._actions if a.dest == "remat")
    assert tuple(remat.choices) == REMAT and remat.default is None
