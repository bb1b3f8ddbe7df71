"""The training loop: exact resume, the NaN guard, and clear errors (chapter 04)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivlib import trainer
from ivlib.stage import Stage
from ivlib.nn.unet import Level, UNetConfig
from ivlib.trainer import TrainConfig, TrainingDiverged, train
from ivlib.weights import load_params

TINY = Stage("tiny", "base", UNetConfig(4, 8, 8, (Level(8, 1, False, "conv"),), text_dim=64, head_dim=8, emb_dim=16))


def _cfg(workdir, **kw):
    base = dict(workdir=str(workdir), steps=4, batch_size=4, checkpoint_every=2, log_every=1, warmup_steps=2,
                dataset_options={"max_objects": 1})
    return TrainConfig(**(base | kw))


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state["params"])]


def test_resume_matches_an_uninterrupted_run(tmp_path):
    _, full = train(_cfg(tmp_path / "a"), progress=False, stage=TINY)
    train(_cfg(tmp_path / "b", steps=2), progress=False, stage=TINY)          # "interrupted" after step 2
    _, resumed = train(_cfg(tmp_path / "b"), progress=False, stage=TINY)      # same command, resumes at 2
    assert int(resumed["step"]) == 4
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    ema = load_params(tmp_path / "b" / "ema.safetensors", resumed["ema"])
    for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(resumed["ema"])):
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=2e-3)  # stored as float16


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = trainer.make_train_step

    def poisoned(*args, **kwargs):
        step_fn = real(*args, **kwargs)

        def wrapped(state, batch, key):
            state, metrics = step_fn(state, batch, key)
            bad = state["step"] >= 3
            return state, dict(metrics, loss=jnp.where(bad, jnp.nan, metrics["loss"]))

        return wrapped

    monkeypatch.setattr(trainer, "make_train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="step 3"):
        train(_cfg(tmp_path), progress=False, stage=TINY)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    monkeypatch.setattr(trainer, "make_train_step", real)
    _, state = train(_cfg(tmp_path), progress=False, stage=TINY)   # resumes from step 2 and finishes
    assert int(state["step"]) == 4


@pytest.mark.parametrize("kw,match", [({"steps": 0}, "steps"), ({"batch_size": -1}, "batch_size"),
                                      ({"text_dropout": 1.0}, "text_dropout"), ({"aug_max_t": 1.5}, "aug_max_t")])
def test_bad_settings_raise(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        train(_cfg(tmp_path, **kw), progress=False, stage=TINY)


def test_unwritable_workdir_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not a writable directory"):
        train(_cfg(blocker / "run"), progress=False, stage=TINY)
