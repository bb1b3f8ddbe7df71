"""CPU speed of the toy base Video U-Net (chapter 03): forward pass and one Adam training step.

    python benchmarks/unet.py [--size toy|small|large|all] [--devices N] [--reps 5]
                              [--convolutions ynnpack,xla] [--write]

Prints one JSON line: this machine's float32 2048x2048 matmul rate (the "peak" we compare with), and
per model size the parameter count, forward and training-step seconds, the FLOPs of one step from
XLA's cost analysis and the share of the matmul peak the step reaches. `--write` also saves it, with the
CPU's model name and the command, to benchmarks/results/unet.json (chapter 03 reads it).

Convolution libraries: XLA:CPU (jax 0.10) hands convolutions to YNNPACK by default ("ynnpack"); the compiler
option `xla_cpu_experimental_ynn_fusion_type=""` keeps them in XLA's own (Eigen) kernels ("xla"). Which is
faster depends on the shapes and the host, so `--convolutions ynnpack,xla` compiles the step once per
library and times the programs in turn, step by step, so both see the same load; figures are per library.

Sizes: the toy base stage (0.75M parameters, 8 frames of 16x16, batch 16) and, matched to a popular
PyTorch video U-Net's measurements we compare with (our choice), small ~1.1M parameters on 8 frames
of 16x16, batch 16, and large ~11M parameters on 16 frames of 32x32, batch 8.
`--devices N` splits the host into N XLA CPU devices and shards the batch over them (data parallel).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("toy", "small", "large", "all"), default="all")
    parser.add_argument("--devices", type=int, default=1, help="XLA CPU devices to split the host into")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median is reported)")
    parser.add_argument("--convolutions", type=libraries, default=("ynnpack",),
                        help="comma-separated convolution libraries to time in turn: ynnpack (XLA:CPU's default), xla")
    parser.add_argument("--write", action="store_true", help="save the result to benchmarks/results/unet.json")
    return parser.parse_args()


# The XLA:CPU compiler options of each convolution library (`jax.jit(..., compiler_options=...)`).
CONVOLUTIONS = {"ynnpack": {}, "xla": {"xla_cpu_experimental_ynn_fusion_type": ""}}


def libraries(text: str) -> tuple:
    """Parse --convolutions: names from CONVOLUTIONS, comma-separated, each once."""
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in CONVOLUTIONS]
    if unknown or len(set(names)) != len(names) or not names:
        raise argparse.ArgumentTypeError(f"expected distinct names from {sorted(CONVOLUTIONS)}, comma-separated; "
                                         f"got {text!r}")
    return names


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.devices > 1:  # must happen before jax starts its CPU backend
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from ivlib.nn import Level, UNetConfig, VideoUNet, count_params  # noqa: E402

TEXT_DIM, TOKENS = 64, 32  # the toy T5 encoder's width and caption length (ivlib.configs.toy)


def sizes() -> dict:
    """name -> (UNetConfig, batch). "toy" is the toy cascade's base stage itself; "small" and "large"
    scale its recipe (temporal attention everywhere, spatial attention and text cross-attention below
    full resolution) to about 1.1M and 11M parameters, the sizes of the PyTorch measurements we compare with."""
    from ivlib.configs.toy import BASE

    return {
        "toy": (BASE.unet, 16),
        "small": (UNetConfig(frames=8, height=16, width=16, text_dim=TEXT_DIM, head_dim=16, levels=(
            Level(32, 1, False, "attention"), Level(64, 1, True, "attention"), Level(64, 1, True, "attention"))), 16),
        "large": (UNetConfig(frames=16, height=32, width=32, text_dim=TEXT_DIM, emb_dim=128, levels=(
            Level(64, 2, False, "attention"), Level(128, 2, True, "attention"), Level(192, 2, True, "attention"))), 8),
    }


def timed(fn, *args, reps):
    """Median wall-clock and process-CPU seconds of fn(*args) after two warm-up calls.

    CPU seconds (all threads) are reported too: on a shared machine they are less sensitive to
    other processes than wall-clock time.
    """
    return alternating({fn: lambda: fn(*args)}, reps)[fn]


def flops_of(compiled, devices: int) -> float:
    """FLOPs of a compiled program from XLA's cost analysis (per device there, so times devices)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return devices * float(cost.get("flops", float("nan")))


def matmul_peak(reps: int) -> float:
    """float32 GFLOP/s of a 2048x2048 @ 2048x2048 matmul on the default device."""
    n = 2048
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    return 2 * n**3 / timed(f, a, a, reps=max(reps, 5))[0] / 1e9


def setup(config: UNetConfig, batch: int, devices: int, compiler_options: dict | None = None) -> dict:
    """The jitted forward pass and Adam training step of VideoUNet(config) on a random batch split over
    `devices` (data parallel), with their inputs: {"forward", "step", "params", "opt_state", "inputs", "key"}.
    `step(params, opt_state, *inputs, key)` donates its state; `benchmarks/profile_step.py` profiles it.
    `compiler_options` go to both jits (CONVOLUTIONS)."""
    model = nnx.jit(lambda: VideoUNet(config, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))()
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-4)
    opt_state = tx.init(params)

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, config.frames, config.height, config.width, config.channels))
    text = rng.standard_normal((batch, TOKENS, TEXT_DIM))
    mask = np.arange(TOKENS)[None, :] < rng.integers(1, TOKENS + 1, (batch, 1))
    mesh = Mesh(np.array(jax.devices()[:devices]), ("data",))
    shard = lambda a: jax.device_put(jnp.asarray(a), NamedSharding(mesh, P("data")))
    x, text, mask = shard(x.astype(np.float32)), shard(text.astype(np.float32)), shard(mask)

    def loss_fn(params, x, text, mask, key):
        """v-prediction MSE at a uniform t of the cosine schedule (chapters 01-02), written inline."""
        k1, k2 = jax.random.split(key)
        t = jax.random.uniform(k1, (x.shape[0],))
        logsnr = -2.0 * jnp.log(jnp.tan(jnp.pi * jnp.clip(t, 1e-4, 1 - 1e-4) / 2))
        alpha = jnp.sqrt(jax.nn.sigmoid(logsnr))[:, None, None, None, None]
        sigma = jnp.sqrt(jax.nn.sigmoid(-logsnr))[:, None, None, None, None]
        eps = jax.random.normal(k2, x.shape)
        v_pred = nnx.merge(graphdef, params)(alpha * x + sigma * eps, logsnr, text, mask)
        return jnp.mean((v_pred - (alpha * eps - sigma * x)) ** 2)

    def step(params, opt_state, x, text, mask, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, text, mask, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    options = compiler_options or None
    forward = jax.jit(lambda params, x, text, mask: nnx.merge(graphdef, params)(x, 0.0, text, mask),
                      compiler_options=options)
    return {"forward": forward, "step": jax.jit(step, donate_argnums=(0, 1), compiler_options=options), "params": params,
            "opt_state": opt_state, "inputs": (x, text, mask), "key": jax.random.key(1)}


def benchmark(config: UNetConfig, batch: int, reps: int, devices: int, peak: float, convolutions=("ynnpack",)) -> dict:
    """Forward and Adam-step timings of VideoUNet(config) on a random batch, per convolution library.

    With several libraries each program is compiled once and the timed calls alternate between them
    (library A, library B, A, B, ...), so that a change in the machine's load falls on all of them alike.
    """
    forward, step, flops = {}, {}, {}
    for name in convolutions:
        forward[name], step[name], flops[name] = compiled_calls(setup(config, batch, devices, CONVOLUTIONS[name]),
                                                                devices)
    forward, step = alternating(forward, reps), alternating(step, reps)
    result = {"params": count_params(config), "batch": batch, "frames": config.frames,
              "height": config.height, "width": config.width}
    for name in convolutions:
        (forward_s, _), (step_s, step_cpu_s) = forward[name], step[name]
        forward_flops, step_flops = flops[name]
        result[name] = {
            "forward_s": round(forward_s, 4), "forward_gflop": round(forward_flops / 1e9, 2),
            "forward_gflops": round(forward_flops / forward_s / 1e9, 1),
            "step_s": round(step_s, 4), "step_cpu_s": round(step_cpu_s, 4), "step_gflop": round(step_flops / 1e9, 2),
            "step_gflops": round(step_flops / step_s / 1e9, 1),
            "step_share_of_matmul_peak": round(step_flops / step_s / 1e9 / peak, 3),
        }
    return result


def compiled_calls(run: dict, devices: int) -> tuple:
    """(forward(), train_step(), (forward FLOPs, step FLOPs)) of a `setup` run. Each program is compiled once,
    its FLOPs read from it and the compiled program itself timed; train_step carries the donated state on."""
    x, text, mask, key = *run["inputs"], run["key"]
    forward = run["forward"].lower(run["params"], x, text, mask).compile()
    step = run["step"].lower(run["params"], run["opt_state"], x, text, mask, key).compile()
    state = [run["params"], run["opt_state"]]

    def train_step():
        state[0], state[1], loss = step(state[0], state[1], x, text, mask, key)
        return loss

    return (lambda: forward(state[0], x, text, mask)), train_step, (flops_of(forward, devices), flops_of(step, devices))


def alternating(fns: dict, reps: int) -> dict:
    """name -> (median wall s, median process-CPU s) of each zero-argument fn, after two warm-up calls each,
    the timed calls taken in turn across the fns."""
    for fn in fns.values():
        for _ in range(2):
            jax.block_until_ready(fn())
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def unsupported(name: str) -> str | None:
    """Why this jaxlib cannot compile with convolution library `name`'s options (None if it can): a jaxlib
    without YNNPACK (jax before 0.10, e.g. 0.7) rejects the option that turns it off."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=CONVOLUTIONS[name] or None).lower(1.0).compile()
    except Exception as error:  # XlaRuntimeError: "No such compile option"
        return f"jax {jax.__version__} cannot compile with {CONVOLUTIONS[name]} ({error})"
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(args) -> None:
    devices = min(args.devices, len(jax.devices()))
    for name in args.convolutions:
        if why := unsupported(name):
            sys.exit(f"--convolutions {name}: {why}; its convolutions are XLA's own already, use --convolutions ynnpack")
    peak = matmul_peak(args.reps)
    result = {"benchmark": "ivlib.nn.VideoUNet on CPU", "jax": jax.__version__, "cpu": cpu_model(),
              "cpus": os.cpu_count(), "xla_devices": devices, "xla_flags": os.environ.get("XLA_FLAGS", ""),
              "convolutions": {name: CONVOLUTIONS[name] for name in args.convolutions},
              "load_average": round(os.getloadavg()[0], 2), "matmul_2048_gflops": round(peak, 1)}
    for size in (("toy", "small", "large") if args.size == "all" else (args.size,)):
        config, batch = sizes()[size]
        if batch % devices:
            sys.exit(f"--devices={devices} must divide the batch ({batch})")
        result[size] = benchmark(config, batch, args.reps, devices, peak, args.convolutions)
    result["command"] = "python benchmarks/unet.py " + " ".join(sys.argv[1:])
    print(json.dumps(result))
    if args.write:
        out = pathlib.Path(__file__).resolve().parent / "results" / "unet.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(ARGS)
