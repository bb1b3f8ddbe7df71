"""`ivlib distill` end to end on a tiny stage (chapter 09): guided, then progressive distillation, their weight
files, sampling the students, exact resume, and teachers that cannot teach."""

import dataclasses
import json
import shlex

import jax
import numpy as np
import pytest

from ivlib.cascade import sample_stage
from ivlib.distiller import DistillConfig, distill, distill_command, distill_halvings, halvings, lineage
from ivlib.nn.unet import Level, UNetConfig
from ivlib.pretrained import load_weights
from ivlib.stage import Stage
from ivlib.text import EmbeddingCache, text_encoder
from ivlib.trainer import TrainConfig, train, train_command
from ivlib.weights import read_metadata

TINY = Stage("tiny", "base", UNetConfig(4, 8, 8, (Level(8, 1, False, "attention"),), text_dim=64, head_dim=8,
                                        emb_dim=16))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny text-to-video stage, trained for 3 steps: a weight file of `ivlib train`."""
    workdir = tmp_path_factory.mktemp("teacher")
    cfg = TrainConfig(workdir=str(workdir), steps=3, batch_size=4, warmup_steps=1, log_every=1,
                      dataset_options={"max_objects": 1})
    train(cfg, progress=False, stage=TINY)
    return workdir / "ema.safetensors"


@pytest.fixture(scope="module")
def cache():
    return EmbeddingCache(text_encoder("toy-t5-random", 32))


def _cfg(workdir, teacher, **kw):
    base = dict(workdir=str(workdir), teacher=str(teacher), steps=2, batch_size=4, warmup_steps=1,
                checkpoint_every=1, log_every=1, dataset_options={"max_objects": 1})
    return DistillConfig(**(base | kw))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_guided_then_progressive_students_are_sampled_in_their_steps(tmp_path, teacher, cache):
    stage, _, state = distill(_cfg(tmp_path / "guided", teacher), progress=False, text_cache=cache, stage=TINY)
    guided = tmp_path / "guided" / "ema.safetensors"
    meta = read_metadata(guided)
    assert meta["guidance_embedding"] and meta["sampling_steps"] is None and meta["steps"] == 2
    assert meta["teacher"]["train_config"]["steps"] == 3 and meta["distill_config"]["phase"] == "guided"
    student_stage, student_def, params = load_weights(TINY, guided)
    assert student_stage.unet.guidance_embedding
    for a, b in zip(_leaves(params), _leaves(state["ema"])):
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=2e-3)  # stored as float16

    _, _, prog_state = distill(_cfg(tmp_path / "progressive", guided, phase="progressive", student_steps=2),
                               progress=False, text_cache=cache, stage=TINY)
    fast = tmp_path / "progressive" / "ema.safetensors"
    assert read_metadata(fast)["sampling_steps"] == 2 and read_metadata(fast)["teacher"]["distill_config"]["phase"] == "guided"
    commands = read_metadata(fast)["commands"]  # the teacher's training, the guided phase, then this one
    assert commands[0] == train_command(TrainConfig(**read_metadata(teacher)["train_config"]))
    assert [c.split()[:5] for c in commands[1:]] == [["ivlib", "distill", "--teacher", str(teacher), "--phase"]] + \
        [["ivlib", "distill", "--teacher", str(guided), "--phase"]]
    assert "--phase progressive --student-steps 2" in commands[2] and lineage(read_metadata(fast)) == commands
    student_stage, student_def, params = load_weights(TINY, fast)
    text, mask = cache.get(["the red digit 3 moving left", "the blue digit 7 standing still"])
    videos = sample_stage(student_stage, student_def, params, jax.random.PRNGKey(0), text=text, text_mask=mask,
                          num_steps=2, sampler="stochastic", guidance=3.0)
    assert videos.shape == (2, 4, 8, 8, 3) and np.all(np.isfinite(np.asarray(videos)))

    with pytest.raises(ValueError, match="samples in 2 steps: its student samples in 1, not 4"):
        distill(_cfg(tmp_path / "again", fast, phase="progressive", student_steps=4), progress=False,
                text_cache=cache, stage=TINY)
    with pytest.raises(ValueError, match="already guided-distilled"):
        distill(_cfg(tmp_path / "again", guided), progress=False, text_cache=cache, stage=TINY)
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


def test_an_interrupted_distillation_resumes_exactly(tmp_path, teacher, cache):
    _, _, full = distill(_cfg(tmp_path / "a", teacher, steps=3), progress=False, text_cache=cache, stage=TINY)
    distill(_cfg(tmp_path / "b", teacher, steps=1), progress=False, text_cache=cache, stage=TINY)
    _, _, resumed = distill(_cfg(tmp_path / "b", teacher, steps=3), progress=False, text_cache=cache, stage=TINY)
    assert int(resumed["step"]) == 3
    for a, b in zip(_leaves(full["params"]), _leaves(resumed["params"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    other = tmp_path / "other.safetensors"
    other.write_bytes(teacher.read_bytes())
    with pytest.raises(ValueError, match="holds another run"):  # another teacher: its checkpoints mean something else
        distill(_cfg(tmp_path / "b", other, steps=4), progress=False, text_cache=cache, stage=TINY)


def test_a_distill_command_parses_back_to_its_config():
    from ivlib.cli import _distill_config, build_parser

    cfg = DistillConfig(workdir="runs/x", teacher="t.safetensors", phase="progressive", student_steps=4, steps=300,
                        batch_size=16, learning_rate=3e-5, warmup_steps=5, ema_decay=0.995, w_min=0.5, w_max=3.0,
                        dataset_options={"max_objects": 1}, seed=2, stage="tsr")
    args = build_parser().parse_args(shlex.split(distill_command(cfg))[1:])
    back = _distill_config(args)
    keep = ("checkpoint_every", "keep_checkpoints", "log_every")  # not in the command: they do not shape the weights
    assert dataclasses.replace(back, **{k: getattr(cfg, k) for k in keep}) == cfg


def test_halvings_reach_the_student_steps_or_say_why_not():
    assert halvings(32, 8) == [16, 8] and halvings(16, 8) == [8] and halvings(256, 2) == [128, 64, 32, 16, 8, 4, 2]
    for teacher_steps, student_steps in ((32, 6), (8, 8), (8, 16), (12, 2)):
        with pytest.raises(ValueError, match="cannot be reached by halving"):
            halvings(teacher_steps, student_steps)


def test_one_command_runs_every_halving_each_from_the_last(tmp_path, teacher, cache):
    distill(_cfg(tmp_path / "guided", teacher), progress=False, text_cache=cache, stage=TINY)
    guided = tmp_path / "guided" / "ema.safetensors"
    cfg = _cfg(tmp_path / "prog", guided, phase="progressive", student_steps=2)
    distill_halvings(cfg, teacher_steps=8, steps_per_halving=1, progress=False, text_cache=cache, stage=TINY)
    four, two = (read_metadata(tmp_path / "prog" / f"{n}-steps" / "ema.safetensors") for n in (4, 2))
    assert four["sampling_steps"] == 4 and four["distill_config"]["teacher"] == str(guided)
    assert two["sampling_steps"] == 2 and two["distill_config"]["teacher"] == str(tmp_path / "prog" / "4-steps" / "ema.safetensors")
    assert (tmp_path / "prog" / "ema.safetensors").read_bytes() == (tmp_path / "prog" / "2-steps" / "ema.safetensors").read_bytes()
    assert two["steps"] == four["steps"] == 1 and len(two["commands"]) == 4  # training, guided, the two halvings
