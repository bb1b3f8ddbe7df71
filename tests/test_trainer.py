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


@pytest.mark.parametrize("options", [{"max_objects": 1}, {"max_objects": 1, "image_fraction": 0.5}],
                         ids=["videos", "mixed-batches"])  # chapter 07's joint training
def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, options):
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
        train(_cfg(tmp_path, dataset_options=options), progress=False, stage=TINY)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    monkeypatch.setattr(trainer, "make_train_step", real)
    _, state = train(_cfg(tmp_path, dataset_options=options), progress=False, stage=TINY)  # resumes at 2, finishes
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


def test_a_stage_trained_to_predict_eps_is_sampled_by_decoding_eps(tmp_path, monkeypatch):
    """One source of truth for the target (chapter 02): --target eps changes the stage for the run, the
    weight file records it, and the loaded stage's sampler decodes the network output as ε."""
    from ivlib import cli
    from ivlib.cascade import sample_stage, stage_denoiser
    from ivlib.diffusion import x_from_eps, x_from_v
    from ivlib.pretrained import load_weights
    from ivlib.weights import read_metadata

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg, **kw: seen.append(cfg))
    cli.main(["train", "--workdir", str(tmp_path / "cli"), "--target", "eps"])
    cli.main(["train", "--workdir", str(tmp_path / "cli")])
    assert [cfg.target for cfg in seen] == ["eps", None]  # None: the stage's own target
    monkeypatch.undo()

    train(_cfg(tmp_path, steps=2, target="eps"), progress=False, stage=TINY)
    assert TINY.unet.target == "v" and read_metadata(tmp_path / "ema.safetensors")["target"] == "eps"
    stage, model_def, params = load_weights(TINY, tmp_path / "ema.safetensors")
    assert stage.unet.target == "eps" and stage.with_target("v") == TINY

    model = model_def.bind(params)
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    z, logsnr = jax.random.normal(k[0], (2, 4, 8, 8, 3)), jnp.array([-2.0, 3.0])
    text, mask = jax.random.normal(k[1], (2, 5, 64)), jnp.ones((2, 5), bool)
    out = model(z, logsnr, text, mask)
    x_pred = stage_denoiser(stage, model, text, mask, jnp.zeros((1,)))(z, logsnr, 0)  # guidance w = 0
    np.testing.assert_allclose(x_pred, x_from_eps(z, out, logsnr), rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(x_pred - x_from_v(z, out, logsnr)).max()) > 0.1
    # and sample_stage uses it: one DDIM step returns the x prediction at z_1 = N(0, I) from the first split key
    key = jax.random.PRNGKey(3)
    sampled = sample_stage(stage, model_def, params, key, text=text, text_mask=mask, num_steps=1, sampler="ddim",
                           threshold="none")
    z_1 = jax.random.normal(jax.random.split(key)[0], z.shape)
    logsnr_1 = jnp.full((2,), -20.0)  # λ(t = 1), the cosine schedule's clip
    np.testing.assert_allclose(sampled, x_from_eps(z_1, model(z_1, logsnr_1, text, mask), logsnr_1), rtol=1e-3,
                               atol=1e-3 * float(jnp.abs(sampled).max()))


def test_weight_files_written_before_the_target_was_recorded_read_their_train_config():
    from ivlib.pretrained import trained_target

    assert trained_target(TINY, {"target": "eps", "train_config": {"target": "v"}}) == "eps"
    assert trained_target(TINY, {"train_config": {"target": "x"}}) == "x"
    assert trained_target(TINY, {"train_config": {"target": None}}) == "v"
    assert trained_target(TINY, {}) == "v"


def test_update_metadata_adds_entries_and_keeps_every_parameter(tmp_path):
    from ivlib.weights import read_metadata, save_params, update_metadata

    params = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(4, np.float32)}}
    path = save_params(tmp_path / "w.safetensors", params, metadata={"steps": 3, "stage": "base"})
    before = load_params(path, params)
    update_metadata(path, commands=["ivlib train ... --steps 2", "ivlib train ... --steps 3"], steps=3)
    assert read_metadata(path) == {"steps": 3, "stage": "base",
                                   "commands": ["ivlib train ... --steps 2", "ivlib train ... --steps 3"]}
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(load_params(path, params))):
        np.testing.assert_array_equal(x, y)
    assert not (tmp_path / "w.tmp").exists()


def test_checkpoint_state_reads_a_relative_workdir(tmp_path, monkeypatch):
    """checkpoint_state takes the work directory as a user gives it, relative to the current one."""
    cfg = _cfg(tmp_path / "run", steps=2)
    _, state = train(cfg, progress=False, stage=TINY)
    monkeypatch.chdir(tmp_path)
    restored = trainer.checkpoint_state("run", cfg, TINY, step=2)
    assert int(restored["step"]) == 2
    for a, b in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
