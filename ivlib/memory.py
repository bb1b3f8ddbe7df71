"""A memory plan without the hardware (chapter 10).

How much memory does one device need to train a stage of the cascade on a given mesh? Two answers,
both computed from shapes alone (`jax.ShapeDtypeStruct`, nothing allocated):

* `state_bytes`: arithmetic. The train state is parameters (float32), Adam's two moments and the EMA
  weights — 16 bytes per parameter — split over the mesh's "model" axis by `ivlib.sharding`.
* `plan_memory`: XLA's own answer. The sharded training step is lowered and compiled for the mesh on
  abstract inputs, and `compiled.memory_analysis()` reports its buffers per device: arguments (state and
  batch), outputs, and temporaries (activations kept for the backward pass, gradients, gathered weights).

Compiling needs the mesh's devices to exist, but not their memory: on a CPU, simulate them with
XLA_FLAGS=--xla_force_host_platform_device_count=N (set before jax is imported). The CPU compiler's
buffer assignment is an estimate of a TPU's or GPU's: it fuses differently and never rematerialises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ivlib.compat import fast_tracing
from ivlib.sharding import MIN_SHARD_SIZE, batch_sharding, bytes_per_device, jit_step, sharded_bytes, state_shardings
from ivlib.stage import Stage
from ivlib.train import default_optimizer, make_train_step, state_initializer

GB = 1e9


def abstract_train_state(stage: Stage, tx, key=None):
    """(ModelDef, state) of `ivlib.train.create_state` with ShapeDtypeStructs for arrays (chapter 10).

    Nothing is allocated: the 5.6B base's state (90 GB) is described in a few seconds.
    """
    key = jax.random.key(0) if key is None else key
    init, model_defs = state_initializer(stage.unet, tx)
    with fast_tracing():
        state = jax.eval_shape(init, key)
    return model_defs[0], state


def abstract_batch(stage: Stage, batch_size: int, text_length: int, text_dim: int | None = None):
    """ShapeDtypeStructs of one training batch of `stage` (chapter 10), as `ivlib.train` takes it.

    video (B, F, H, W, 3) at the stage's output size (a fully convolutional stage crops it inside the
    step); text (B, L, D) float32; text_mask (B, L) bool; is_image (B,) bool; and for SR stages the
    clean low-resolution video `cond` (B, in_frames, in_height, in_width, 3).
    """
    if batch_size < 1 or text_length < 1:
        raise ValueError(f"batch_size and text_length must be >= 1; got {batch_size}, {text_length}")
    u = stage.unet
    d = u.text_dim if text_dim is None else text_dim
    f32 = jnp.float32
    batch = {"video": jax.ShapeDtypeStruct((batch_size, u.frames, u.height, u.width, u.channels), f32),
             "is_image": jax.ShapeDtypeStruct((batch_size,), jnp.bool_)}
    if d:
        batch["text"] = jax.ShapeDtypeStruct((batch_size, text_length, d), f32)
        batch["text_mask"] = jax.ShapeDtypeStruct((batch_size, text_length), jnp.bool_)
    if stage.kind != "base":
        batch["cond"] = jax.ShapeDtypeStruct(
            (batch_size, stage.in_frames, stage.in_height, stage.in_width, u.channels), f32)
    return batch


def state_bytes(state, model_size: int, min_size: int = MIN_SHARD_SIZE) -> dict:
    """Bytes per device of each part of a (possibly abstract) train state whose arrays are split over
    a "model" axis of `model_size` devices by `ivlib.sharding.param_spec` (chapter 10)."""
    parts = {name: sharded_bytes(state[name], model_size, min_size) for name in ("params", "opt_state", "ema")}
    parts["total"] = sum(parts.values()) + sharded_bytes(state["step"], model_size, min_size)
    return parts


@dataclass
class CompiledStep:
    """A training step compiled for a mesh on abstract inputs (chapter 10).

    `compiled(state, batch, key)` runs it on real arrays laid out like `state` and `batch` (state donated).
    """

    compiled: Any
    model_def: Any
    state: Any  # ShapeDtypeStructs with their shardings
    batch: dict
    lower_s: float
    compile_s: float


def compile_sharded_step(stage: Stage, mesh, batch_per_device: int = 1, tx=None, text_length: int = 128,
                         donate: bool = True, min_size: int = MIN_SHARD_SIZE,
                         split_activations: bool = False) -> CompiledStep:
    """Lower and compile `ivlib.train.make_train_step` for `mesh` from shapes alone (chapter 10).

    State sharded by `ivlib.sharding.param_spec` (threshold `min_size`), batch of batch_per_device x
    mesh size examples split over every device, state donated (updated in place) unless donate=False.
    split_activations: batch_per_device x data examples, each shared by the devices of a model group, which
    split its activations (`ivlib.nn.layout`). tx defaults to `ivlib.train.default_optimizer()` (Adam).
    """
    if batch_per_device < 1:
        raise ValueError(f"batch_per_device must be >= 1; got {batch_per_device}")
    tx = default_optimizer() if tx is None else tx
    model_def, state = abstract_train_state(stage, tx)
    batch = abstract_batch(stage, batch_per_device * (mesh.shape["data"] if split_activations else mesh.size),
                           text_length)
    state_sh = state_shardings(state, mesh, min_size)
    batch_sh = {name: batch_sharding(mesh, split_activations) for name in batch}
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sh)
    batch = {name: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sh[name]) for name, x in batch.items()}
    key = jax.eval_shape(lambda: jax.random.key(0))

    jitted = jit_step(make_train_step(model_def, tx, stage), mesh, state_sh, donate,  # what `ivlib train` runs
                      split_activations)
    start = time.perf_counter()
    with fast_tracing():
        lowered = jitted.lower(state, batch, key)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    return CompiledStep(compiled, model_def, state, batch, lower_s, time.perf_counter() - start)


def memory_stats(compiled) -> dict | None:
    """XLA's buffer assignment of a compiled function, bytes per device (chapter 10): argument, output,
    alias (outputs written over donated arguments), temp, generated_code, and
    total = argument + output - alias + temp. None where the backend does not report."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    mem = {name: int(getattr(stats, f"{name}_size_in_bytes"))
           for name in ("argument", "output", "alias", "temp", "generated_code")}
    mem["total"] = mem["argument"] + mem["output"] - mem["alias"] + mem["temp"]
    return mem


def plan_memory(stage: Stage, mesh, batch_per_device: int = 1, tx=None, text_length: int = 128,
                compile: bool = True, donate: bool = True, min_size: int = MIN_SHARD_SIZE,
                split_activations: bool = False) -> dict:
    """Per-device memory of training `stage` on `mesh`, from abstract shapes (chapter 10).

    Returns a dict of plain numbers (bytes; seconds): `params` (count), `state` (arithmetic, per part,
    per device), `batch_bytes` (per device), and with compile=True `lower_s`, `compile_s` and
    `compiled` = `memory_stats` of the step compiled by `compile_sharded_step`.
    """
    if batch_per_device < 1:
        raise ValueError(f"batch_per_device must be >= 1; got {batch_per_device}")
    tx = default_optimizer() if tx is None else tx
    _, state = abstract_train_state(stage, tx)
    batch = abstract_batch(stage, batch_per_device * (mesh.shape["data"] if split_activations else mesh.size),
                           text_length)
    result = {
        "stage": stage.name,
        "mesh": dict(mesh.shape),
        "batch_per_device": batch_per_device,
        "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"])),
        "state": state_bytes(state, mesh.shape["model"], min_size),
        "batch_bytes": bytes_per_device(batch, {name: batch_sharding(mesh, split_activations) for name in batch}),
        "split_activations": split_activations,
    }
    if compile:
        step = compile_sharded_step(stage, mesh, batch_per_device, tx, text_length, donate, min_size, split_activations)
        result.update(lower_s=step.lower_s, compile_s=step.compile_s, compiled=memory_stats(step.compiled))
    return result


def fits(total_bytes: float, device_gb: float, headroom: float = 0.9) -> bool:
    """Whether `total_bytes` fit a device of `device_gb` GB, keeping 10 % for the runtime (chapter 10; our margin)."""
    return total_bytes <= headroom * device_gb * GB
