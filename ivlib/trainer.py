"""The training loop behind `ivlib train` (chapter 04).

Data, cached text embeddings, the jit-compiled step of `ivlib.train`, a tqdm bar, metrics in
`<workdir>/metrics.jsonl`, orbax checkpoints every N steps (the last few kept) and exact resume:
step k always sees batch k and the key fold_in(seed, k), so an interrupted run that resumes from
its last checkpoint continues exactly as an uninterrupted one would. A non-finite loss stops the
run with a message before anything is saved, so the last good checkpoint survives.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ivlib.sharding import make_mesh, replicated, shard_batch
from ivlib.train import create_state, default_optimizer, make_train_step
from ivlib.weights import save_params


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    target: str = "v"
    dataset: str = "digits"
    dataset_options: dict = field(default_factory=dict)
    max_text_length: int = 32
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0

    def validate(self):
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout!r}")
        if not 0.0 <= self.aug_max_t <= 1.0:
            raise ValueError(f"aug_max_t must lie in [0, 1] (a time of the noise schedule), got {self.aug_max_t!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")


def _check_workdir(workdir) -> pathlib.Path:
    path = pathlib.Path(workdir).absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"workdir {path} is not a writable directory: {err}") from err
    return path


class BatchSource:
    """Batch k of a stage's training data with cached text embeddings (and the low-res input for SR stages)."""

    def __init__(self, stage, cfg: TrainConfig, text_cache=None):
        from ivlib.data import make_dataset
        from ivlib.text import EmbeddingCache, default_text_encoder

        self.stage = stage
        self.dataset = make_dataset(cfg.dataset, frames=stage.frames, height=stage.height, width=stage.width,
                                    split="train", seed=cfg.seed, **cfg.dataset_options)
        self.batch_size = cfg.batch_size
        self.text = text_cache
        if stage.unet.text_dim and self.text is None:
            self.text = EmbeddingCache(default_text_encoder(cfg.max_text_length))
        if self.text is not None and self.text.encoder.dim != stage.unet.text_dim:
            raise ValueError(f"stage {stage.name!r} expects text embeddings of width {stage.unet.text_dim}, "
                             f"the text encoder gives {self.text.encoder.dim}")

    def __call__(self, index: int) -> dict:
        raw = self.dataset.batch(index, self.batch_size)
        batch = {"video": raw["video"], "is_image": raw["is_image"]}
        if self.text is not None:
            batch["text"], batch["text_mask"] = (np.asarray(a) for a in self.text.get(raw["caption"]))
        if self.stage.kind != "base":
            s = self.stage
            batch["cond"] = self.dataset.render(raw["params"], s.in_frames, s.in_height, s.in_width)
        return batch


def _checkpoint_manager(directory, keep):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory, options=options)


def _restore_latest(manager, abstract_state, directory):
    """Restore the newest readable checkpoint; fall back to older ones if the newest is corrupt."""
    import orbax.checkpoint as ocp

    errors = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as err:  # a torn or corrupt checkpoint: try the one before
            errors.append(f"step {step}: {type(err).__name__}: {err}")
            print(f"warning: checkpoint at step {step} in {directory} could not be read; trying an older one")
    if errors:
        raise ValueError(f"no readable checkpoint in {directory}:\n" + "\n".join(errors))
    return None


def _abstract(state, sharding):
    """Shapes, dtypes and the placement to restore a checkpoint onto (it may have been saved on other devices)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _append_metrics(path: pathlib.Path, rows):
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _truncate_metrics(path: pathlib.Path, step: int):
    """On resume, forget logged rows after the checkpoint we resume from (they will be redone)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows))


def train(cfg: TrainConfig, progress=True, text_cache=None, stage=None):
    """Train (or resume training) one stage; returns (model_def, final state) (chapter 04).

    `stage` overrides the stage looked up from cfg.config / cfg.stage (for experiments and tests).
    """
    cfg.validate()
    if stage is None:
        from ivlib.configs import get_stage

        stage = get_stage(cfg.config, cfg.stage)
    workdir = _check_workdir(cfg.workdir)
    source = BatchSource(stage, cfg, text_cache)
    mesh = make_mesh()
    if cfg.batch_size % mesh.shape["data"]:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {mesh.shape['data']} devices")

    tx = default_optimizer(cfg.learning_rate, cfg.warmup_steps)
    model_def, state = create_state(stage.unet, tx, jax.random.PRNGKey(cfg.seed))
    manager = _checkpoint_manager(workdir / "checkpoints", cfg.keep_checkpoints)
    restored = _restore_latest(manager, _abstract(state, replicated(mesh)), workdir / "checkpoints")
    if restored is not None:
        state = restored
    start = int(state["step"])
    metrics_path = workdir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start)
    (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    state = jax.device_put(state, replicated(mesh))
    step_fn = make_train_step(model_def, tx, stage, cfg.target, cfg.text_dropout, cfg.ema_decay, cfg.aug_max_t)
    root = jax.random.PRNGKey(cfg.seed + 1)

    import orbax.checkpoint as ocp

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.config}/{cfg.stage}", unit="step")
    pending, t_last, n_last = [], time.perf_counter(), start
    for step in range(start, cfg.steps):
        batch = shard_batch(source(step), mesh)
        state, metrics = step_fn(state, batch, jax.random.fold_in(root, step))
        pending.append((step + 1, metrics))
        done = step + 1
        if done % cfg.log_every == 0 or done % cfg.checkpoint_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            rate = (done - n_last) / (now - t_last)
            rows = [{"step": s, **{k: float(v) for k, v in m.items()}} for s, m in pending]
            bad = [r for r in rows if not all(math.isfinite(v) for k, v in r.items() if k != "step")]
            if bad:
                _append_metrics(metrics_path, rows)
                last = manager.latest_step()
                raise TrainingDiverged(f"non-finite loss at step {bad[0]['step']} ({bad[0]}); stopped without saving. "
                                       f"The last good checkpoint (step {last}) is in {workdir / 'checkpoints'}; "
                                       "lower the learning rate and run the same command to resume from it.")
            rows[-1].update(steps_per_s=rate, time=time.time())
            _append_metrics(metrics_path, rows)
            pending, t_last, n_last = [], now, done
            if bar is not None:
                bar.update(len(rows))
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}", steps_per_s=f"{rate:.2f}")
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
    if bar is not None:
        bar.close()
    state = jax.device_get(state)
    save_params(workdir / "ema.safetensors", state["ema"],
                metadata={"config": cfg.config, "stage": cfg.stage, "steps": int(state["step"]),
                          "train_config": dataclasses.asdict(cfg)})
    return model_def, state


def export_ema(workdir, out=None):
    """Write the EMA weights of the newest checkpoint in `workdir` to `out` (default <workdir>/ema.safetensors)
    without touching the run — safe while it is still training (chapter 04)."""
    from ivlib.configs import get_stage

    workdir = pathlib.Path(workdir).absolute()
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {workdir} is not an `ivlib train` work directory")
    raw = json.loads(config_file.read_text())
    cfg = TrainConfig(**raw)
    stage = get_stage(cfg.config, cfg.stage)
    _, state = create_state(stage.unet, default_optimizer(cfg.learning_rate, cfg.warmup_steps), jax.random.PRNGKey(0))
    manager = _checkpoint_manager(workdir / "checkpoints", cfg.keep_checkpoints)
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state = _restore_latest(manager, _abstract(state, one_device), workdir / "checkpoints")
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'} yet")
    out = pathlib.Path(out or workdir / "ema.safetensors")
    save_params(out, jax.device_get(state["ema"]),
                metadata={"config": cfg.config, "stage": cfg.stage, "steps": int(state["step"]), "train_config": raw})
    return out, int(state["step"])
