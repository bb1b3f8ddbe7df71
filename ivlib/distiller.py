"""Running a distillation: what `ivlib distill` runs (chapter 09).

A `DistillConfig` names a teacher (a weight file of a trained stage, or of a student distilled before), the
phase and the data; `distill` feeds the jit-compiled step of `ivlib.distill` with the stage's training batches
through the generic loop `ivlib.loop.fit` — the same checkpoints, exact resume, NaN guard, metrics.jsonl and
progress bar as `ivlib train` — and writes the student's EMA weights with what a sampler must know: that the
network is told w (`guidance_embedding`) and how many steps it was distilled to sample in.

The two phases (paper §2.7; Meng et al. 2022):
* `guided`: a teacher trained with text dropout → a student told w, sampled at the teacher's step count;
* `progressive`: a student told w, sampled in 2N steps → a student of the same network sampled in N steps
  (`student_steps` = N), started from the teacher's weights. Repeat it to halve again.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from dataclasses import dataclass, field

import jax

from ivlib.loop import check_workdir, fit, init_state
from ivlib.sharding import make_mesh, replicated, shard_batch
from ivlib.stage import Stage
from ivlib.train import default_optimizer
from ivlib.trainer import BatchSource, TrainConfig, check_loop_settings, training_lineage
from ivlib.weights import read_metadata, save_params

PHASES = ("guided", "progressive")


@dataclass(frozen=True)
class DistillConfig:
    """What `ivlib distill` runs (chapter 09). Defaults suit the toy stages."""

    workdir: str
    teacher: str                     # a weight file: a trained stage (guided) or a distilled student (progressive)
    config: str = "toy"
    stage: str = "base"
    phase: str = "guided"
    student_steps: int = 0           # progressive: the student samples in this many steps, its teacher in twice as many
    steps: int = 500                 # optimisation steps
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_steps: int = 20
    ema_decay: float = 0.99
    w_min: float = 0.0               # each sample's guidance weight w ~ U(w_min, w_max), told to teacher and student
    w_max: float = 4.0
    aug_max_t: float = 0.6
    dataset: str = "digits"
    dataset_options: dict = field(default_factory=dict)
    max_text_length: int = 32
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    image_mask: bool = True          # read by the batches (`ivlib.trainer.BatchSource`)

    def validate(self):
        """ValueError naming the first setting no distillation can use."""
        check_loop_settings(self)
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.phase == "progressive" and (not isinstance(self.student_steps, int) or self.student_steps < 1):
            raise ValueError(f"progressive distillation needs student_steps >= 1 (the student's step count, half the "
                             f"teacher's), got {self.student_steps!r}")
        if not 0.0 <= self.w_min <= self.w_max < float("inf"):
            raise ValueError(f"need 0 <= w_min <= w_max (guidance weights), got w_min={self.w_min}, w_max={self.w_max}")
        if not pathlib.Path(self.teacher).is_file():
            raise ValueError(f"teacher: no weight file at {self.teacher}")


def teacher_for(cfg: DistillConfig, stage: Stage | None = None):
    """(stage, model_def, params, metadata) of the teacher; ValueError if it cannot teach this phase.
    `stage` overrides the stage looked up from cfg.config / cfg.stage (for experiments and tests)."""
    from ivlib.configs import get_stage
    from ivlib.pretrained import load_weights

    try:
        metadata = read_metadata(cfg.teacher)
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"teacher {cfg.teacher} is not a readable safetensors file: {err}") from None
    stage = stage or get_stage(cfg.config, cfg.stage)
    told_w = bool(metadata.get("guidance_embedding", False))
    if cfg.phase == "guided" and told_w:
        raise ValueError(f"teacher {cfg.teacher} is already guided-distilled; continue with --phase progressive")
    if cfg.phase == "progressive":
        if not told_w:
            raise ValueError(f"teacher {cfg.teacher} is not guided-distilled: run --phase guided on it first "
                             "(progressive distillation halves the steps of a student that is told w)")
        teacher_steps = metadata.get("sampling_steps")
        if teacher_steps is not None and teacher_steps != 2 * cfg.student_steps:
            raise ValueError(f"teacher {cfg.teacher} samples in {teacher_steps} steps: its student samples in "
                             f"{teacher_steps // 2}, not {cfg.student_steps} (--student-steps)")
    if (metadata.get("config"), metadata.get("stage")) not in ((cfg.config, cfg.stage), (None, None)):
        raise ValueError(f"teacher {cfg.teacher} is the {metadata.get('config')}/{metadata.get('stage')} stage, "
                         f"not {cfg.config}/{cfg.stage}")
    return (*load_weights(stage, cfg.teacher), metadata)


def text_encoder_of(metadata: dict) -> str:
    """The text encoder a weight file was trained with (students inherit their teacher's)."""
    return (metadata.get("train_config") or {}).get("text_encoder", "toy-t5-random")


def distill(cfg: DistillConfig, progress=True, text_cache=None, stage=None):
    """Distill (or resume distilling) one stage; returns (student stage, model_def, final state) (chapter 09).

    Step k sees batch k of the stage's training data and the key fold_in(PRNGKey(seed + 1), k). At the end
    <workdir>/ema.safetensors holds the student's EMA weights; its metadata records this config, the
    teacher's own metadata, `guidance_embedding` and `sampling_steps` (what `ivlib.pretrained.load_weights`
    and a sampler read back). `stage` overrides the stage of cfg.config / cfg.stage (tests, experiments).
    """
    from ivlib import distill as D

    cfg.validate()
    stage, teacher_def, teacher_params, teacher_meta = teacher_for(cfg, stage)
    data = TrainConfig(workdir=cfg.workdir, config=cfg.config, stage=cfg.stage, batch_size=cfg.batch_size,
                       dataset=cfg.dataset, dataset_options=cfg.dataset_options, seed=cfg.seed,
                       max_text_length=cfg.max_text_length, text_encoder=text_encoder_of(teacher_meta),
                       image_mask=cfg.image_mask)
    source = BatchSource(stage, data, text_cache)
    if source.text is None:
        raise ValueError(f"stage {stage.name!r} has no text conditioning: there is no guidance to distill")
    mesh = make_mesh()
    if cfg.batch_size % mesh.shape["data"]:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {mesh.shape['data']} devices")
    workdir = check_workdir(cfg.workdir)  # every check above writes nothing; this one may create the directory
    check_same_distillation(workdir, cfg)
    if cfg.phase == "guided":
        student_stage, student_def, student_params = D.student_from_teacher(stage, teacher_params,
                                                                            jax.random.PRNGKey(cfg.seed))
        loss_fn, loss_kwargs = D.guided_distillation_loss, {}
        sampling_steps = teacher_meta.get("sampling_steps")
    else:
        student_stage, student_def, student_params = stage, teacher_def, jax.tree.map(lambda p: p.copy(), teacher_params)
        loss_fn, loss_kwargs = D.progressive_distillation_loss, {"num_steps": cfg.student_steps}
        sampling_steps = cfg.student_steps
    tx = default_optimizer(cfg.learning_rate, cfg.warmup_steps)
    step_fn = D.make_distill_step(student_def, teacher_def, teacher_params, tx, student_stage, loss_fn,
                                  cfg.ema_decay, w_range=(cfg.w_min, cfg.w_max), aug_max_t=cfg.aug_max_t,
                                  **loss_kwargs)
    record = lambda step: (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    state = fit(step_fn, init_state(student_params, tx), lambda step: shard_batch(source(step), mesh),
                workdir=workdir, steps=cfg.steps, key=jax.random.PRNGKey(cfg.seed + 1),
                checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints,
                log_every=cfg.log_every, placement=replicated(mesh), progress=progress,
                desc=f"distill {cfg.config}/{cfg.stage} ({cfg.phase})", on_start=record)
    save_params(workdir / "ema.safetensors", state["ema"],
                metadata=student_metadata(cfg, student_stage, int(state["step"]), sampling_steps, teacher_meta))
    return student_stage, student_def, state


def halvings(teacher_steps: int, student_steps: int) -> list:
    """The step counts of the students that halve `teacher_steps` down to `student_steps`: 32, 8 -> [16, 8].
    ValueError unless student_steps is teacher_steps / 2**k for some k >= 1."""
    counts, n = [], teacher_steps
    while n > student_steps and n % 2 == 0:
        n //= 2
        counts.append(n)
    if n != student_steps or not counts:
        raise ValueError(f"{student_steps} steps cannot be reached by halving {teacher_steps}: the student of each "
                         f"halving samples in half its teacher's steps (e.g. {teacher_steps} -> {teacher_steps // 2})")
    return counts


def distill_halvings(cfg: DistillConfig, teacher_steps: int, steps_per_halving: int, progress=True, text_cache=None,
                     stage=None):
    """Progressive distillation from a guided student sampled in `teacher_steps` down to cfg.student_steps, one
    halving after another, each `steps_per_halving` optimisation steps in <workdir>/<N>-steps with the previous
    student as its teacher (chapter 09). Run again, it resumes the halving it was in. The last student's
    weights are also written to <workdir>/ema.safetensors; returns what `distill` returns for it."""
    if cfg.phase != "progressive":
        raise ValueError("halvings are progressive distillation: give phase 'progressive'")
    counts = halvings(teacher_steps, cfg.student_steps)
    teacher, result = cfg.teacher, None
    for n in counts:
        workdir = pathlib.Path(cfg.workdir) / f"{n}-steps"
        result = distill(dataclasses.replace(cfg, workdir=str(workdir), teacher=str(teacher), student_steps=n,
                                             steps=steps_per_halving), progress, text_cache, stage)
        teacher = workdir / "ema.safetensors"
    shutil.copyfile(teacher, pathlib.Path(cfg.workdir) / "ema.safetensors")
    return result


def student_metadata(cfg: DistillConfig, stage: Stage, steps: int, sampling_steps, teacher_meta: dict) -> dict:
    """What a student's weight file records: its distillation, its teacher's record, how to sample it, and
    `commands`: every command from the teacher's training to this student (`lineage`)."""
    return {"config": cfg.config, "stage": cfg.stage, "steps": steps, "target": stage.unet.target,
            "guidance_embedding": True, "sampling_steps": sampling_steps,
            "train_config": {"text_encoder": text_encoder_of(teacher_meta), "max_text_length": cfg.max_text_length},
            "distill_config": dataclasses.asdict(cfg), "teacher": teacher_meta,
            "commands": lineage(teacher_meta) + [distill_command(dataclasses.replace(cfg, steps=steps))]}


def distill_command(cfg: DistillConfig) -> str:
    """The `ivlib distill` command line that runs `cfg`: every setting that shapes the student's weights is
    spelled out (checkpointing and logging, which do not, are left at the CLI's defaults)."""
    parts = ["ivlib distill", f"--teacher {cfg.teacher}", f"--phase {cfg.phase}"]
    if cfg.phase == "progressive":
        parts.append(f"--student-steps {cfg.student_steps}")
    parts += [f"--config {cfg.config}", f"--stage {cfg.stage}", f"--workdir {cfg.workdir}", f"--steps {cfg.steps}",
              f"--batch-size {cfg.batch_size}", f"--learning-rate {cfg.learning_rate:g}",
              f"--warmup-steps {cfg.warmup_steps}", f"--ema-decay {cfg.ema_decay:g}",
              f"--w-min {cfg.w_min:g}", f"--w-max {cfg.w_max:g}", f"--dataset {cfg.dataset}",
              f"--dataset-options '{json.dumps(cfg.dataset_options)}'", f"--seed {cfg.seed}"]
    return " ".join(parts)


def lineage(metadata: dict) -> list:
    """The commands that made a weight file, oldest first: its own `commands` if it records them, else those of
    its teacher (recursively) followed by the `ivlib distill` command of its distill_config; for a file of
    `ivlib train`, `training_lineage`."""
    if metadata.get("commands"):
        return list(metadata["commands"])
    if "distill_config" in metadata:
        known = {f.name for f in dataclasses.fields(DistillConfig)}
        cfg = DistillConfig(**{k: v for k, v in metadata["distill_config"].items() if k in known})
        return lineage(metadata.get("teacher") or {}) + [distill_command(dataclasses.replace(cfg, steps=metadata.get("steps", cfg.steps)))]
    return training_lineage(metadata)


def check_same_distillation(workdir, cfg: DistillConfig):
    """ValueError unless `workdir` is empty of runs or holds a distillation `cfg` may resume: same stage,
    teacher, phase and student steps (the rest may change)."""
    config_file = pathlib.Path(workdir) / "config.json"
    if not config_file.is_file():
        if (pathlib.Path(workdir) / "checkpoints").is_dir() and any((pathlib.Path(workdir) / "checkpoints").iterdir()):
            raise ValueError(f"{workdir} holds checkpoints but no config.json: not an `ivlib distill` run; "
                             "give another --workdir")
        return
    try:
        recorded = json.loads(config_file.read_text())
    except ValueError:
        raise ValueError(f"{config_file} is not JSON: not an `ivlib distill` run; give another --workdir") from None
    keys = ("config", "stage", "teacher", "phase", "student_steps")
    differ = [k for k in keys if recorded.get(k) != getattr(cfg, k)]
    if "phase" not in recorded or differ:
        raise ValueError(f"{workdir} holds another run ({', '.join(f'{k} {recorded.get(k)!r}' for k in differ)}); "
                         "its checkpoints cannot be resumed by this distillation: give another --workdir")
