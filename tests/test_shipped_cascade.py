"""The shipped toy cascade and `ivlib generate` (what `make demo` runs; chapter 05)."""

import json
import pathlib

import numpy as np
import pytest

from ivlib.cascade import Cascade
from ivlib.cli import main
from ivlib.configs import get_cascade
from ivlib.pretrained import load_stage
from ivlib.weights import WEIGHTS_DIR, read_metadata, shipped_weights_path


def test_every_toy_stage_ships_weights_made_by_a_recorded_command():
    for stage in get_cascade("toy"):
        meta = read_metadata(shipped_weights_path("toy", stage.name))
        assert meta["stage"] == stage.name and meta["steps"] > 0
        assert meta["train_config"]["stage"] == stage.name
        if stage.kind != "base":
            assert meta["train_config"]["aug_max_t"] > 0  # the shipped SR stages use augmentation (§2.5)
    noaug = read_metadata(shipped_weights_path("toy", "ssr_noaug"))  # chapter 06's ablation
    assert noaug["train_config"]["aug_max_t"] == 0
    assert noaug["steps"] == read_metadata(shipped_weights_path("toy", "ssr"))["steps"]


def test_pretrained_runs_the_whole_cascade_and_each_stage_follows_its_input():
    """Every shipped stage runs, and each SR stage's video is closer to its own upsampled input than to
    another prompt's: the stages really are conditioned on the video they are given (chapter 05)."""
    import jax

    from ivlib.cascade import SamplerSettings
    from ivlib.conditioning import condition_video

    cascade = Cascade.pretrained("toy")
    assert [s.name for s in cascade.stages] == [s.name for s in get_cascade("toy")]
    prompts = ["a red 3 moving left", "a blue 7 moving up"]
    videos = cascade.sample(prompts, jax.random.PRNGKey(0), SamplerSettings(num_steps=8, guidance=1.0))
    for stage, video in zip(cascade.stages, videos):
        assert video.shape == (len(prompts),) + stage.output_shape + (3,), stage.name
        assert np.all(np.isfinite(video)) and np.abs(video).max() <= 1.0 + 1e-6, stage.name  # static clipping
    for stage, low, high in zip(cascade.stages[1:], videos, videos[1:]):
        cond = np.asarray(condition_video(stage, low))
        own = np.mean((np.asarray(high) - cond) ** 2, axis=(1, 2, 3, 4))
        swapped = np.mean((np.asarray(high) - cond[::-1]) ** 2, axis=(1, 2, 3, 4))
        assert np.all(own < 0.5 * swapped), (stage.name, own, swapped)


def test_generate_writes_a_text_conditioned_video_of_16_frames_at_32x32(tmp_path, capsys):
    import mediapy

    out = tmp_path / "video.mp4"
    main(["generate", "the red digit 3 moving left", "--out", str(out), "--steps", "2", "--sr-steps", "2",
          "--scale", "1", "--all-stages"])
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "16x32x32" in printed
    video = mediapy.read_video(str(out))
    assert video.shape[:3] == (16, 32, 32)
    for name, frames in (("base", 8), ("tsr", 16), ("ssr", 16)):
        assert mediapy.read_video(str(tmp_path / f"video_{name}.mp4")).shape[0] == frames


def test_generate_rejects_an_empty_prompt(tmp_path, capsys):
    assert main(["generate", "  ", "--out", str(tmp_path / "x.mp4")]) == 2
    assert capsys.readouterr().err == "error: the prompt is empty; give a description such as 'a red 3 moving left'\n"
    assert not (tmp_path / "x.mp4").exists()


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="ivlib train --config toy --stage tsr"):
        load_stage("toy", "tsr", path=tmp_path / "nothing.safetensors")


def test_shipped_evaluations_record_their_commands():
    from ivlib.configs import toy

    for name in ("toy_base.eval.json", "toy_cascade.eval.json"):
        result = json.loads((WEIGHTS_DIR / name).read_text())
        assert result["command"].startswith("ivlib eval")
        assert 0 <= result["model"]["r_precision"] <= 1 and np.isfinite(result["model"]["fvd"])
        assert result["settings"]["base"]["guidance"] == toy.GUIDANCE  # made with the default weight, as said
    ablation = json.loads((WEIGHTS_DIR / "toy_ssr.augmentation.json").read_text())
    assert {r["model"] for r in ablation["rows"]} == {"ground truth", "with augmentation", "without augmentation"}


def test_default_guidance_is_the_sweeps_best():
    import json

    from ivlib.configs import toy
    from ivlib.evaluation import best_guidance
    from ivlib.weights import shipped_weights_path

    sweep = json.loads(shipped_weights_path("toy", "base").with_suffix(".guidance.json").read_text())
    assert toy.GUIDANCE == best_guidance(sweep["rows"])


def test_best_guidance_trades_alignment_against_fidelity():
    from ivlib.evaluation import best_guidance

    row = lambda w, fvd, digit: {"guidance": w, "threshold": "static", "oscillate": None, "fvd": fvd,
                                 "attributes": {"digit": digit, "colour": 1.0, "motion": 0.5}}
    rows = [row(0.0, 40.0, 0.1), row(1.0, 41.0, 0.2), row(3.0, 43.0, 0.3), row(6.0, 60.0, 0.9)]
    assert best_guidance(rows) == 3.0  # w = 6 aligns best but its FVD is 50 % worse
    assert best_guidance(rows, fvd_tolerance=1.0) == 6.0
    assert best_guidance(rows[:1] + [row(1.0, 40.0, 0.1)]) == 0.0  # ties go to the smaller weight


def test_chapter_07_models_are_the_arms_of_its_experiment():
    """The weights chapter 07 samples are the arms its table scores: same start, steps and batches."""
    result = json.loads((WEIGHTS_DIR / "toy_base.joint.json").read_text())
    for name, arm, fraction, mask in (("base_video", "video", 0.0, True), ("base_joint", "joint-0.5", 0.5, True),
                                      ("base_nomask", "joint-0.5-nomask", 0.5, False)):
        meta = read_metadata(shipped_weights_path("toy", name))
        cfg = meta["train_config"]
        assert meta["steps"] == result["steps"] and cfg["init_weights"] == result["init"]
        assert cfg["dataset_options"]["image_fraction"] == fraction and cfg["image_mask"] == mask
        assert f"--workdir {cfg['workdir']} " in result["commands"][arm] + " "
    assert {r["arm"] for r in result["rows"]} >= {"ground truth", "start", "video", "joint-0.5", "joint-0.5-nomask"}
    start = read_metadata(WEIGHTS_DIR / pathlib.Path(result["init"]).name)  # the step-4000 base, shipped for this
    assert start["steps"] == 4000 == next(r for r in result["rows"] if r["arm"] == "start")["steps"]


def test_loading_weights_builds_the_network_from_shapes_only(monkeypatch):
    """No parameter is initialised before the file is read (a 5.6B-parameter stage would allocate 22 GB)."""
    import jax

    import ivlib.pretrained as pretrained

    concrete = []

    class Spy(pretrained.VideoUNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            concrete.append(not isinstance(self.conv_in.kernel[...], jax.core.Tracer))

    monkeypatch.setattr(pretrained, "VideoUNet", Spy)
    stage, model_def, params = pretrained.load_stage("toy", "base")
    assert concrete == [False]
    monkeypatch.undo()
    from flax import nnx

    from ivlib.nn.model_def import ModelDef
    from ivlib.weights import load_params

    built = ModelDef.split(pretrained.VideoUNet(stage.unet, rngs=nnx.Rngs(0)))[1]  # the old way: a real network
    expected = load_params(shipped_weights_path("toy", "base"), built)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    x = np.zeros((1, 8, 16, 16, 3), np.float32)
    np.testing.assert_array_equal(model_def.bind(params)(x, np.zeros(1)), ModelDef.split(
        pretrained.VideoUNet(stage.unet, rngs=nnx.Rngs(0)))[0].bind(expected)(x, np.zeros(1)))


def test_pretrained_runs_other_weight_files_as_the_networks_they_were_trained_as():
    """`Cascade.pretrained(weights=...)`: the base before it grew relative keys (chapter 04, "Which way?") loads
    without them, the shipped one with them; a weight file for a stage the cascade does not run is refused."""
    import jax

    before = shipped_weights_path("toy", "base_step8000")
    old = Cascade.pretrained("toy", stages=["base"], weights={"base": before})
    new = Cascade.pretrained("toy", stages=["base"])
    assert old.stages[0].unet.relative_keys is False and new.stages[0].unet.relative_keys is True
    assert read_metadata(before)["steps"] == 8000
    _, _, params = load_stage("toy", "base", path=before)
    for a, b in zip(jax.tree.leaves(old.params[0]), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\['ssr'\] are not stages of this cascade"):
        Cascade.pretrained("toy", stages=["base"], weights={"ssr": before})


def test_the_shipped_base_grew_relative_keys_from_the_step_8000_base_by_its_recorded_command():
    meta = read_metadata(shipped_weights_path("toy", "base"))
    init = pathlib.Path(meta["train_config"]["init_weights"])
    assert init.name == "toy_base_step8000.safetensors" and (WEIGHTS_DIR / init.name).is_file()
    assert meta["total_steps"] == read_metadata(WEIGHTS_DIR / init.name)["steps"] + meta["steps"] == 10000
    assert meta["commands"][-1].endswith(f"--init-weights {init}") and f"--steps {meta['steps']} " in meta["commands"][-1]
    assert load_stage("toy", "base")[0].unet.relative_keys
