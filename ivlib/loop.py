"""One training loop for every model ivlib trains: the cascade's stages and the toy evaluator (chapter 04).

The train state is a plain pytree, {"step", "params", "opt_state", "ema"} (`init_state`), so orbax can
checkpoint it, `ivlib.sharding` can place it on a device mesh and `jax.jit` can take it as an argument.
`apply_gradients` is the optimiser step and the EMA of the weights that every jit-compiled step ends with.

`fit` runs a step function for a number of steps with:

* exact resume: step k always sees `batch_fn(k)` and the key fold_in(key, k), and starts from the newest
  orbax checkpoint in `<workdir>/checkpoints`, so an interrupted run that is started again continues
  exactly as an uninterrupted one would. If that checkpoint cannot be read, the run stops before it
  writes anything, saying how to resume from the one before: a later save would replace it;
* a NaN guard: a non-finite metric stops the run with `TrainingDiverged` before anything is saved, so
  the last good checkpoint survives;
* a metrics log, one JSON row per step in `<workdir>/metrics.jsonl`, and a tqdm progress bar.
"""

from __future__ import annotations

import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import optax


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------- the state and its update
def init_state(params, tx: optax.GradientTransformation) -> dict:
    """A fresh train state for `params`: step 0, the optimiser's state, EMA weights equal to the params."""
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
            "ema": jax.tree.map(jnp.copy, params)}


def ema_update(ema, params, step, decay):
    """Exponential moving average of the weights (chapter 04): ema <- d ema + (1 - d) params with
    d = min(decay, (1 + step) / (10 + step)), a warm-up so that short runs already have useful EMA weights.
    `step` counts the updates made before this one."""
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def apply_gradients(state: dict, grads, tx: optax.GradientTransformation, ema_decay: float) -> dict:
    """One optimiser update of `state` with `grads`, then the EMA update; the step counter grows by one."""
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state,
            "ema": ema_update(state["ema"], params, state["step"], ema_decay)}


# ---------------------------------------------------------------- work directory and checkpoints
def check_workdir(workdir) -> pathlib.Path:
    """`workdir` as an absolute path, created if needed; ValueError unless it is a writable directory."""
    path = pathlib.Path(workdir).absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"workdir {path} is not a writable directory: {err}") from err
    return path


def checkpoint_manager(directory, keep: int):
    """An orbax CheckpointManager for `directory` that keeps the newest `keep` checkpoints."""
    import logging

    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)  # orbax logs an ERROR for each unreadable checkpoint here; restore_latest says which
    try:
        return ocp.CheckpointManager(directory, options=options)
    finally:
        absl.setLevel(level)


def abstract_like(state, sharding=None):
    """Shapes, dtypes and the placement to restore a checkpoint onto (it may have been saved on other devices):
    `sharding` is one sharding for every array, a matching tree of them (a sharded state, chapter 10), or
    None (the default device)."""
    if sharding is None or isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, sharding)


def restore_latest(manager, abstract_state, directory=None, skip_unreadable=True):
    """The newest readable checkpoint of `manager` laid out like `abstract_state`, or None if there is none.

    A torn or corrupt checkpoint (or one of another model) is skipped with a warning for the one before;
    ValueError if none is readable. With skip_unreadable=False an unreadable newest checkpoint is a
    ValueError (what `fit` wants: resuming from an older one would later save over it).
    """
    import orbax.checkpoint as ocp

    directory = pathlib.Path(directory or manager.directory)
    errors = []
    steps = sorted(manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as err:  # a torn or corrupt checkpoint, or another model's: try the one before
            why = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            if not skip_unreadable:
                aside = directory.parent / f"unreadable-checkpoint-{step}"
                then = f"resume from step {steps[i + 1]}, the checkpoint before it" if i + 1 < len(steps) else "start afresh"
                raise ValueError(f"the newest checkpoint, step {step} in {directory}, cannot be read: it is corrupt "
                                 f"or was saved by another model ({why}). Nothing was changed; to {then}, move it "
                                 f"out of the way: mv {directory / str(step)} {aside}") from err
            errors.append(f"step {step}: {why}")
            if i + 1 < len(steps):
                print(f"warning: checkpoint at step {step} in {directory} could not be read; trying an older one")
    if errors:
        raise ValueError(f"no readable checkpoint in {directory} (corrupt, or saved by another model): "
                         + "; ".join(errors))
    return None


def _append_rows(path: pathlib.Path, rows):
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _truncate_rows(path: pathlib.Path, step: int):
    """On resume, forget logged rows after the checkpoint we resume from (they will be redone)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows))


# ---------------------------------------------------------------- the loop
def fit(step_fn, state: dict, batch_fn, *, workdir, steps: int, key=None, checkpoint_every: int = 100,
        keep_checkpoints: int = 3, log_every: int = 10, placement=None, progress: bool = True,
        desc: str = "train", on_start=None) -> dict:
    """Train `state` up to step `steps` (chapter 04); returns the final state where it lives (on the devices,
    in its shards: `jax.device_get` brings a small one to the host).

    step_fn(state, batch, key) -> (state, metrics): one jit-compiled step; metrics is a dict of scalars. It may
    donate its state (`ivlib.sharding.jit_step`): the loop never reads a state it has passed on.
    batch_fn(k): the batch of step k (placed on devices as the step wants it). key: the run's root key;
    step k gets fold_in(key, k) (None when the step needs no randomness). placement: where the state
    lives (a sharding, e.g. replicated over a mesh, or a tree of them, e.g. FSDP shards; None: where
    `state` already is).

    Resumes from the newest checkpoint in <workdir>/checkpoints (saved every `checkpoint_every` steps
    and at the end, the newest `keep_checkpoints` kept), logs every step to <workdir>/metrics.jsonl
    (flushed every `log_every` steps) and raises TrainingDiverged at the first non-finite metric,
    before saving anything. An unreadable newest checkpoint is a ValueError, raised before anything is
    written. on_start(step): called once the run is sure to go ahead, with the step it starts from, before
    its first write (e.g. to record the run's config).
    """
    import orbax.checkpoint as ocp

    for name, value in (("steps", steps), ("checkpoint_every", checkpoint_every),
                        ("keep_checkpoints", keep_checkpoints), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    workdir = check_workdir(workdir)
    manager = checkpoint_manager(workdir / "checkpoints", keep_checkpoints)
    restored = restore_latest(manager, abstract_like(state, placement), workdir / "checkpoints", skip_unreadable=False)
    if restored is not None:
        state = restored
    start = int(state["step"])
    if on_start is not None:
        on_start(start)
    metrics_path = workdir / "metrics.jsonl"
    _truncate_rows(metrics_path, start)
    if placement is not None:
        state = jax.device_put(state, placement)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=desc, unit="step")
    pending, t_last, n_last = [], time.perf_counter(), start
    for step in range(start, steps):
        state, metrics = step_fn(state, batch_fn(step), None if key is None else jax.random.fold_in(key, step))
        pending.append((step + 1, metrics))
        done = step + 1
        if done % log_every == 0 or done % checkpoint_every == 0 or done == steps:
            now = time.perf_counter()
            rate = (done - n_last) / (now - t_last)
            rows = [{"step": s, **{k: float(v) for k, v in m.items()}} for s, m in pending]
            bad = [r for r in rows if not all(math.isfinite(v) for k, v in r.items() if k != "step")]
            if bad:
                _append_rows(metrics_path, rows)
                last = manager.latest_step()
                raise TrainingDiverged(f"non-finite loss at step {bad[0]['step']} ({bad[0]}); stopped without saving. "
                                       f"The last good checkpoint (step {last}) is in {workdir / 'checkpoints'}; "
                                       "lower the learning rate and run the same command to resume from it.")
            rows[-1].update(steps_per_s=rate, time=time.time())
            _append_rows(metrics_path, rows)
            pending, t_last, n_last = [], now, done
            if bar is not None:
                bar.update(len(rows))
                bar.set_postfix({k: f"{v:.4f}" for k, v in rows[-1].items() if k not in ("step", "time")})
            if done % checkpoint_every == 0 or done == steps:
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
    if bar is not None:
        bar.close()
    return state
