"""Joint image-video training (chapter 07): mixed batches, the image mask, fine-tuning, exact resume.

That the U-Net keeps the frames of an image sample independent is tested in test_unet.py (a mixed batch of
one image sample and one video); that a data-parallel step equals the single-device one on a mixed batch in
test_sharding.py. The measures of chapter 07 (orange, smooth motion) are tested in test_appearance.py.
"""

import dataclasses
import json
import shlex

import jax
import numpy as np
import pytest

from ivlib.configs import get_stage
from ivlib.data import captions as C
from ivlib.nn.unet import Level
from ivlib.pretrained import load_weights
from ivlib.stage import Stage
from ivlib import trainer
from ivlib.trainer import BatchSource, TrainConfig, export_ema, train, train_command, training_lineage
from ivlib.weights import load_params, read_metadata, save_params
from test_trainer import TINY, _cfg, _leaves

MIXED = {"max_objects": 1, "image_fraction": 0.5}


def test_mixed_batches_flag_each_sample_and_keep_captions_with_their_images():
    source = BatchSource(TINY, _cfg("unused", batch_size=16, dataset_options=MIXED))
    raw = source.dataset.batch(0, 16)
    batch = source(0)
    assert batch["video"].shape == (16, 4, 8, 8, 3)
    np.testing.assert_array_equal(batch["is_image"], raw["is_image"])
    assert 0 < batch["is_image"].sum() < 16  # per sample, not per batch
    for caption, image, params, video in zip(raw["caption"], raw["is_image"], raw["params"], raw["video"]):
        specs, captioned_as_image = C.parse_caption(caption)
        assert captioned_as_image == image  # image captions have no motion words, video captions do
        if image:  # a pack of independent images, each showing its caption's object at its own place
            assert len(params.images) == 4 and all(i.things[0].spec == specs[0] for i in params.images)
            assert len({(i.things[0].x, i.things[0].y) for i in params.images}) == 4
            assert np.abs(np.diff(video, axis=0)).max() > 0.1


def test_no_image_mask_presents_images_as_videos():
    masked = BatchSource(TINY, _cfg("unused", batch_size=16, dataset_options=MIXED))(0)
    unmasked = BatchSource(TINY, _cfg("unused", batch_size=16, dataset_options=MIXED, image_mask=False))(0)
    assert masked["is_image"].any() and not unmasked["is_image"].any()
    np.testing.assert_array_equal(masked["video"], unmasked["video"])


def test_resume_with_mixed_batches_matches_an_uninterrupted_run(tmp_path):
    cfg = lambda d, **kw: _cfg(tmp_path / d, batch_size=8, dataset_options=MIXED, **kw)
    assert BatchSource(TINY, cfg("a"))(0)["is_image"].any()
    _, full = train(cfg("a"), progress=False, stage=TINY)
    train(cfg("b", steps=2), progress=False, stage=TINY)
    _, resumed = train(cfg("b"), progress=False, stage=TINY)
    assert int(resumed["step"]) == 4
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_init_weights_start_the_run_and_a_checkpoint_overrides_them(tmp_path):
    _, trained = train(_cfg(tmp_path / "a", steps=2), progress=False, stage=TINY)
    start = tmp_path / "a" / "ema.safetensors"
    weights = load_params(start, trained["ema"])
    # A learning rate of 1e-12 leaves the weights where they started: the run began at the file's weights.
    _, tuned = train(_cfg(tmp_path / "b", steps=1, learning_rate=1e-12, init_weights=str(start)),
                     progress=False, stage=TINY)
    for a, b in zip(jax.tree.leaves(weights), jax.tree.leaves(tuned["params"])):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # Resuming a fine-tuning run continues its checkpoints (not the file) and matches an uninterrupted run.
    _, full = train(_cfg(tmp_path / "c", init_weights=str(start)), progress=False, stage=TINY)
    train(_cfg(tmp_path / "d", steps=2, init_weights=str(start)), progress=False, stage=TINY)
    _, resumed = train(_cfg(tmp_path / "d", init_weights=str(start)), progress=False, stage=TINY)
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "d" / "config.json").read_text())["init_weights"] == str(start)


def test_a_run_from_init_weights_records_every_command_and_step_before_it(tmp_path, monkeypatch):
    """A stage made by several runs (the toy base: three, chapter 04) carries its whole lineage: each file
    started from another lists the commands from the first training on, and the steps of all of them."""
    train(_cfg(tmp_path / "a", steps=2), progress=False, stage=TINY)
    first = tmp_path / "a" / "ema.safetensors"
    assert "commands" not in read_metadata(first) and training_lineage(read_metadata(first)) == \
        [train_command(_cfg(tmp_path / "a", steps=2).resolved())]  # as it ran
    second = _cfg(tmp_path / "b", steps=3, dataset_options=MIXED, init_weights=str(first))
    train(second, progress=False, stage=TINY)
    meta = read_metadata(tmp_path / "b" / "ema.safetensors")
    assert meta["commands"] == training_lineage(read_metadata(first)) + [train_command(second.resolved())]
    assert meta["total_steps"] == 5 and f"--init-weights {first}" in meta["commands"][-1]
    third = _cfg(tmp_path / "c", steps=1, init_weights=str(tmp_path / "b" / "ema.safetensors"))
    train(third, progress=False, stage=TINY)
    monkeypatch.setattr(trainer, "stage_for", lambda cfg: TINY)  # `ivlib export` builds the run's stage by name
    out, step = export_ema(tmp_path / "c", tmp_path / "c.safetensors")  # and records the same
    meta = read_metadata(out)
    assert step == 1 and meta["total_steps"] == 6 and len(meta["commands"]) == 3
    assert meta["commands"][-1] == train_command(third.resolved())
    out, step = export_ema(tmp_path / "b", tmp_path / "b2.safetensors", step=2)  # an older checkpoint, by its step
    meta = read_metadata(out)
    assert step == 2 and meta["total_steps"] == 4 and " --steps 2 " in meta["commands"][-1] + " "
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7 .*kept: \[2, 3\]"):
        export_ema(tmp_path / "b", tmp_path / "b7.safetensors", step=7)


def test_a_recorded_train_command_runs_the_same_config():
    from ivlib.cli import _train_config, build_parser

    cfg = TrainConfig(workdir="runs/x", config="toy", stage="tsr", steps=300, batch_size=16, learning_rate=3e-4,
                      warmup_steps=5, ema_decay=0.995, text_dropout=0.2, aug_max_t=0.3, target="eps",
                      text_encoder="toy-t5", max_text_length=16, dataset_options={"max_objects": 1,
                      "image_fraction": 0.5}, seed=2, init_weights="w.safetensors", model_parallel=2,
                      split_activations=True, image_mask=False, remat="block")
    back = _train_config(build_parser().parse_args(shlex.split(train_command(cfg))[1:]))
    keep = ("checkpoint_every", "keep_checkpoints", "log_every")  # not in the command: they do not shape the weights
    assert dataclasses.replace(back, **{k: getattr(cfg, k) for k in keep}) == cfg


def test_remat_is_the_stages_own_unless_a_run_names_one():
    from ivlib.trainer import stage_for

    assert stage_for(TrainConfig(workdir="w", config="toy", stage="base")).unet.remat == "none"
    stage = stage_for(TrainConfig(workdir="w", config="toy", stage="base", remat="block"))
    assert stage.unet.remat == "block" and stage.unet.levels == get_stage("toy", "base").unet.levels
    assert stage == get_stage("toy", "base").with_remat("block") and stage.with_remat("none") == get_stage("toy", "base")
    with pytest.raises(ValueError, match=r"remat must be one of \('none', 'block', 'dots'\).*'blocks'"):
        TrainConfig(workdir="w", config="toy", stage="base", remat="blocks").validate()


def test_init_weights_grow_a_stage_by_parameters_that_start_at_zero(tmp_path):
    """The toy base grew relative keys after it was trained (chapter 04, "Which way?"): a file without them
    starts a run of the grown stage, its parameters as they were and the new ones at zero, and the file
    alone still loads as the stage it was trained as."""
    plain = Stage("tiny", "base", dataclasses.replace(TINY.unet, levels=(Level(8, 1, False, "attention"),)))
    grown = dataclasses.replace(plain, unet=dataclasses.replace(plain.unet, relative_keys=True))
    _, trained = train(_cfg(tmp_path / "a", steps=1), progress=False, stage=plain)
    start = tmp_path / "a" / "ema.safetensors"
    _, tuned = train(_cfg(tmp_path / "b", steps=1, learning_rate=1e-12, init_weights=str(start)),
                     progress=False, stage=grown)
    flat = {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(tuned["params"])[0]}
    added = [name for name in flat if "rel_keys" in name]
    assert len(added) == 4 and all(np.abs(flat[name]).max() < 1e-6 for name in added)  # 4 temporal layers
    for path, value in jax.tree_util.tree_flatten_with_path(load_params(start, trained["ema"]))[0]:
        np.testing.assert_allclose(flat[jax.tree_util.keystr(path)], value, atol=1e-9)
    assert load_weights(grown, start)[0].unet.relative_keys is False
    assert load_weights(plain, tmp_path / "b" / "ema.safetensors")[0].unet.relative_keys is True


def test_relative_keys_held_at_zero_until_their_step(tmp_path):
    """--relative-keys-from N: the relative keys (params and EMA) stay exactly zero for N steps, then learn (the
    run resumed past N); the recorded command says so; a stage without them refuses the setting."""
    plain = Stage("tiny", "base", dataclasses.replace(TINY.unet, levels=(Level(8, 1, False, "attention"),)))
    grown = dataclasses.replace(plain, unet=dataclasses.replace(plain.unet, relative_keys=True))

    def rel_keys(state):
        return [np.abs(np.asarray(v)).max() for p, v in jax.tree_util.tree_flatten_with_path(state)[0]
                if "rel_keys" in jax.tree_util.keystr(p)]

    # the attention's output projection starts at zero and the first step's learning rate is 0 (warm-up): unheld,
    # the relative keys first move at the 4th step
    _, free = train(_cfg(tmp_path / "free", steps=4, warmup_steps=1), progress=False, stage=grown)
    assert len(rel_keys(free["params"])) == 4 and min(rel_keys(free["params"])) > 0
    _, held = train(_cfg(tmp_path / "a", steps=4, warmup_steps=1, relative_keys_from=4), progress=False, stage=grown)
    assert max(rel_keys(held["params"]) + rel_keys(held["ema"])) == 0.0
    _, joined = train(_cfg(tmp_path / "a", steps=5, warmup_steps=1, relative_keys_from=4), progress=False, stage=grown)
    assert min(rel_keys(joined["params"])) > 0  # the 5th step (step index 4) moved them
    assert "--relative-keys-from 2" in train_command(_cfg(tmp_path / "a", relative_keys_from=2))
    with pytest.raises(ValueError, match="has no relative keys"):
        train(_cfg(tmp_path / "b", steps=1, relative_keys_from=2), progress=False, stage=plain)
    with pytest.raises(ValueError, match="relative_keys_from must be a step"):
        _cfg(tmp_path / "c", relative_keys_from=-1).validate()


def test_init_weights_of_another_text_encoder_or_target_are_refused(tmp_path):
    _, trained = train(_cfg(tmp_path / "a", steps=1), progress=False, stage=TINY)
    path = tmp_path / "a" / "ema.safetensors"
    with pytest.raises(ValueError, match="text encoder 'toy-t5-random'.*--text-encoder toy-t5-random"):
        train(_cfg(tmp_path / "b", text_encoder="toy-t5", init_weights=str(path)), progress=False, stage=TINY)
    with pytest.raises(ValueError, match="predict 'v'.*--target v"):
        train(_cfg(tmp_path / "c", target="eps", init_weights=str(path)), progress=False, stage=TINY)
    other = tmp_path / "other.safetensors"
    save_params(other, {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="has no parameter"):
        train(_cfg(tmp_path / "d", init_weights=str(other)), progress=False, stage=TINY)
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()  # nothing written


@pytest.mark.parametrize("kw,match", [({"image_mask": 1}, "image_mask must be True or False"),
                                      ({"init_weights": "/nonexistent.safetensors"}, "init_weights: no weight file")])
def test_bad_joint_settings_raise(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(workdir=str(tmp_path), **kw).validate()


def test_comparison_starts_every_model_from_the_same_noise(capsys):
    from ivlib import widgets
    from ivlib.cascade import Cascade

    cascade = Cascade.pretrained("toy", stages=["base"])
    videos = widgets.render_comparison({"one": cascade, "same": cascade}, "an orange 4 moving up", num_steps=2)
    assert list(videos) == ["one", "same"] and videos["one"].shape == (8, 16, 16, 3)
    np.testing.assert_array_equal(videos["one"], videos["same"])
    other_seed = widgets.render_comparison({"one": cascade}, "an orange 4 moving up", seed=1, num_steps=2)
    assert np.abs(other_seed["one"] - videos["one"]).max() > 0.1
    with pytest.raises(ValueError, match="at least one"):
        widgets.render_comparison({}, "a red 3 moving left")
    widget = widgets.comparison_widget({"one": cascade}, "a purple 3 moving left", num_steps=2)
    widget.update()
    assert "error: the toy text encoder does not know the word 'purple'" in capsys.readouterr().out


def test_images_send_no_gradient_into_what_mixes_frames():
    """Image samples train the spatial path only: zero gradient for temporal convolutions and for the queries,
    keys and position bias of temporal attention (its values still carry each frame through, §2.6)."""
    from flax import nnx

    from ivlib.nn.unet import Level, UNetConfig, VideoUNet
    from ivlib.train import diffusion_loss
    from ivlib.stage import Stage

    config = UNetConfig(4, 8, 8, (Level(8, 1, False, "attention"), Level(8, 1, False, "conv")), text_dim=8,
                        head_dim=4, emb_dim=16)
    model = VideoUNet(config, rngs=nnx.Rngs(0))
    for path, param in nnx.iter_graph(model):  # the zero-initialised output projections would hide gradients
        if isinstance(param, nnx.Param):
            param.value = jax.random.normal(jax.random.PRNGKey(len(path)), param.value.shape) * 0.3
    stage = Stage("tiny", "base", config)
    batch = {"video": jax.random.normal(jax.random.PRNGKey(1), (2, 4, 8, 8, 3)),
             "text": jax.random.normal(jax.random.PRNGKey(2), (2, 3, 8)), "text_mask": np.ones((2, 3), bool)}

    def grads(is_image):
        return nnx.grad(lambda m: diffusion_loss(m, {**batch, "is_image": np.array(is_image)}, jax.random.PRNGKey(3),
                                                 stage))(model)

    def largest(state, keep):
        flat = [(".".join(map(str, p)), np.abs(np.asarray(v)).max()) for p, v in nnx.to_flat_state(state)]
        return max((g for name, g in flat if keep(name)), default=None)

    images, videos = grads([True, True]), grads([False, False])
    temporal_conv = lambda n: "temporal.proj" in n
    query_key_bias = lambda n: "temporal.rel_bias" in n
    assert largest(images, temporal_conv) == 0 and largest(videos, temporal_conv) > 1e-4
    assert largest(images, query_key_bias) == 0 and largest(videos, query_key_bias) > 1e-4
    qkv = [np.asarray(v) for p, v in nnx.to_flat_state(images) if "temporal.attn.qkv.kernel" in ".".join(map(str, p))]
    assert qkv and all(np.abs(k[:, :2 * k.shape[1] // 3]).max() == 0 for k in qkv)  # queries and keys
    assert all(np.abs(k[:, 2 * k.shape[1] // 3:]).max() > 1e-4 for k in qkv)  # values
    assert largest(images, lambda n: "res." in n) > 1e-4  # the spatial path learns from images
