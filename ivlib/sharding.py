"""Device meshes and how arrays are laid out on them (chapter 10).

ivlib trains on a 2-D mesh ("data", "model") of `data x model` devices:

* the batch is split over *both* axes, so every device works on its own examples;
* parameters, optimizer state and EMA weights are split over "model" (FSDP / ZeRO-3 style: each
  device stores 1/model of every large array, and the step all-gathers a layer's weights when it needs
  them and reduce-scatters its gradients) and replicated over "data" (plain data parallelism between
  the `data` groups). With model = 1 this is pure data parallelism; with data = 1, pure FSDP.

The partition rule is one line of shape arithmetic (`param_spec`): split an array's largest axis
that the "model" axis divides; keep small arrays (biases, norms, embeddings of a few thousand numbers)
whole on every device, where gathering them would cost more time than it saves memory. It looks only at
shapes, so Adam's moments and the EMA weights, which have their parameters' shapes, are laid out
exactly like the parameters.

A sharded training step is the ordinary pure step of `ivlib.train` compiled by `jit_step` for the mesh:
state in its shards in and out (donated, so the old and the new state are never alive together), batch
split over every device. `ivlib train` runs exactly that program, and `ivlib.memory` plans its memory.
On a laptop the same code runs on one device, or on simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8,
set before jax is imported).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ivlib.compat import fast_tracing
from ivlib.nn import layout
from ivlib.train import state_initializer

AXES = ("data", "model")
# Arrays smaller than this many elements stay replicated (our choice: 64K float32 numbers = 256 KiB;
# below that an all-gather's latency costs more than the memory it saves): biases, norm scales and a
# few small kernels (the first and last convolutions, temporal convolutions of 128-channel levels) —
# many arrays, but under 0.1 % of the paper stages' bytes (chapter 10, exercise 2).
MIN_SHARD_SIZE = 2**16


def make_mesh(data=None, model=1, devices=None):
    """A ("data", "model") mesh over `devices` (chapter 10); default all local devices, data = len(devices) // model."""
    devices = list(jax.devices() if devices is None else devices)
    data = len(devices) // model if data is None else data
    if data < 1 or model < 1 or data * model > len(devices):
        raise ValueError(f"a mesh of data={data} x model={model} needs {data * model} devices; "
                         f"{len(devices)} available")
    return Mesh(np.asarray(devices[: data * model]).reshape(data, model), AXES)


def batch_sharding(mesh, split_activations: bool = False):
    """Split the leading (batch) axis over all devices of the mesh, "data" then "model" (chapter 10); with
    split_activations, over "data" only: the devices of a model group share their examples, whose
    activations they split (`ivlib.nn.layout`)."""
    return NamedSharding(mesh, P("data") if split_activations else P(AXES))


def replicated(mesh):
    """Every device holds the whole array (chapter 10)."""
    return NamedSharding(mesh, P())


def shard_batch(batch, mesh, split_activations: bool = False):
    """Place a dict of host arrays `(B, ...)` on the mesh, batch axis split over every device (chapter 10), or
    over the "data" axis only (`batch_sharding`).

    B must be divisible by the mesh's size (data x model), or by data.
    """
    size, what = (mesh.shape["data"], "data groups") if split_activations else (mesh.size, "devices")
    for name, value in batch.items():
        if np.ndim(value) == 0 or np.shape(value)[0] % size:
            raise ValueError(f"batch[{name!r}] has shape {np.shape(value)}: its leading (batch) axis must be "
                             f"divisible by the {size} {what} of the mesh")
    return jax.device_put(batch, batch_sharding(mesh, split_activations))


def shard_process_batch(local_batch, mesh, split_activations: bool = False):
    """Multi-host: build the global batch from each process's own slice (chapter 10).

    Every process (one per TPU host, after `jax.distributed.initialize()`) passes the examples it
    loaded; together they form the global batch, split as `shard_batch` splits it. Each process loads
    `(B / processes, ...)`, or, with split_activations, the examples of the model groups that its devices
    belong to (`process_groups`; a group spread over two hosts is loaded by both, with the same examples).
    On one process it equals `shard_batch`.
    """
    sharding = batch_sharding(mesh, split_activations)
    if not split_activations:
        return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
                for name, value in local_batch.items()}
    groups = process_groups(mesh)
    out = {}
    for name, value in local_batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % len(groups):
            raise ValueError(f"local_batch[{name!r}] has shape {value.shape}: its leading axis must hold the same "
                             f"number of examples for each of this process's {len(groups)} model groups")
        global_shape = (value.shape[0] // len(groups) * mesh.shape["data"], *value.shape[1:])
        out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def process_groups(mesh) -> list:
    """The model groups (indices along "data") that have a device on this process, in order: the examples
    this process loads when the devices of a group share their examples (`shard_process_batch`)."""
    me = jax.process_index()
    return [i for i, row in enumerate(mesh.devices) if any(d.process_index == me for d in np.ravel(row))]


# [start-param-spec]
def param_spec(shape, model_size: int, min_size: int = MIN_SHARD_SIZE) -> P:
    """The PartitionSpec of one parameter (or optimizer-state array) of `shape` (chapter 10).

    Split the largest axis whose length `model_size` divides over "model" (the last such axis on a
    tie: the output features of a kernel); replicate arrays smaller than `min_size` elements, arrays
    no axis of which is divisible, and everything when model_size is 1.
    """
    shape = tuple(shape)
    if model_size < 1:
        raise ValueError(f"model_size must be >= 1; got {model_size}")
    if model_size == 1 or math.prod(shape) < min_size:
        return P()
    candidates = [(n, axis) for axis, n in enumerate(shape) if n % model_size == 0]
    if not candidates:
        return P()
    _, axis = max(candidates)
    return P(*[None] * axis, "model")
# [end-param-spec]


def state_shardings(tree, mesh, min_size: int = MIN_SHARD_SIZE):
    """A NamedSharding for every array of `tree` (train state, params, or their ShapeDtypeStructs) (chapter 10)."""
    model_size = mesh.shape["model"]
    return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(np.shape(x), model_size, min_size)), tree)


def shard_state(state, mesh, min_size: int = MIN_SHARD_SIZE):
    """Place a train state on the mesh by the partition rule of `param_spec` (chapter 10)."""
    return jax.device_put(state, state_shardings(state, mesh, min_size))


def bytes_per_device(tree, shardings=None) -> int:
    """Bytes one device stores of `tree` (arrays or ShapeDtypeStructs) under `shardings` (chapter 10).

    shardings: a matching tree of NamedShardings; None reads each leaf's own `.sharding` (or counts
    the leaf whole when it has none). Arithmetic only, nothing is allocated.
    """
    leaves = jax.tree.leaves(tree)
    specs = [getattr(x, "sharding", None) for x in leaves] if shardings is None else jax.tree.leaves(
        shardings, is_leaf=lambda s: isinstance(s, NamedSharding))
    if len(specs) != len(leaves):
        raise ValueError(f"shardings has {len(specs)} leaves but tree has {len(leaves)}")
    total = 0
    for x, sharding in zip(leaves, specs):
        shape = tuple(np.shape(x)) if sharding is None else sharding.shard_shape(tuple(np.shape(x)))
        total += math.prod(shape) * np.dtype(x.dtype).itemsize
    return total


def sharded_bytes(tree, model_size: int, min_size: int = MIN_SHARD_SIZE) -> int:
    """Bytes per device of `tree` split by `param_spec` over a "model" axis of `model_size` (chapter 10).

    The same number as `bytes_per_device(tree, state_shardings(tree, mesh))` for a mesh with that
    model axis, without needing the mesh's devices: plan for 256 devices on a laptop.
    """
    total = 0
    for x in jax.tree.leaves(tree):
        nbytes = math.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
        total += nbytes // model_size if "model" in param_spec(np.shape(x), model_size, min_size) else nbytes
    return total


def jit_step(step, mesh, state_sharding, donate: bool = True, split_activations: bool = False):
    """`step(state, batch, key) -> (state, metrics)` compiled for `mesh` (chapter 10): the state laid out by
    `state_sharding` (a sharding or a matching tree of them, e.g. `state_shardings(state, mesh)`) in and out,
    the batch split over every device (`batch_sharding`), the key and the metrics replicated, and the state
    donated unless donate=False: XLA writes the new state over the old one's buffers. split_activations: the
    batch over "data" only, and the U-Net's activations split over "model" (`ivlib.nn.layout`)."""
    traced = step
    if split_activations:
        def traced(state, batch, key):
            with layout.split_activations(mesh):
                return step(state, batch, key)

    return jax.jit(traced, in_shardings=(state_sharding, batch_sharding(mesh, split_activations), replicated(mesh)),
                   out_shardings=(state_sharding, replicated(mesh)), donate_argnums=(0,) if donate else ())


def create_sharded_state(unet_config, tx, key, mesh, min_size: int = MIN_SHARD_SIZE):
    """`ivlib.train.create_state`, but every array is created directly in its shard (chapter 10).

    No host or device ever holds a whole copy of the state: the initialiser is compiled with the
    partition rule as its output sharding. Needed at paper scale, where the 5.6B base's train state
    alone is 90 GB. Returns (ModelDef, state).
    """
    init, model_defs = state_initializer(unet_config, tx)
    with fast_tracing():
        abstract = jax.eval_shape(init, key)
        state = jax.jit(init, out_shardings=state_shardings(abstract, mesh, min_size))(key)
    return model_defs[0], state
