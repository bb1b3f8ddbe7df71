"""A short check of one accelerator (chapter 10): a training step of the `colab` base and one forward pass of a
paper stage, at 1 example, on whatever device JAX sees.

    python benchmarks/accelerator.py                       # colab base train step, paper base forward
    python benchmarks/accelerator.py --forward-stage tsr1 --remat block
    python benchmarks/accelerator.py --train-config toy --forward-config colab   # a CPU-sized rehearsal

For each of the two programs it prints, and writes to --out as JSON: compile seconds, the median seconds of
--reps timed runs after compilation, the FLOPs of one run from XLA's cost analysis and the rate they are done
at, XLA's planned bytes (`compiled.memory_analysis()`), and the device's peak bytes in use where the backend
reports them (GPUs and TPUs do; the CPU does not). Inputs are random: this measures speed and memory, not
quality. Parameters are created on the device by one compiled initialiser, in float32, with the stage's own
compute dtype (bfloat16 for colab and paper). Meant to finish in under five minutes on one GPU or TPU chip;
`make test` never runs it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "results" / "accelerator.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-config", default="colab")
    parser.add_argument("--train-stage", default="base")
    parser.add_argument("--forward-config", default="paper")
    parser.add_argument("--forward-stage", default="base")
    parser.add_argument("--remat", default="none", choices=("none", "block", "dots"),
                        help="rematerialisation of each space-time block (UNetConfig.remat) in both programs")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_args(argv)


def _stage(config, name, remat):
    import dataclasses

    from ivlib.configs import get_stage

    stage = get_stage(config, name)
    return dataclasses.replace(stage, unet=dataclasses.replace(stage.unet, remat=remat))


def _inputs(stage, text_length, seed=0):
    """One random example of `stage`: the training batch dict (video, text, mask, is_image, cond)."""
    import numpy as np

    u = stage.unet
    rng = np.random.default_rng(seed)
    batch = {"video": rng.uniform(-1, 1, (1, u.frames, u.height, u.width, u.channels)).astype(np.float32),
             "is_image": np.zeros((1,), bool)}
    if u.text_dim:
        batch["text"] = rng.normal(size=(1, text_length, u.text_dim)).astype(np.float32)
        batch["text_mask"] = np.ones((1, text_length), bool)
    if stage.kind != "base":
        batch["cond"] = rng.uniform(-1, 1, (1, stage.in_frames, stage.in_height, stage.in_width,
                                            u.channels)).astype(np.float32)
    return batch


def _measure(compiled, run, reps):
    """(compile facts, median seconds per run) of a compiled function; `run()` calls it and blocks."""
    import jax

    from ivlib.memory import memory_stats

    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    run()  # warm up (allocations, autotuning)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    flops = float((cost or {}).get("flops", float("nan")))
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return {"seconds": seconds, "per_s": 1 / seconds, "flops": flops, "tflop_per_s": flops / seconds / 1e12,
            "xla_memory": memory_stats(compiled),
            "peak_bytes_in_use": (stats or {}).get("peak_bytes_in_use")}


def train_step(config, name, remat, reps):
    import jax

    from ivlib.configs import text_settings
    from ivlib.train import default_optimizer, make_train_step, state_initializer

    stage = _stage(config, name, remat)
    tx = default_optimizer()
    init, model_defs = state_initializer(stage.unet, tx)
    state = jax.jit(init)(jax.random.key(0))
    step = jax.jit(make_train_step(model_defs[0], tx, stage), donate_argnums=0)
    batch = jax.device_put(_inputs(stage, text_settings(config)[1]))
    key = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    box = [state]

    def run():
        box[0], metrics = compiled(box[0], batch, key)
        jax.block_until_ready(metrics)

    params = sum(x.size for x in jax.tree.leaves(state["params"]))
    return {"program": "train step", "config": config, "stage": name, "remat": remat, "params": int(params),
            "compile_s": compile_s, **_measure(compiled, run, reps)}


def forward(config, name, remat, reps):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ivlib.configs import text_settings
    from ivlib.nn.model_def import ModelDef
    from ivlib.nn.unet import VideoUNet
    from ivlib.conditioning import condition_video

    stage = _stage(config, name, remat)
    defs = []

    def init(key):
        model_def, params = ModelDef.split(VideoUNet(stage.unet, rngs=nnx.Rngs(key)))
        defs.append(model_def)
        return params

    params = jax.jit(init)(jax.random.key(0))
    model_def = defs[0]
    batch = _inputs(stage, text_settings(config)[1])

    def apply(params, batch):
        extra = {}
        if stage.kind != "base":
            extra = {"cond": condition_video(stage, batch["cond"]), "cond_logsnr": jnp.zeros((1,))}
        return model_def.bind(params)(batch["video"], jnp.zeros((1,)), batch.get("text"), batch.get("text_mask"),
                                      **extra)

    batch = jax.device_put(batch)
    start = time.perf_counter()
    compiled = jax.jit(apply).lower(params, batch).compile()
    compile_s = time.perf_counter() - start
    run = lambda: jax.block_until_ready(compiled(params, batch))
    return {"program": "forward", "config": config, "stage": name, "remat": remat,
            "params": int(sum(x.size for x in jax.tree.leaves(params))), "compile_s": compile_s,
            **_measure(compiled, run, reps)}


def main(argv=None):
    args = parse_args(argv)
    import jax

    device = jax.devices()[0]
    report = {"command": "python benchmarks/accelerator.py " + " ".join(argv if argv is not None else
                                                                         __import__("sys").argv[1:]),
              "jax": jax.__version__, "backend": jax.default_backend(), "device": device.device_kind,
              "devices": jax.device_count(), "host": platform.node() and platform.machine(),
              "date": time.strftime("%Y-%m-%d"), "results": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for what, (config, name) in (("train", (args.train_config, args.train_stage)),
                                 ("forward", (args.forward_config, args.forward_stage))):
        start = time.perf_counter()
        try:
            result = (train_step if what == "train" else forward)(config, name, args.remat, args.reps)
        except Exception as err:  # out of memory on a small device is a result too
            result = {"program": what, "config": config, "stage": name, "error": f"{type(err).__name__}: {err}"[:500]}
        result["wall_s"] = time.perf_counter() - start
        report["results"].append(result)
        out.write_text(json.dumps(report, indent=1) + "\n")
        peak = result.get("peak_bytes_in_use")
        planned = (result.get("xla_memory") or {}).get("total")
        print(f"{result['program']:10s} {config}/{name}: " + (result["error"] if "error" in result else
              f"compile {result['compile_s']:.1f} s, {result['seconds'] * 1e3:.1f} ms per run, "
              f"{result['tflop_per_s']:.2f} TFLOP/s, XLA plan {planned / 1e9 if planned else float('nan'):.2f} GB, "
              f"peak in use {peak / 1e9 if peak else float('nan'):.2f} GB"), flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
