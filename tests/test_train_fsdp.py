"""`ivlib train` on a mesh (chapter 10): the `colab` config, shrunk to CPU size and read by a tiny T5, trains on
8 simulated devices with its state split over them (FSDP), returns it still split, and resumes exactly.

8 devices need XLA_FLAGS set before jax is imported, so the runs happen in a subprocess (this file as a
script, `__main__` below), which prints its measurements as JSON for the assertions here.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _shrunken_colab_base():
    """The colab config's base stage at CPU size: its layout (attention at every level, bfloat16), fewer
    and narrower levels, 4 frames of 8 x 8, text of the tiny T5's width."""
    from ivlib.configs import get_stage
    from ivlib.nn.unet import Level

    stage = get_stage("colab", "base")
    unet = dataclasses.replace(stage.unet, frames=4, height=8, width=8, text_dim=32, head_dim=32,
                               levels=(Level(128, 1, True, "attention"), Level(256, 1, True, "attention")))
    return dataclasses.replace(stage, unet=unet)


def _runs(tmp):
    import jax
    import numpy as np

    from test_config_text_encoder import t5_checkpoint

    from ivlib.sharding import bytes_per_device, sharded_bytes
    from ivlib.trainer import TEXT_CACHE, TrainConfig, train

    assert len(jax.devices()) == 8, jax.devices()
    tmp = Path(tmp)
    stage = _shrunken_colab_base()
    cfg = lambda workdir, steps: TrainConfig(
        workdir=str(tmp / workdir), config="colab", stage="base", steps=steps, batch_size=8, checkpoint_every=2,
        log_every=1, warmup_steps=1, text_encoder=str(t5_checkpoint(tmp / "t5")), max_text_length=16,
        dataset_options={"max_objects": 1}, model_parallel=8)
    _, whole = train(cfg("whole", 3), progress=False, stage=stage)
    # a run stopped after step 2 leaves what this one saved then: its config, metrics and checkpoint of step 2
    (tmp / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp / "whole" / "checkpoints" / "2", tmp / "resumed" / "checkpoints" / "2")
    for name in ("config.json", "metrics.jsonl", TEXT_CACHE):
        shutil.copy(tmp / "whole" / name, tmp / "resumed" / name)
    _, resumed = train(cfg("resumed", 3), progress=False, stage=stage)
    params = jax.tree.leaves(whole["params"])
    host = lambda tree: [np.asarray(x, np.float32) for x in jax.tree.leaves(tree)]
    # the weight file read back straight into its shards on the run's mesh (`load_weights(..., mesh)`)
    from ivlib.pretrained import load_weights
    from ivlib.trainer import run_mesh

    _, _, loaded = load_weights(stage, tmp / "whole" / "ema.safetensors", run_mesh(cfg("whole", 3)))
    ema = [np.asarray(x, np.float16).astype(np.float32) for x in jax.tree.leaves(whole["ema"])]
    return {
        "step": int(whole["step"]),
        "param_bytes": sum(x.nbytes for x in params),
        "param_bytes_per_device": bytes_per_device(whole["params"]),
        "state_bytes": sum(x.nbytes for x in jax.tree.leaves(whole)),
        "state_bytes_per_device": bytes_per_device(whole),
        "state_bytes_planned": sharded_bytes(whole, 8),  # the memory plan's arithmetic (`ivlib.memory.state_bytes`)
        "devices_per_leaf": min(len(x.sharding.device_set) for x in params),
        "loaded_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(host(loaded), ema)),
        "loaded_bytes_per_device": bytes_per_device(loaded),
        "loaded_specs_match": all(a.sharding == b.sharding for a, b in zip(jax.tree.leaves(loaded), params)),
        "resume_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(host(whole), host(resumed))),
        "recorded": json.loads((tmp / "whole" / "config.json").read_text()),
    }


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    flags = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
             "--xla_llvm_disable_expensive_passes=true")
    tmp = tmp_path_factory.mktemp("fsdp")
    # the resumed run compiles the same step again: XLA's persistent cache serves it the first run's program
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp / "xla"))
    proc = subprocess.run([sys.executable, __file__, str(tmp)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_colab_trains_with_its_state_split_over_the_mesh(fsdp_run):
    assert fsdp_run["step"] == 3 and fsdp_run["devices_per_leaf"] == 8
    assert fsdp_run["recorded"]["model_parallel"] == 8 and fsdp_run["recorded"]["config"] == "colab"
    # parameters, Adam's moments and the EMA: each device keeps about an eighth (16 %): arrays under
    # ivlib.sharding.MIN_SHARD_SIZE numbers (biases, norms, this small model's 128-channel attention) stay whole
    for part in ("param", "state"):
        ratio = fsdp_run[f"{part}_bytes_per_device"] / fsdp_run[f"{part}_bytes"]
        assert 1 / 8 <= ratio < 0.2, (part, ratio)
    assert fsdp_run["state_bytes_per_device"] == fsdp_run["state_bytes_planned"]  # what the memory plan counts


def test_weights_load_straight_into_their_shards(fsdp_run):
    assert fsdp_run["loaded_diff"] == 0.0  # the float16 file, exactly
    assert fsdp_run["loaded_specs_match"] and fsdp_run["loaded_bytes_per_device"] == fsdp_run["param_bytes_per_device"]


def test_a_sharded_run_resumes_exactly(fsdp_run):
    assert fsdp_run["resume_diff"] == 0.0


if __name__ == "__main__":
    print(json.dumps(_runs(sys.argv[1])))
