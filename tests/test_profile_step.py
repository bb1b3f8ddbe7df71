"""benchmarks/profile_step.py sorts the compiled HLO of a training step into kinds of work, with FLOPs."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx


@pytest.fixture(scope="module")
def profile_step(load_benchmark):
    return load_benchmark("profile_step")


class Tiny(nnx.Module):
    """A 3x3 conv, a GroupNorm, a Linear and `attend`: one of each kind of layer the profile names."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(8, 16, (3, 3), rngs=rngs)
        self.norm = nnx.GroupNorm(16, num_groups=4, rngs=rngs)
        self.proj = nnx.Linear(16, 48, rngs=rngs)

    def __call__(self, x):
        from ivlib.nn import attention

        h = self.norm(self.conv(x))  # (2, 8, 8, 16)
        q, k, v = jnp.split(self.proj(h.reshape(2, 64, 16)).reshape(2, 64, 3, 4, 4), 3, axis=2)
        return attention.attend(q[:, :, 0], k[:, :, 0], v[:, :, 0]).sum()


def test_categories_and_conv_flops_of_a_gradient(profile_step):
    from ivlib.nn import attention

    originals = nnx.Conv.__call__, attention.attend
    with profile_step.scoped_layers():
        model = Tiny(nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)
        x = jnp.ones((2, 8, 8, 8))
        grad = jax.jit(jax.grad(lambda p, x: nnx.merge(graphdef, p)(x), argnums=(0, 1)))
        text = grad.lower(params, x).compile().as_text()
    labels = profile_step.categorize(profile_step.parse_hlo(text))
    categories = {category for category, _ in labels.values()}
    for expected in ("conv forward", "conv input-grad", "conv weight-grad", "attention fwd", "attention bwd",
                     "dense fwd", "dense bwd"):
        assert expected in categories, (expected, categories)
    assert any(c.startswith("norm") for c in categories), categories
    # every convolution does 2 * (2*8*8*16 outputs) * (3*3*8 taps) FLOPs, forward or either gradient
    conv_flops = {flops for category, flops in labels.values() if category.startswith("conv") and flops}
    assert conv_flops == {2.0 * 2 * 8 * 8 * 16 * 3 * 3 * 8}
    assert (nnx.Conv.__call__, attention.attend) == originals  # the labels are undone on exit


def test_conv_calls_are_recorded_and_timed_alone(profile_step):
    """--convolutions xla: each nn.Conv call's settings and input shape are recorded while tracing, and every
    distinct call is timed on its own three ways, counted as often as it was called, with its FLOPs."""
    calls = []
    with profile_step.scoped_layers(calls):
        model = Tiny(nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)
        twice = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x) + nnx.merge(graphdef, p)(x))
        twice.lower(params, jnp.ones((2, 8, 8, 8)))
    assert len(calls) == 2 and calls[0] == calls[1]
    settings, shape = calls[0]
    assert dict(settings)["in_features"] == 8 and dict(settings)["out_features"] == 16 and shape == (2, 8, 8, 8)
    rows = profile_step.isolated_convs(calls, {}, reps=1)
    assert set(rows) == {"conv forward", "conv input-grad", "conv weight-grad"}
    for row in rows.values():
        assert row["thunks"] == 2 and row["ms"] > 0
        assert row["gflop"] == pytest.approx(2 * 2.0 * 2 * 8 * 8 * 16 * 3 * 3 * 8 / 1e9)
