"""Differences between the jax / flax versions ivlib runs on, in one place (chapters 03, 04, 10).

Colab's TPU runtime ships an older jax and flax than PyPI's newest, so ivlib supports both.
Each shim here says which versions differ and how; nothing else in the library tests versions.
"""

from __future__ import annotations

import contextlib

from flax import nnx

# flax >= 0.12 wants lists of submodules wrapped in nnx.List; flax 0.11 takes a plain list.
ModuleList = getattr(nnx, "List", list)


def get_value(variable):
    """The array held by an nnx Variable: flax >= 0.12 deprecates `.value`; 0.11 has no get_value."""
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


def set_value(variable, value):
    """Store `value` in an nnx Variable (flax >= 0.12: set_value; 0.11: `.value = ...`)."""
    if hasattr(variable, "set_value"):
        variable.set_value(value)
    else:
        variable.value = value


@contextlib.contextmanager
def fast_tracing():
    """Trace big models in seconds instead of minutes (chapter 10; a workaround, our choice).

    Building a Flax NNX model under `nnx.eval_shape`/`jax.eval_shape` probes `tracer.sharding` on every
    parameter it creates (flax's `Variable.set_value`); in jax 0.10 that probe raises an
    AttributeError whose message walks every equation traced so far, so tracing is quadratic in the
    number of parameters: 60 s for a 4.6B-parameter U-Net, 3 s with this context. jax PR #40041 removes
    the message computation upstream. Inside the context the message's "origin" part is left out;
    nothing else changes. A no-op where jax has no such method.
    """
    try:
        from jax._src.interpreters import partial_eval as pe
    except ImportError:  # pragma: no cover - a jax without this module has its own tracing
        yield
        return
    tracer = getattr(pe, "DynamicJaxprTracer", None)
    original = tracer.__dict__.get("_origin_msg") if tracer is not None else None
    if original is None:
        yield
        return
    tracer._origin_msg = lambda self: ""
    try:
        yield
    finally:
        tracer._origin_msg = original
