"""Compile time and per-device memory of the sharded training step, for the toy, Colab and paper cascades
(chapter 10).

Every stage's training step (`ivlib.train.make_train_step`, Adam, EMA, state donated) is lowered and
compiled for ("data", "model") meshes on abstract inputs — nothing is allocated, so the 5.6B base is
planned on a laptop — and XLA's memory analysis per device is written as JSON:

    python benchmarks/scale.py --fast-compile           # what chapter 10 reads (benchmarks/results/scale.json)
    python benchmarks/scale.py --configs paper --stages base --jobs 8x1,1x1 --out /tmp/base.json
    python benchmarks/scale.py --fast-compile --configs paper --remat block --append   # the same, rematerialised

A job "MxB" is a model-axis size M (data = devices / M) and B examples per device. By default toy and
colab stages run 1x1, 8x1 and 8x2 (temporaries at two batch sizes separate activations, which grow
with the batch, from parameter-sized buffers, which do not; two model sizes show what sharding changes);
paper stages run 8x1 only, since each compiles for 5 to 20 minutes on a 2-core CPU.

The simulated devices are CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count, set here
before jax is imported). The CPU compiler's memory plan is an estimate of a TPU's: it fuses differently
and never rematerialises. Its default instruction scheduler runs independent operations side by side for
the CPU's threads, and so gathers every layer's weights long before they are used; `--scheduler memory`
(the default here) makes it minimise live bytes instead, as TPU and GPU compilers plan a step under a memory
limit (chapter 10). Results are saved after every compile, so an interrupted run keeps what it had.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "results" / "scale.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="toy,colab,paper", help="comma-separated config names")
    parser.add_argument("--stages", default="", help="comma-separated stage names (default: every stage)")
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (mesh size)")
    parser.add_argument("--jobs", default="", help="comma-separated MxB: model-axis size x examples per device "
                        "(default: 1x1,8x1,8x2 for toy and colab, 8x1 for paper)")
    parser.add_argument("--text-length", type=int, default=0, help="tokens per prompt (default: the config's)")
    parser.add_argument("--fast-compile", action="store_true",
                        help="fewer LLVM optimisations (compiles faster; the memory plan is XLA's, not LLVM's)")
    parser.add_argument("--remat", default="none", choices=("none", "block", "dots"),
                        help="rematerialise each space-time block (UNetConfig.remat); results record it")
    parser.add_argument("--split-activations", action="store_true",
                        help="examples shared by a model group, activations split over it (ivlib.nn.layout); "
                             "B of a job is then examples per model group")
    parser.add_argument("--scheduler", default="memory", choices=("memory", "concurrency"),
                        help="the CPU compiler's instruction scheduler: 'memory' minimises live bytes, as TPU and "
                             "GPU compilers plan a step; 'concurrency' (XLA:CPU's default) runs independent ops "
                             "side by side and keeps far more alive (results record it)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--append", action="store_true",
                        help="keep the results already in --out for stages this run does not compile")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    flags = f"--xla_force_host_platform_device_count={args.devices}"
    if args.fast_compile:
        flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    if args.scheduler == "memory":
        flags += " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    if "jax" in sys.modules:
        raise RuntimeError("benchmarks/scale.py must set XLA_FLAGS before jax is imported")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax

    from ivlib import configs
    from ivlib.memory import plan_memory
    from ivlib.sharding import make_mesh

    modules = {"toy": configs.toy, "colab": configs.colab}
    default_jobs = {"toy": "1x1,8x1,8x2", "colab": "1x1,8x1,8x2"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "commands": [command],  # every command whose results are in this file (see --append)
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "xla_flags": os.environ["XLA_FLAGS"],
        "date": time.strftime("%Y-%m-%d"),
        "note": "per-device bytes from compiled.memory_analysis() on simulated CPU devices; "
                "optimizer: ivlib.train.default_optimizer (Adam); state donated",
        "results": [],
    }
    if args.append and out.exists():
        previous = json.loads(out.read_text())
        report["commands"] = previous.get("commands", [previous.get("command")]) + [command]
        report["results"] = previous["results"]
    wanted = {s for s in args.stages.split(",") if s}
    for config in args.configs.split(","):
        module = modules.get(config, configs.paper)
        text_length = args.text_length or module.TEXT_LENGTH
        jobs = [tuple(int(n) for n in job.split("x")) for job in
                (args.jobs or default_jobs.get(config, "8x1")).split(",")]
        for stage in configs.get_cascade(config):
            if wanted and stage.name not in wanted:
                continue
            stage = stage.with_remat(args.remat)
            key = lambda r: (r["config"], r["stage"], r.get("remat", "none"), r.get("split_activations", False),
                             r.get("scheduler", "concurrency"))
            report["results"] = [r for r in report["results"]
                                 if key(r) != (config, stage.name, args.remat, args.split_activations, args.scheduler)]
            for model, batch_per_device in jobs:
                mesh = make_mesh(args.devices // model, model)
                start = time.perf_counter()
                try:
                    plan = plan_memory(stage, mesh, batch_per_device, text_length=text_length,
                                       split_activations=args.split_activations)
                except Exception as err:  # keep going: one stage that cannot compile is a result too
                    plan = {"stage": stage.name, "mesh": dict(mesh.shape), "batch_per_device": batch_per_device,
                            "error": f"{type(err).__name__}: {err}"}
                plan.update(config=config, wall_s=time.perf_counter() - start, text_length=text_length, remat=args.remat,
                            scheduler=args.scheduler)
                report["results"].append(plan)
                out.write_text(json.dumps(report, indent=1) + "\n")
                mem = plan.get("compiled") or {}
                nan = float("nan")
                print(f"{config:6s} {stage.name:5s} mesh {mesh.shape['data']}x{model} batch/device {batch_per_device}: "
                      f"compile {plan.get('compile_s', nan):7.1f} s, total {mem.get('total', nan) / 1e9:8.2f} GB/device "
                      f"(state {plan.get('state', {}).get('total', nan) / 1e9:.2f} GB, "
                      f"temp {mem.get('temp', nan) / 1e9:.2f} GB)", flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
