"""Tests of the device mesh and the partition rules (chapter 10).

The sharded-vs-single-device test needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8
must be set before jax is imported, so it runs this file as a script in a subprocess (`__main__` below),
which prints its measurements as JSON for the assertions here.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ivlib.sharding import (MIN_SHARD_SIZE, batch_sharding, bytes_per_device, make_mesh, param_spec, shard_batch,
                            shard_process_batch, sharded_bytes, state_shardings)

MESHES = ((8, 1), (4, 2), (2, 4))


# ------------------------------------------------------------------ partition rule (1 device is enough)
def test_param_spec_splits_the_largest_divisible_axis():
    assert param_spec((3, 3, 256, 512), 4) == P(None, None, None, "model")
    assert param_spec((4096, 1024), 8) == P("model")
    assert param_spec((3, 3, 320, 96), 64) == P(None, None, "model")  # 96 is not divisible by 64
    assert param_spec((768, 768), 2) == P(None, "model")  # tie: the last axis (output features)


def test_param_spec_replicates_small_indivisible_and_unsharded():
    assert param_spec((2560,), 8) == P()  # a bias: below MIN_SHARD_SIZE
    assert param_spec((3, 3, 255, 257), 2) == P()  # no axis divisible by 2
    assert param_spec((3, 3, 1024, 1024), 1) == P()  # no model axis
    assert param_spec((MIN_SHARD_SIZE - 1,), 1) == P()
    assert param_spec((MIN_SHARD_SIZE,), 2) == P("model")
    assert param_spec((), 4) == P()  # the step counter
    with pytest.raises(ValueError, match="model_size"):
        param_spec((8, 8), 0)


def test_bytes_per_device_is_shard_arithmetic():
    mesh = make_mesh(1, 1)
    tree = {"w": jax.ShapeDtypeStruct((1024, 512), jnp.float32), "b": jax.ShapeDtypeStruct((512,), jnp.bfloat16)}
    assert bytes_per_device(tree, state_shardings(tree, mesh)) == 1024 * 512 * 4 + 512 * 2
    assert bytes_per_device(tree) == 1024 * 512 * 4 + 512 * 2


def test_make_mesh_and_shard_batch_check_their_inputs():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model") and mesh.devices.size == len(jax.devices())
    with pytest.raises(ValueError, match="needs 2 devices"):
        make_mesh(2, 1, devices=jax.devices()[:1])
    batch = shard_batch({"video": np.zeros((2, 1, 4, 4, 3), np.float32)}, mesh)
    assert batch["video"].sharding == batch_sharding(mesh)
    with pytest.raises(ValueError, match="leading .batch. axis"):
        shard_batch({"video": np.zeros((), np.float32)}, mesh)
    with pytest.raises(ValueError, match="model groups"):
        shard_process_batch({"video": np.zeros((), np.float32)}, mesh, split_activations=True)


# ------------------------------------------------------------------ 8 simulated devices, in a subprocess
def _sharded_vs_single():
    """Run in a subprocess with 8 CPU devices: one training step, single-device vs each mesh."""
    import optax

    from ivlib.stage import Stage
    from ivlib.nn.unet import Level, UNetConfig
    from ivlib.sharding import create_sharded_state, process_groups, shard_process_batch, shard_state
    from ivlib.train import create_state, make_train_step

    assert len(jax.devices()) == 8, jax.devices()
    unet = UNetConfig(frames=4, height=8, width=8, text_dim=16, head_dim=8, frame_embedding=True,
                      levels=(Level(16, 1, True, "attention"),))
    stage = Stage("base", "base", unet, fps=3.0)
    tx = optax.adam(1e-2)
    model_defs = []

    def init(key):  # one compiled function instead of ~70 small eager ones
        model_def, state = create_state(unet, tx, key)
        model_defs.append(model_def)
        return state

    state = jax.jit(init)(jax.random.key(0))
    model_def = model_defs[0]
    step_fn = jax.jit(make_train_step(model_def, tx, stage, text_dropout=0.25, ema_decay=0.9))
    k = jax.random.split(jax.random.key(1), 3)
    batch = {"video": np.asarray(jax.random.uniform(k[0], (8, 4, 8, 8, 3), minval=-1, maxval=1)),
             "text": np.asarray(jax.random.normal(k[1], (8, 5, 16))),
             "text_mask": np.arange(5)[None] < np.array([1, 2, 3, 4, 5, 5, 2, 3])[:, None],
             "is_image": np.array([False, True] * 4)}
    key = jax.random.key(2)
    ref_state, ref_metrics = step_fn(state, batch, key)
    host = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]  # compare on the host: no compiles
    max_diff = lambda xs, ys: max(float(np.max(np.abs(x - y))) for x, y in zip(xs, ys))
    ref_params, ref_ema = host(ref_state["params"]), host(ref_state["ema"])
    moved = max_diff(ref_params, host(state["params"]))
    results = {"loss": float(ref_metrics["loss"]), "moved": moved, "meshes": {}, "plain": {}}
    # On every mesh: the rematerialised step with activations split over the model axis (`ivlib.nn.layout`),
    # with the state in its FSDP shards. On the 2x4 mesh also the plain FSDP step (`ivlib train`'s default):
    # each compile is most of this test's time, and the 8x1 and 4x2 plain steps add nothing the others miss.
    from flax import nnx

    from ivlib.nn.model_def import ModelDef
    from ivlib.nn.unet import VideoUNet
    from ivlib.sharding import jit_step

    remat = stage.with_remat("block")
    remat_def, shapes = ModelDef.split(nnx.eval_shape(lambda: VideoUNet(remat.unet, rngs=nnx.Rngs(0))))
    assert jax.tree.structure(shapes) == jax.tree.structure(state["params"])
    train_step = make_train_step(remat_def, tx, remat, text_dropout=0.25, ema_decay=0.9)
    compare = lambda new_state, metrics: {"loss": float(metrics["loss"]),
                                          "param_diff": max_diff(host(new_state["params"]), ref_params),
                                          "ema_diff": max_diff(host(new_state["ema"]), ref_ema)}
    for data, model in MESHES:
        mesh = make_mesh(data, model)
        sharded = shard_state(state, mesh, min_size=256)  # tiny model: shard everything of >= 256 numbers
        specs = [s.spec for s in jax.tree.leaves(jax.tree.map(lambda x: x.sharding, sharded["params"]))]
        shardings = jax.tree.map(lambda x: x.sharding, sharded)
        step = jit_step(train_step, mesh, shardings, donate=False, split_activations=True)
        split_batch = shard_batch(batch, mesh, split_activations=True)
        text = step.lower(sharded, split_batch, key).as_text()
        # constraints jax itself emits (some versions place one on the batch) are not the blocks'
        plain_text = jit_step(train_step, mesh, shardings, donate=False).lower(
            sharded, shard_batch(batch, mesh), key).as_text()
        new_state, metrics = step(sharded, split_batch, key)
        params = jax.tree.leaves(new_state["params"])  # bytes are measured on what the step returns
        results["meshes"][f"{data}x{model}"] = {
            **compare(new_state, metrics),
            "constraints": text.count("sharding_constraint") - plain_text.count("sharding_constraint"),
            "sharded_leaves": sum("model" in spec for spec in specs),
            "leaves": len(specs),
            "devices_per_leaf": max(len(x.sharding.device_set) for x in params),
            "param_bytes_per_device": bytes_per_device(new_state["params"]),
            "state_bytes_arithmetic": sharded_bytes(state, model, min_size=256),
            "state_bytes_placed": bytes_per_device(new_state),
            "param_bytes": bytes_per_device(state["params"]),
        }
        if (data, model) == (2, 4):
            results["plain"][f"{data}x{model}"] = compare(*step_fn(sharded, shard_batch(batch, mesh), key))
    # the state created directly in its shards, and the batch assembled from per-process slices
    mesh = make_mesh(2, 4)
    _, born_sharded = create_sharded_state(unet, tx, jax.random.key(0), mesh, min_size=256)
    results["born_sharded_diff"] = max_diff(host(born_sharded), host(state))
    results["born_sharded_specs_match"] = all(
        a.sharding.spec == b.sharding.spec for a, b in
        zip(jax.tree.leaves(born_sharded), jax.tree.leaves(shard_state(state, mesh, min_size=256))))
    local = shard_process_batch(batch, mesh)
    results["process_batch_equal"] = all(
        np.array_equal(np.asarray(local[k]), batch[k]) and local[k].sharding == batch_sharding(mesh) for k in batch)
    split = shard_process_batch(batch, mesh, split_activations=True)  # one process: every model group is its own
    results["process_groups"] = process_groups(mesh)
    results["process_batch_split_equal"] = all(
        np.array_equal(np.asarray(split[k]), batch[k]) and split[k].sharding == batch_sharding(mesh, True)
        for k in batch)
    return results


@pytest.fixture(scope="module")
def sharded_results():
    # Fewer LLVM optimisations: compiling is most of this test's time, and both sides use the same flags.
    flags = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
             "--xla_llvm_disable_expensive_passes=true")
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every program here compiles once: caching would only add writes
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_step_equals_single_device_step(sharded_results):
    assert sharded_results["moved"] > 1e-3  # the step really changes the parameters
    assert set(sharded_results["plain"]) == {"2x4"}
    for name, r in sharded_results["plain"].items():  # FSDP only, as `ivlib train` runs by default
        np.testing.assert_allclose(r["loss"], sharded_results["loss"], rtol=1e-5, err_msg=name)
        assert r["param_diff"] < 1e-5, (name, r["param_diff"])
        assert r["ema_diff"] < 1e-5, (name, r["ema_diff"])


def test_split_activations_with_remat_equal_the_single_device_step(sharded_results):
    meshes = sharded_results["meshes"]
    assert set(meshes) == {f"{d}x{m}" for d, m in MESHES}
    for name, r in meshes.items():
        np.testing.assert_allclose(r["loss"], sharded_results["loss"], rtol=1e-5, err_msg=name)
        assert r["param_diff"] < 1e-5, (name, r["param_diff"])
        assert r["ema_diff"] < 1e-5, (name, r["ema_diff"])
    assert meshes["8x1"]["constraints"] == 0  # no model axis: nothing to split
    for name in ("4x2", "2x4"):  # frames and rows of every block laid out over the model axis
        assert meshes[name]["constraints"] >= 2, meshes[name]


def test_parameters_are_really_split_over_the_model_axis(sharded_results):
    meshes = sharded_results["meshes"]
    assert meshes["8x1"]["sharded_leaves"] == 0
    assert meshes["8x1"]["param_bytes_per_device"] == meshes["8x1"]["param_bytes"]
    for name, model in (("4x2", 2), ("2x4", 4)):
        r = meshes[name]
        assert r["sharded_leaves"] >= r["leaves"] // 4, r
        assert r["param_bytes_per_device"] < 0.7 * r["param_bytes"], r
        assert r["devices_per_leaf"] == 8  # the updated parameters still live on the whole mesh
    for name, r in meshes.items():  # the arithmetic of the memory plan = the bytes really placed
        assert r["state_bytes_arithmetic"] == r["state_bytes_placed"], name


def test_state_created_in_its_shards_and_process_local_batches(sharded_results):
    assert sharded_results["born_sharded_diff"] < 1e-6
    assert sharded_results["born_sharded_specs_match"]
    assert sharded_results["process_batch_equal"]
    assert sharded_results["process_groups"] == [0, 1]  # one process holds both groups of the 2x4 mesh
    assert sharded_results["process_batch_split_equal"]


if __name__ == "__main__":
    print(json.dumps(_sharded_vs_single()))
