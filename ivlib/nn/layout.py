"""Activations split over devices inside the Video U-Net (chapter 10).

FSDP (`ivlib.sharding`) splits the state; every device still holds the activations of whole examples, and
at 128 frames of 320x192 those do not fit any accelerator. A space-time separable block offers a cut: its
spatial layers treat every frame alone and its temporal layer every pixel alone. So, inside
`split_activations(mesh)`, each block lays out its video `(B, F, H, W, C)` with the *frames* split over the
mesh's "model" axis for its spatial layers, and with the *rows* split for its temporal layer (the examples
over "data"); XLA moves the data between the two layouts (an all-to-all). Each device then keeps 1/model of
every activation; the examples of a step are shared by the devices of a model group instead of one device
each. The arithmetic is unchanged: the step equals the single-device step. Outside the context, and where
an axis does not divide by the model axis (a short clip, a small low-resolution level), nothing changes.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

_MESH = contextvars.ContextVar("ivlib_activation_mesh", default=None)
FRAMES, ROWS = 1, 2  # the axes of (B, F, H, W, C) split for spatial and for temporal layers


@contextlib.contextmanager
def split_activations(mesh):
    """Within this context, tracing a Video U-Net splits its activations over `mesh` (see the module)."""
    token = _MESH.set(mesh)
    try:
        yield mesh
    finally:
        _MESH.reset(token)


def constrain(x, axis: int):
    """`x` (B, F, H, W, C) laid out with `axis` split over "model" and the batch over "data", when a mesh is
    set by `split_activations` and both divide; otherwise `x` unchanged."""
    mesh = _MESH.get()
    if mesh is None or mesh.shape["model"] == 1 or x.shape[axis] % mesh.shape["model"] \
            or x.shape[0] % mesh.shape["data"]:
        return x
    spec = ["data"] + [None] * (x.ndim - 1)
    spec[axis] = "model"
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))
