"""benchmarks/unet.py: its two convolution libraries compute the same step, and --convolutions is checked."""

import argparse

import jax
import numpy as np
import pytest


@pytest.fixture(scope="module")
def unet_bench(load_benchmark):
    return load_benchmark("unet")


def test_xla_convolutions_give_the_same_training_step_without_ynnpack(unet_bench):
    from ivlib.nn import Level, UNetConfig

    if why := unet_bench.unsupported("xla"):
        pytest.skip(why)  # jax before 0.10 has no YNNPACK: its convolutions are XLA's own
    config = UNetConfig(frames=2, height=8, width=8, text_dim=unet_bench.TEXT_DIM, head_dim=8, levels=(
        Level(8, 1, False, "attention"), Level(16, 1, True, "conv")))
    steps = {}
    for name in ("ynnpack", "xla"):
        run = unet_bench.setup(config, 2, 1, unet_bench.CONVOLUTIONS[name])
        args = (run["params"], run["opt_state"], *run["inputs"], run["key"])
        compiled = run["step"].lower(*args).compile()
        steps[name] = jax.tree.leaves(compiled(*args)), compiled.as_text()
    assert "__ynn_fusion" not in steps["xla"][1]  # XLA's own kernels only
    for a, b in zip(steps["ynnpack"][0], steps["xla"][0], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_convolutions_argument(unet_bench):
    assert unet_bench.libraries("ynnpack,xla") == ("ynnpack", "xla") and unet_bench.unsupported("ynnpack") is None
    for bad in ("eigen", "xla,xla", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="expected distinct names from"):
            unet_bench.libraries(bad)
