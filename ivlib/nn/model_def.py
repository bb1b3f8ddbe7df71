"""A model's structure apart from its parameters (chapter 04).

Flax NNX splits a module into its graph (`graphdef`), its parameters and the rest of its state. ivlib
keeps parameters in plain pytrees (train state, checkpoints, weight files) and carries the structure
beside them as a `ModelDef`, so that jit-compiled steps and samplers take parameters as ordinary
arguments and `bind` rebuilds the module where it is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flax import nnx


@dataclass(frozen=True)
class ModelDef:
    """Everything about a model except its parameters: the NNX graph and non-trainable state."""

    graphdef: Any
    rest: Any

    @classmethod
    def split(cls, model: nnx.Module):
        """(ModelDef, params) of an NNX module: its nnx.Param leaves, and everything else."""
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return cls(graphdef, rest), params

    def bind(self, params) -> nnx.Module:
        """The model with `params` (chapter 04)."""
        return nnx.merge(self.graphdef, params, self.rest)
