"""Training throughput of the toy base stage on 1 and on N simulated CPU devices, beside the data pipeline's.

    python benchmarks/train.py [--devices 1 2 8] [--steps 5] [--batch-size 32]

Each device count runs in its own process (XLA reads --xla_force_host_platform_device_count once, at
import). Prints one JSON line per device count — steps/s and videos/s of the jit-compiled, data-parallel
step of `ivlib.train` after warm-up, compile time separate — and one for the data pipeline (toy video
rendering + cached text embeddings, what `ivlib.trainer.BatchSource` does per step). Beside the speed: CPU
seconds per step, the share of them spent in the kernel, and minor page faults per step (`getrusage`). On a
2-core CPU with 2 simulated devices about a quarter of the CPU time is the kernel's, zeroing the pages of the
buffers XLA maps and unmaps every step (about 400 thousand 4 KiB faults per step at batch 32); glibc's
malloc tunables that keep them mapped (one arena, no mmap) cut the faults 27-fold but made the step slower.
"""

import argparse
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax, numpy as np
from ivlib.configs import get_stage
from ivlib.sharding import make_mesh, replicated, shard_batch
from ivlib.train import create_state, default_optimizer, make_train_step
from ivlib.trainer import BatchSource, TrainConfig
steps, batch_size = int(sys.argv[1]), int(sys.argv[2])
stage = get_stage("toy", "base")
source = BatchSource(stage, TrainConfig(workdir="/tmp", batch_size=batch_size, dataset_options={"max_objects": 1}))
t = time.perf_counter(); batches = [source(i) for i in range(steps + 1)]; data_s = (time.perf_counter() - t) / (steps + 1)
mesh = make_mesh()
tx = default_optimizer()
model_def, state = create_state(stage.unet, tx, jax.random.PRNGKey(0))
state = jax.device_put(state, replicated(mesh))
step = jax.jit(make_train_step(model_def, tx, stage), donate_argnums=0)
t = time.perf_counter()
state, m = step(state, shard_batch(batches[0], mesh), jax.random.PRNGKey(0)); jax.block_until_ready(m)
compile_s = time.perf_counter() - t
t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
for i in range(1, steps + 1):
    state, m = step(state, shard_batch(batches[i], mesh), jax.random.PRNGKey(i))
jax.block_until_ready(m)
step_s, after = (time.perf_counter() - t) / steps, resource.getrusage(resource.RUSAGE_SELF)
user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
print(json.dumps({"benchmark": "train_step", "stage": "toy/base", "devices": len(jax.devices()), "batch_size": batch_size,
                  "steps_per_s": 1 / step_s, "videos_per_s": batch_size / step_s, "compile_s": compile_s,
                  "cpu_s_per_step": (user + system) / steps, "system_share": system / (user + system),
                  "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
                  "data_videos_per_s": batch_size / data_s}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    for n in args.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.steps), str(args.batch_size)], env=env,
                             capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
