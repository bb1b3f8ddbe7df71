"""Training one stage of a cascade: what `ivlib train` runs (chapter 04).

A `TrainConfig` names the stage, its data and the optimiser's settings; `train` feeds the stage's
jit-compiled step (`ivlib.train`) with batches of its dataset and cached text embeddings through the
generic loop `ivlib.loop.fit` (checkpoints, exact resume, the NaN guard, metrics.jsonl, a progress
bar), and writes the EMA weights with what they were trained to predict. `--target` changes the
stage's `unet.target` for the run, and the weight file records it, so sampling decodes the same target.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass, field

import jax
import numpy as np

from ivlib.loop import (TrainingDiverged, abstract_like, check_workdir, checkpoint_manager, fit, init_state,
                        restore_latest)
from ivlib.nn.unet import REMAT, TARGETS
from ivlib.sharding import create_sharded_state, jit_step, make_mesh, shard_batch, state_shardings
from ivlib.stage import Stage, trained_target
from ivlib.train import create_state, default_optimizer, make_train_step
from ivlib.weights import read_metadata, save_params

__all__ = ["BatchSource", "SAME_RUN", "TrainConfig", "TrainingDiverged", "check_loop_settings", "check_resumable",
           "checkpoint_state", "export_ema", "initial_weights", "stage_for", "train", "train_command",
           "training_lineage"]


@dataclass(frozen=True)
class TrainConfig:
    """What `ivlib train` runs (chapter 04). Defaults are the toy base model's."""

    workdir: str
    config: str = "toy"
    stage: str = "base"
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    text_dropout: float = 0.1
    aug_max_t: float = 0.6  # SR stages: augmentation log-SNR λ(t'), t' ~ U(0, aug_max_t); 0 = no augmentation
    target: str | None = None  # what the network predicts, if not the stage's own unet.target: "v", "eps", "x"
    dataset: str = "digits"
    dataset_options: dict = field(default_factory=dict)
    max_text_length: int | None = None  # tokens per caption; None: the config's TEXT_LENGTH (32 for the toy)
    # `ivlib.text.text_encoder`'s name for the frozen encoder, a toy one or a T5 checkpoint; None: the config's
    # TEXT_ENCODER ("toy-t5-random" for the toy, chapter 04's ablation; "google/t5-v1_1-base" for colab)
    text_encoder: str | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    init_weights: str | None = None  # start from these weights (a weight file of the same stage), not at random
    model_parallel: int = 1  # devices of the mesh's "model" axis: the state is split over them (FSDP, chapter 10)
    split_activations: bool = False  # a model group shares its examples and splits their activations (`nn.layout`)
    # recompute each space-time block in the backward pass (`UNetConfig.remat`: "none", "block", "dots"; chapter
    # 10's memory plans use "block"); None: the stage's own. The parameters are the same, so a run may resume with
    # another setting
    remat: str | None = None
    image_mask: bool = True  # image samples bypass the temporal layers (chapter 07); False treats them as videos
    # temporal attention's relative keys (zero at the start) are held at zero until this step, then learn (chapter
    # 04, "Which way?": keys grown into a trained network learn which way a digit moves); 0: from the start
    relative_keys_from: int = 0

    def resolved(self) -> "TrainConfig":
        """This config with the text settings it leaves to its cascade config filled in (`text_settings`): what
        a run records and compares on resume. ValueError for an unknown config name."""
        from ivlib.configs import text_settings

        encoder, length = text_settings(self.config)
        return dataclasses.replace(self, text_encoder=encoder if self.text_encoder is None else self.text_encoder,
                                   max_text_length=length if self.max_text_length is None else self.max_text_length)

    def validate(self):
        """ValueError naming the first setting no run can use; builds nothing (the config and stage names are
        checked by `stage_for`, the dataset by `make_dataset`; a T5 checkpoint is looked for when it loads)."""
        from ivlib.text import check_text_encoder_name

        self = self.resolved()
        check_loop_settings(self)
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout!r}")
        if self.target is not None and self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS} (or None: the stage's own), got {self.target!r}")
        check_text_encoder_name(self.text_encoder)
        if self.remat is not None and self.remat not in REMAT:
            raise ValueError(f"remat must be one of {REMAT} (or None: the stage's own), got {self.remat!r}")
        if isinstance(self.relative_keys_from, bool) or not isinstance(self.relative_keys_from, int) \
                or self.relative_keys_from < 0:
            raise ValueError(f"relative_keys_from must be a step (an integer >= 0), got {self.relative_keys_from!r}")
        if not isinstance(self.split_activations, bool):
            raise ValueError(f"split_activations must be True or False, got {self.split_activations!r}")
        if isinstance(self.model_parallel, bool) or not isinstance(self.model_parallel, int) or self.model_parallel < 1:
            raise ValueError(f"model_parallel must be a positive integer (devices per model shard group), "
                             f"got {self.model_parallel!r}")
        if self.init_weights is not None and not pathlib.Path(self.init_weights).is_file():
            raise ValueError(f"init_weights: no weight file at {self.init_weights}")

    @classmethod
    def read(cls, path) -> "TrainConfig":
        """The config an `ivlib train` run recorded in `path` (<workdir>/config.json); ValueError if it is not one."""
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (ValueError, TypeError) as err:  # not JSON, not an object, or keys TrainConfig does not have
            raise ValueError(f"{path} is not the config.json of an `ivlib train` run: {err}") from None


def check_loop_settings(cfg):
    """ValueError naming the first setting of the loop, the optimiser or the data that no run can use; shared by
    `TrainConfig` and chapter 09's `DistillConfig`, which both have these fields."""
    for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "max_text_length"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("warmup_steps", "seed"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if not 0.0 <= cfg.aug_max_t <= 1.0:
        raise ValueError(f"aug_max_t must lie in [0, 1] (a time of the noise schedule), got {cfg.aug_max_t!r}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {cfg.ema_decay!r}")
    if not 0 < cfg.learning_rate < float("inf"):
        raise ValueError(f"learning_rate must be a positive finite number, got {cfg.learning_rate!r}")
    if not isinstance(cfg.dataset_options, dict):
        raise ValueError(f"dataset_options must be a dict (JSON object), got {cfg.dataset_options!r}")
    if not isinstance(cfg.image_mask, bool):
        raise ValueError(f"image_mask must be True or False, got {cfg.image_mask!r}")


# What must match for a run to resume another's checkpoints: the network and what its inputs mean.
SAME_RUN = ("config", "stage", "target", "text_encoder")


def check_resumable(workdir, cfg: TrainConfig):
    """ValueError unless `workdir` is empty of runs or holds a run of the same stage that `cfg` may resume
    (`SAME_RUN`: config, stage, target and text encoder; steps, learning rate and the rest may change)."""
    workdir = pathlib.Path(workdir)
    config_file = workdir / "config.json"
    if config_file.is_file():
        recorded, cfg = TrainConfig.read(config_file).resolved(), cfg.resolved()
        differ = [k for k in SAME_RUN if getattr(recorded, k) != getattr(cfg, k)]
        if differ:
            theirs = ", ".join(f"{k} {getattr(recorded, k)!r}" for k in differ)
            ours = ", ".join(f"{k} {getattr(cfg, k)!r}" for k in differ)
            raise ValueError(f"{workdir} holds a run of another model ({theirs}; this run: {ours}); its checkpoints "
                             "cannot be resumed: give another --workdir")
    elif (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir()):
        raise ValueError(f"{workdir} holds checkpoints but no config.json: not an `ivlib train` run (perhaps "
                         "another command's); give another --workdir")


def stage_for(cfg: TrainConfig, stage: Stage | None = None) -> Stage:
    """The stage a run trains (chapter 04): `stage`, or cfg.stage of cfg.config, predicting cfg.target
    when that is given (the stage's `unet.target` otherwise), rematerialised as cfg.remat says when given."""
    if stage is None:
        from ivlib.configs import get_stage

        stage = get_stage(cfg.config, cfg.stage)
    if cfg.target is not None and cfg.target != stage.unet.target:
        stage = stage.with_target(cfg.target)
    if cfg.remat is not None and cfg.remat != stage.unet.remat:
        stage = stage.with_remat(cfg.remat)
    return stage


def initial_weights(cfg: TrainConfig, stage: Stage, like):
    """The parameters in cfg.init_weights, as the pytree `like` (chapter 07: fine-tuning a trained stage).

    ValueError unless the file fits the stage's network, predicts the run's target and was trained on the
    run's text encoder: the weights must mean what this run will train them to mean. The file may lack
    parameters that start at zero in `like` (e.g. temporal attention's relative keys, chapter 04): with them
    at zero the network computes what the file's network computed, so the run grows the trained stage by
    a layer; they are printed."""
    from ivlib.weights import load_params, missing_params, read_metadata

    path = pathlib.Path(cfg.init_weights)
    try:
        metadata = read_metadata(path)
    except Exception:  # not a safetensors file: load_params says so
        metadata = {}
    theirs = (metadata.get("train_config") or {}).get("text_encoder")
    if theirs is not None and theirs != cfg.text_encoder:
        raise ValueError(f"init_weights {path} were trained on text encoder {theirs!r}, this run uses "
                         f"{cfg.text_encoder!r}: pass --text-encoder {theirs}")
    target = trained_target(stage, metadata)
    if target != stage.unet.target:
        raise ValueError(f"init_weights {path} predict {target!r}, this run trains {stage.unet.target!r}: "
                         f"pass --target {target}")
    try:
        added = missing_params(path, like)
    except Exception:  # not a readable weight file: load_params says so
        added = []
    flat = {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(like)[0]}
    nonzero = [name for name in added if bool(jax.numpy.any(flat[name] != 0))]
    if nonzero:
        raise ValueError(f"init_weights {path} has no parameter {nonzero[0]}, which does not start at zero: "
                         "it was saved from another architecture")
    if added:
        print(f"init_weights {path}: {len(added)} parameters not in the file start at zero: {', '.join(added)}")
    return load_params(path, like, keep=added)


def _weights_metadata(cfg: TrainConfig, stage: Stage, steps: int, train_config: dict) -> dict:
    """What a weight file records: the run's config and stage, its steps, and the target it predicts. A run
    that started from cfg.init_weights also records its lineage: `commands`, every command from the first
    training to this run (`training_lineage`), and `total_steps`, the steps of all of them."""
    meta = {"config": cfg.config, "stage": cfg.stage, "steps": steps, "target": stage.unet.target,
            "train_config": train_config}
    if cfg.init_weights is not None:
        start = read_metadata(cfg.init_weights)
        meta["commands"] = training_lineage(start) + [train_command(dataclasses.replace(cfg, steps=steps))]
        meta["total_steps"] = int(start.get("total_steps", start.get("steps", 0))) + steps
    return meta


def train_command(cfg: TrainConfig) -> str:
    """The `ivlib train` command line that runs `cfg`: every setting that shapes the weights is spelled out
    (checkpointing and logging, which do not, are left at the CLI's defaults, and so is --cpu-devices, which
    changes only the order of floating-point sums)."""
    parts = ["ivlib train", f"--config {cfg.config}", f"--stage {cfg.stage}", f"--workdir {cfg.workdir}",
             f"--steps {cfg.steps}", f"--batch-size {cfg.batch_size}", f"--learning-rate {cfg.learning_rate:g}",
             f"--warmup-steps {cfg.warmup_steps}", f"--ema-decay {cfg.ema_decay:g}",
             f"--text-dropout {cfg.text_dropout:g}", f"--aug-max-t {cfg.aug_max_t:g}", f"--dataset {cfg.dataset}",
             f"--dataset-options '{json.dumps(cfg.dataset_options)}'", f"--seed {cfg.seed}"]
    for flag, value in (("--target", cfg.target), ("--text-encoder", cfg.text_encoder),
                        ("--max-text-length", cfg.max_text_length), ("--init-weights", cfg.init_weights),
                        ("--remat", cfg.remat)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if cfg.model_parallel != 1:
        parts.append(f"--model-parallel {cfg.model_parallel}")
    if cfg.split_activations:
        parts.append("--split-activations")
    if not cfg.image_mask:
        parts.append("--no-image-mask")
    if cfg.relative_keys_from:
        parts.append(f"--relative-keys-from {cfg.relative_keys_from}")
    return " ".join(parts)


def training_lineage(metadata: dict) -> list:
    """The commands that made a weight file of `ivlib train`, oldest first: those it records (`commands`), else
    the one its training config spells (`train_command`), else none (a file saved by other code)."""
    if metadata.get("commands"):
        return list(metadata["commands"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    recorded = metadata.get("train_config") or {}
    if {"workdir", "config", "stage", "steps"} <= set(recorded):
        return [train_command(TrainConfig(**{k: v for k, v in recorded.items() if k in known}))]
    return []


TEXT_CACHE = "text_embeddings.npz"  # a run's encoded captions, in its workdir (`BatchSource.precompute_text`)
PRECOMPUTE_EXAMPLES = 4096  # of an endless dataset, the examples whose captions are encoded before the first step


class BatchSource:
    """Batch k of a stage's training data with cached text embeddings (and the low-res input for SR stages)."""

    def __init__(self, stage, cfg: TrainConfig, text_cache=None):
        from ivlib.data import make_dataset
        from ivlib.text import EmbeddingCache, text_encoder

        cfg = cfg.resolved()
        self.stage = stage
        self.dataset = make_dataset(cfg.dataset, frames=stage.frames, height=stage.height, width=stage.width,
                                    split="train", seed=cfg.seed, **cfg.dataset_options)
        self.batch_size = cfg.batch_size
        self.image_mask = cfg.image_mask
        self.text = text_cache
        if stage.unet.text_dim and self.text is None:
            self.text = EmbeddingCache(text_encoder(cfg.text_encoder, cfg.max_text_length))
        if self.text is not None and self.text.encoder.dim != stage.unet.text_dim:
            raise ValueError(f"stage {stage.name!r} expects text embeddings of width {stage.unet.text_dim}, "
                             f"the text encoder gives {self.text.encoder.dim}")

    def precompute_text(self, path, first_step: int = 0, chunk: int = 256) -> int:
        """Encode the captions of the coming examples once, before training, and keep every encoded caption in
        `path` (an `EmbeddingCache` file), as the paper precomputes its T5-XXL embeddings (§2.2): the rows
        already in `path` are read back (a resumed run encodes them again never), then the captions of every
        example of a finite dataset (a folder of videos), or of an endless one's next PRECOMPUTE_EXAMPLES from
        batch `first_step` on, are encoded `chunk` at a time. A caption met later is encoded when it first
        comes. Returns how many captions were encoded now."""
        if self.text is None:
            return 0
        path = pathlib.Path(path)
        if path.is_file():
            self.text.load(path)
        start = first_step * self.batch_size
        indices = range(len(self.dataset)) if hasattr(self.dataset, "__len__") else \
            range(start, start + PRECOMPUTE_EXAMPLES)
        new = list(dict.fromkeys(c for c in (self.dataset.params(i).caption for i in indices) if c not in self.text))
        for k in range(0, len(new), chunk):
            self.text.get(new[k:k + chunk])
        if new or not path.is_file():
            self.save_text(path)
        return len(new)

    def save_text(self, path):
        """Write the cached text embeddings to `path` atomically (`EmbeddingCache.save`)."""
        if self.text is not None:
            tmp = pathlib.Path(path).with_suffix(".tmp")
            self.text.save(tmp)
            tmp.replace(path)

    def __call__(self, index: int) -> dict:
        raw = self.dataset.batch(index, self.batch_size)
        is_image = raw["is_image"] if self.image_mask else np.zeros_like(raw["is_image"])  # chapter 07's ablation
        batch = {"video": raw["video"], "is_image": is_image}
        if self.text is not None:
            batch["text"], batch["text_mask"] = (np.asarray(a) for a in self.text.get(raw["caption"]))
        if self.stage.kind != "base":
            s = self.stage
            batch["cond"] = self.dataset.render(raw["params"], s.in_frames, s.in_height, s.in_width)
        return batch


def train(cfg: TrainConfig, progress=True, text_cache=None, stage=None):
    """Train (or resume training) one stage; returns (model_def, final state) (chapter 04).

    `stage` overrides the stage looked up from cfg.config / cfg.stage (for experiments and tests);
    cfg.init_weights starts the run from a weight file instead of random weights (fresh optimiser state,
    EMA equal to those weights; chapter 07 fine-tunes the shipped base this way);
    cfg.target, when given, replaces what it predicts (`stage_for`). Step k sees batch k and the key
    fold_in(PRNGKey(seed + 1), k); at the end <workdir>/ema.safetensors holds the EMA weights and, in
    its metadata, the config and the target (read back by `ivlib.pretrained.load_weights`).
    """
    cfg.validate()
    cfg = cfg.resolved()  # the config's own text encoder and length, recorded as such
    stage = stage_for(cfg, stage)
    source = BatchSource(stage, cfg, text_cache)
    mesh = run_mesh(cfg)
    tx = default_optimizer(cfg.learning_rate, cfg.warmup_steps)
    # the state is created in its shards (FSDP over the mesh's "model" axis; replicated when it has one device)
    model_def, state = create_sharded_state(stage.unet, tx, jax.random.PRNGKey(cfg.seed), mesh)
    shardings = state_shardings(state, mesh)
    if cfg.init_weights is not None:  # fine-tuning; a checkpoint of this run, if any, replaces it in `fit`
        state = jax.device_put(init_state(initial_weights(cfg, stage, state["params"]), tx), shardings)
    workdir = check_workdir(cfg.workdir)
    check_resumable(workdir, cfg)

    def start(step):  # the run goes ahead from `step`: record it, and encode its captions before step one
        (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        source.precompute_text(workdir / TEXT_CACHE, step)

    # the program `ivlib.memory.compile_sharded_step` plans: state in its shards, donated; batch over every device
    if cfg.relative_keys_from and not getattr(stage.unet, "relative_keys", False):
        raise ValueError(f"relative_keys_from {cfg.relative_keys_from}: stage {stage.name!r} of config "
                         f"{cfg.config!r} has no relative keys in its temporal attention")
    step_fn = jit_step(make_train_step(model_def, tx, stage, cfg.text_dropout, cfg.ema_decay, cfg.aug_max_t,
                                       cfg.relative_keys_from),
                       mesh, shardings, split_activations=cfg.split_activations)
    batches = lambda step: shard_batch(source(step), mesh, cfg.split_activations)
    state = fit(step_fn, state, batches, workdir=workdir, steps=cfg.steps,
                key=jax.random.PRNGKey(cfg.seed + 1), checkpoint_every=cfg.checkpoint_every,
                keep_checkpoints=cfg.keep_checkpoints, log_every=cfg.log_every, placement=shardings,
                progress=progress, desc=f"train {cfg.config}/{cfg.stage}", on_start=start)
    source.save_text(workdir / TEXT_CACHE)  # with any caption first met during training
    save_params(workdir / "ema.safetensors", state["ema"],
                metadata=_weights_metadata(cfg, stage, int(state["step"]), dataclasses.asdict(cfg)))
    return model_def, state


def run_mesh(cfg: TrainConfig):
    """The ("data", "model") mesh of a run over every local device (chapter 10): cfg.model_parallel devices per
    model group. ValueError unless the devices split into such groups and the batch over every device."""
    n = len(jax.devices())
    if n % cfg.model_parallel:
        raise ValueError(f"model_parallel {cfg.model_parallel} must divide the {n} devices")
    mesh = make_mesh(model=cfg.model_parallel)
    if cfg.split_activations and cfg.batch_size % mesh.shape["data"]:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {mesh.shape['data']} model groups "
                         "(data axis): each group takes its own examples and splits their activations")
    if not cfg.split_activations and cfg.batch_size % mesh.size:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {mesh.size} devices "
                         f"(data {mesh.shape['data']} x model {mesh.shape['model']}): each device takes its own examples")
    return mesh


def checkpoint_state(workdir, cfg: TrainConfig, stage: Stage, step=None):
    """The train state {step, params, opt_state, ema} of the checkpoint at `step` (None: the newest readable
    one, or None if there is none; a step that is not kept is an error naming the kept ones) in
    <workdir>/checkpoints of the run `cfg` of `stage`, on one device. It is restored onto shapes
    (`jax.eval_shape`): no network is initialised first (chapter 04; benchmarks)."""
    import orbax.checkpoint as ocp

    workdir = pathlib.Path(workdir).absolute()  # orbax wants an absolute path
    tx = default_optimizer(cfg.learning_rate, cfg.warmup_steps)
    shapes = jax.eval_shape(lambda key: create_state(stage.unet, tx, key)[1], jax.random.PRNGKey(0))
    abstract = abstract_like(shapes, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    manager = checkpoint_manager(workdir / "checkpoints", cfg.keep_checkpoints)
    if step is None:
        return restore_latest(manager, abstract, workdir / "checkpoints")
    kept = sorted(manager.all_steps())
    if int(step) not in kept:
        raise FileNotFoundError(f"no checkpoint of step {step} in {workdir / 'checkpoints'}; kept: {kept}")
    return manager.restore(int(step), args=ocp.args.StandardRestore(abstract))


def export_ema(workdir, out=None, step=None):
    """Write the EMA weights of the checkpoint at `step` (default: the newest) in `workdir` to `out` (default
    <workdir>/ema.safetensors) without touching the run — safe while it is still training (chapter 04). The
    file's training config records the checkpoint's step as --steps: the command that makes exactly these
    weights."""
    workdir = pathlib.Path(workdir).absolute()
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {workdir} is not an `ivlib train` work directory")
    cfg = TrainConfig.read(config_file)
    raw = json.loads(config_file.read_text())
    stage = stage_for(cfg)
    if not (workdir / "checkpoints").is_dir() or not any((workdir / "checkpoints").iterdir()):
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'} yet")
    out = pathlib.Path(out or workdir / "ema.safetensors")
    if out.is_dir():
        raise ValueError(f"out {out} is a directory; give the path of the weight file to write")
    state = checkpoint_state(workdir, cfg, stage, step)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'} yet")
    step = int(state["step"])
    # The learning rate is constant after warm-up and step k always sees batch k, so the checkpoint of step k is
    # exactly what the same command with --steps k makes: record that command.
    recorded = {**raw, "steps": step}
    save_params(out, jax.device_get(state["ema"]), metadata=_weights_metadata(cfg, stage, step, recorded))
    return out, step
