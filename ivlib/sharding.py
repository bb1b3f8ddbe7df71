"""Device meshes and how arrays are laid out on them (chapter 10).

ivlib trains on a 2-D mesh ("data", "model"): the batch is split over "data"; parameters and
optimizer state are replicated (pure data parallelism) or, with a "model" axis > 1, sharded
FSDP-style. On a laptop the same code runs on one device or on simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "model")


def make_mesh(data=None, model=1, devices=None):
    """A ("data", "model") mesh over `devices` (default: all local devices; data = len(devices) // model)."""
    devices = list(jax.devices() if devices is None else devices)
    data = len(devices) // model if data is None else data
    if data < 1 or model < 1 or data * model > len(devices):
        raise ValueError(f"a mesh of data={data} x model={model} needs {data * model} devices; "
                         f"{len(devices)} available")
    return Mesh(np.asarray(devices[: data * model]).reshape(data, model), AXES)


def batch_sharding(mesh):
    """Split the leading (batch) axis of every array over the mesh's "data" axis."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh):
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def shard_batch(batch, mesh):
    """Place a dict of host arrays on the mesh, batch axis split over "data"."""
    size = mesh.shape["data"]
    for name, value in batch.items():
        if np.shape(value)[0] % size:
            raise ValueError(f"batch[{name!r}] has batch size {np.shape(value)[0]}, not divisible by the "
                             f"{size} devices of the mesh's data axis")
    return jax.device_put(batch, batch_sharding(mesh))
