"""Shipped weights: a stage's EMA parameters in one compact safetensors file (chapters 04–05).

The toy cascade's trained weights live in `ivlib/assets/weights/<config>_<stage>.safetensors`,
stored as float16 (half the size; the toy models lose nothing measurable) and loaded back as
float32. Each file records the `ivlib train` command that produced it.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS_DIR = pathlib.Path(__file__).parent / "assets" / "weights"


def _flat(tree):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}, treedef


def save_params(path, params, metadata=None, dtype=np.float16):
    """Write a parameter pytree to `path` (safetensors; values cast to `dtype`)."""
    from safetensors.numpy import save_file

    flat, _ = _flat(params)
    arrays = {name: np.array(np.asarray(value, dtype), order="C") for name, value in flat.items()}
    meta = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a crash never leaves a half-written weight file
    return path


def read_metadata(path):
    """The metadata dict stored with a weight file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {key: json.loads(value) for key, value in (f.metadata() or {}).items()}


def update_metadata(path, **entries):
    """Add or replace metadata entries of a weight file, leaving its parameters byte for byte as they are.

    For what a training config cannot say, e.g. the commands of a run that changed its recipe on resume.
    """
    from safetensors.numpy import load_file, save_file

    path = pathlib.Path(path)
    meta = {**read_metadata(path), **entries}
    tmp = path.with_suffix(".tmp")
    save_file(load_file(str(path)), str(tmp), metadata={key: json.dumps(value) for key, value in meta.items()})
    tmp.replace(path)
    return meta


def param_names(path) -> set[str]:
    """The names of the parameters a weight file holds (read from its header; no array is loaded)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return set(f.keys())


def missing_params(path, like) -> list[str]:
    """The names of `like`'s parameters that the weight file at `path` does not hold."""
    names = param_names(path)
    return [name for name in _flat(like)[0] if name not in names]


def load_params(path, like, shardings=None, keep=()):
    """Read a weight file into the structure of the pytree `like` (e.g. a model's abstract params).

    shardings: None (each array whole, on the default device), or a matching tree of shardings (e.g.
    `ivlib.sharding.state_shardings(like, mesh)`, chapter 10): every device then reads only its own slice of
    each array from the file, so a 5.6B stage is never whole in any memory.
    keep: names of parameters the file may lack; they keep `like`'s values (a layer added to a trained
    stage, `ivlib.trainer.initial_weights`).
    Raises FileNotFoundError if the file is missing and ValueError naming the first missing or
    mis-shaped parameter if the file does not fit the model.
    """
    from safetensors import safe_open

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    flat, treedef = _flat(like)
    placed = [None] * len(flat) if shardings is None else jax.tree.leaves(
        shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
    if len(placed) != len(flat):
        raise ValueError(f"shardings has {len(placed)} leaves, the parameters {len(flat)}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            names = set(f.keys())
            leaves = []
            for (name, ref), sharding in zip(flat.items(), placed):
                if name not in names and name in keep:
                    leaves.append(ref if sharding is None else jax.device_put(ref, sharding))
                    continue
                if name not in names:
                    raise ValueError(f"weight file {path} has no parameter {name}: it was saved from another "
                                     "architecture")
                stored = f.get_slice(name)
                if tuple(stored.get_shape()) != tuple(ref.shape):
                    raise ValueError(f"weight file {path}: parameter {name} has shape {tuple(stored.get_shape())}, "
                                     f"the model expects {tuple(ref.shape)}")
                if sharding is None:
                    leaves.append(jnp.asarray(stored[:] if ref.shape else f.get_tensor(name), ref.dtype))
                else:
                    read = lambda index, stored=stored, name=name: np.asarray(
                        stored[index] if ref.shape else f.get_tensor(name), ref.dtype)
                    leaves.append(jax.make_array_from_callback(tuple(ref.shape), sharding, read))
    except ValueError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"weight file {path} is not a readable safetensors file: {err}") from err
    return jax.tree_util.tree_unflatten(treedef, leaves)


def shipped_weights_path(config_name: str, stage_name: str) -> pathlib.Path:
    """Where the shipped weights of a stage live inside the package."""
    return WEIGHTS_DIR / f"{config_name}_{stage_name}.safetensors"
