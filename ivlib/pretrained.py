"""Trained stages from weight files: the shipped toy cascade and the output of `ivlib train` (chapters 04–05).

A weight file holds a stage's EMA parameters and, in its metadata, how they were trained. What the
network predicts is read back from there (`trained_target`), so a stage trained with
`ivlib train --target eps` is sampled by decoding ε, whatever its config says.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
from flax import nnx

from ivlib.configs import get_cascade, get_stage
from ivlib.nn.model_def import ModelDef
from ivlib.nn.unet import VideoUNet
from ivlib.stage import Stage, trained_target  # noqa: F401 (trained_target: part of this module's API)
from ivlib.weights import load_params, param_names, read_metadata, shipped_weights_path


# Weight files written before the trainer recorded its text encoder all came from `ivlib train` on the toy
# configs when its only text encoder was the random toy T5.
LEGACY_TEXT_ENCODER = "toy-t5-random"


def trained_text_encoder(config_name: str, stage_name: str, path=None) -> str:
    """The name (`ivlib.text.text_encoder`) of the frozen text encoder a stage's weights were trained on
    (chapter 04): the "text_encoder" of the file's training config, else LEGACY_TEXT_ENCODER. A stage
    must be sampled with the embeddings it learnt to read."""
    path = pathlib.Path(path or shipped_weights_path(config_name, stage_name))
    train_config = (read_metadata(path) if path.is_file() else {}).get("train_config") or {}
    return train_config.get("text_encoder") or LEGACY_TEXT_ENCODER


LEGACY_TEXT_LENGTH = 32  # the toy runs' tokens per caption before the length was recorded


def trained_text(config_name: str, stage_name: str, path=None) -> tuple[str, int]:
    """(text encoder, tokens per caption) a stage's weights were trained with (chapters 04, 10):
    `trained_text_encoder` and the "max_text_length" of the file's training config, else LEGACY_TEXT_LENGTH.
    `ivlib.text.text_encoder(*trained_text(...))` builds the encoder to sample it with."""
    path = pathlib.Path(path or shipped_weights_path(config_name, stage_name))
    train_config = (read_metadata(path) if path.is_file() else {}).get("train_config") or {}
    return (trained_text_encoder(config_name, stage_name, path),
            int(train_config.get("max_text_length") or LEGACY_TEXT_LENGTH))


def load_weights(stage: Stage, path, mesh=None):
    """(stage, model_def, params) of `stage` with the weights at `path` (chapter 04); on `mesh` (chapter 10),
    each parameter split by the partition rule (`ivlib.sharding.state_shardings`) as it is read: every device
    reads only its own slices from the file, so no memory ever holds a whole paper-scale stage.

    The returned stage predicts what the file was trained to predict (`trained_target`) and, for a student of
    guided distillation (chapter 09), is told the guidance weight (`guidance_embedding`). Raises
    FileNotFoundError if `path` is missing, ValueError if it does not fit the stage's network.
    """
    path = pathlib.Path(path)
    if not path.is_file():  # before the network is built: a paper-scale one takes many gigabytes
        raise FileNotFoundError(f"no weight file at {path}")
    try:
        metadata = read_metadata(path)
    except Exception:  # an unreadable file: load_params below says what is wrong with it
        metadata = {}
    target = trained_target(stage, metadata)
    if target != stage.unet.target:
        stage = stage.with_target(target)
    if metadata.get("guidance_embedding") and not stage.unet.guidance_embedding:  # a guided-distilled student
        stage = dataclasses.replace(stage, unet=dataclasses.replace(stage.unet, guidance_embedding=True))
    relative_keys = _has_relative_keys(path)
    if relative_keys is not None and relative_keys != stage.unet.relative_keys:  # weights from before (or after) them
        stage = dataclasses.replace(stage, unet=dataclasses.replace(stage.unet, relative_keys=relative_keys))
    return stage, *_read_onto_shapes(stage, path, mesh)


def _has_relative_keys(path) -> bool | None:
    """Whether the weight file's temporal attention has relative keys (chapter 04, "Which way?"); None if the
    file cannot be read (load_params then says why). Files written before the toy base had them do not."""
    try:
        return any("rel_keys" in name for name in param_names(path))
    except Exception:
        return None


def _read_onto_shapes(stage: Stage, path, mesh=None):
    """(model_def, params): the stage's network structure from shapes alone (`nnx.eval_shape`: nothing is
    allocated, which matters at 5.6B parameters), with the parameters read from `path`. A network with
    non-parameter state (dropout streams) is built for real, since that state cannot come from a file."""
    model_def, shapes = ModelDef.split(nnx.eval_shape(lambda: VideoUNet(stage.unet, rngs=nnx.Rngs(0))))
    if jax.tree.leaves(model_def.rest):
        model_def, shapes = ModelDef.split(VideoUNet(stage.unet, rngs=nnx.Rngs(0)))
    if mesh is None:
        return model_def, load_params(path, shapes)
    from ivlib.sharding import state_shardings

    return model_def, load_params(path, shapes, state_shardings(shapes, mesh))


def distilled_weights_path(config_name: str, stage_name: str) -> pathlib.Path:
    """Where the shipped distilled student of a stage lives (chapter 09): `<config>_<stage>_distilled.safetensors`,
    the stage guided- and progressively distilled to sample in a few steps (its metadata says how many)."""
    return shipped_weights_path(config_name, f"{stage_name}_distilled")


def teacher_weights_path(config_name: str, stage_name: str) -> pathlib.Path:
    """The weights the shipped distilled student of a stage was distilled from (chapter 09): the file its metadata
    names as "teacher_file" when the stage has been retrained since (a student of earlier weights: `stale_students`),
    else the stage's shipped weights."""
    shipped, student = shipped_weights_path(config_name, stage_name), distilled_weights_path(config_name, stage_name)
    name = (read_metadata(student) if student.is_file() else {}).get("teacher_file")
    return shipped.with_name(name) if name else shipped


def load_stage(config_name: str, stage_name: str, path=None, distilled=False, mesh=None):
    """(stage, model_def, params) with the shipped EMA weights of a stage, or those at `path` (chapters 04–05);
    distilled: the shipped distilled student instead (`distilled_weights_path`, chapter 09); mesh: the
    parameters read straight into their shards on it (`load_weights`, chapter 10).

    FileNotFoundError, naming the `ivlib train` (or `ivlib distill`) command that makes them, if the weights are missing.
    """
    stage = get_stage(config_name, stage_name)
    if distilled and path is None:
        path = distilled_weights_path(config_name, stage_name)
        if not path.is_file():
            raise FileNotFoundError(f"no distilled {config_name}/{stage_name} stage at {path}. Make one with `ivlib "
                                    f"distill --stage {stage_name} --phase guided`, then `--phase progressive` down to "
                                    "8 steps (see chapter 09), and copy the last ema.safetensors there")
    path = path or shipped_weights_path(config_name, stage_name)
    try:
        return load_weights(stage, path, mesh)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}. Train it with: ivlib train --config {config_name} --stage {stage_name} "
                                f"--workdir runs/{config_name}-{stage_name} (see chapter 04), then copy "
                                f"runs/{config_name}-{stage_name}/ema.safetensors to {path}") from None


def shipped_stages(config: str = "toy", stages=None) -> list:
    """The stages of `config` to load (chapter 05): those named in `stages`, in cascade order, or (None)
    every stage whose weights ship, from the base model up to the first stage without weights."""
    everything = get_cascade(config)
    if stages is None:
        chosen = []
        for s in everything:
            if not shipped_weights_path(config, s.name).is_file():
                break
            chosen.append(s)
        missing = [s.name for s in everything[len(chosen):]]
        if missing and chosen:
            print(f"note: no shipped weights for stage(s) {missing} of {config!r}; running {[s.name for s in chosen]}")
        return chosen or list(everything[:1])  # nothing ships: load_stage explains how to train the base
    unknown = set(stages) - {s.name for s in everything}
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)} for config {config!r}; "
                         f"stages: {[s.name for s in everything]}")
    return [s for s in everything if s.name in stages]


def stale_students(config: str = "toy", stages=None) -> list:
    """The shipped stages of `config` (or of `stages`) whose distilled student was distilled from other weights
    than the stage ships now (`teacher_weights_path`, chapter 09): sampled, it would be a fast copy of an
    earlier model, not of the shipped one."""
    return [s.name for s in shipped_stages(config, stages)
            if teacher_weights_path(config, s.name) != shipped_weights_path(config, s.name)]


def has_distilled(config: str = "toy", stages=None) -> bool:
    """Whether every shipped stage of `config` (or of `stages`) ships a distilled student (chapter 09)."""
    return all(distilled_weights_path(config, s.name).is_file() for s in shipped_stages(config, stages))
