"""Where the time of one Video U-Net training step goes on this CPU, by kind of work (chapter 03; issue: speed).

    python benchmarks/profile_step.py [--size toy|small|large] [--devices N] [--reps 3] [--convolutions ynnpack|xla]

Profiles the step of `benchmarks/unet.py` (same model, batch and Adam update) with `jax.profiler`: XLA:CPU
runs one "thunk" per top-level HLO instruction and the profiler times each. Every instruction is put in
one category from the compiled HLO:

  conv forward / conv input-grad / conv weight-grad   3x3 and 1x1 convolutions (nnx.Conv); a convolution
                      whose window is larger than 3x3 is a weight gradient (its window is the image)
  attention fwd/bwd   scores, softmax and the weighted sum (`ivlib.nn.attention.attend`)
  dense fwd/bwd       matmuls of nnx.Linear: q/k/v/out projections, FiLM, the temporal conv's matmul
  norm fwd/bwd        GroupNorm (nnx.GroupNorm)
  layout              transposes and copies, wherever they sit
  optimizer           Adam's update (outside the gradient)
  other fwd/bwd       the rest: SiLU, residual adds, reshapes, the loss

Scopes are set by wrapping those layers' calls in `jax.named_scope` for this script only (the library's
modules are unchanged; a named scope costs nothing at run time, it only labels the HLO). For convolutions
and matmuls the FLOPs of each instruction are read from its shapes, so each category also gets its
GFLOP/s, beside this machine's float32 2048^2 matmul rate: which kinds of work run below what the CPU
can do. Thunks may overlap on several threads, so shares are of the summed thunk time, which the
script prints beside the step's wall-clock time. Writes benchmarks/results/profile_<size>.json.

With `--convolutions xla` (XLA's own convolution kernels, `benchmarks/unet.py --convolutions xla`) the
profiler cannot time the convolutions: their thunks hand the work to Eigen's thread pool and return before
it is done. So each convolution of the step is timed on its own instead, compiled with the same options:
every distinct nn.Conv call (its weights and input shape) forward, input gradient and weight gradient,
times the number of such calls (the first convolution's input gradient, which the step never computes, is
counted too: it has 3 input channels). The other categories keep their thunk times; "unattributed" is what
is left of the step's wall-clock time: the thunks' gaps, and convolutions running slower inside the step
than alone. Writes benchmarks/results/profile_<size>_xla.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import glob
import gzip
import json
import math
import os
import pathlib
import re
import sys
import tempfile


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("toy", "small", "large"), default="toy")
    parser.add_argument("--devices", type=int, default=1, help="XLA CPU devices to split the host into")
    parser.add_argument("--reps", type=int, default=3, help="profiled training steps (after two warm-up steps)")
    parser.add_argument("--convolutions", choices=("ynnpack", "xla"), default="ynnpack",
                        help="the convolution library (benchmarks/unet.py's CONVOLUTIONS); with xla, convolutions are "
                             "timed one by one in isolation (see the module's docstring)")
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.devices > 1:  # before jax starts its CPU backend
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import unet as unet_bench  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCOPES = ("conv", "attention", "dense", "norm")  # innermost wins: attention's projections are "dense"
CONV_SETTINGS = ("in_features", "out_features", "kernel_size", "strides", "padding", "feature_group_count", "use_bias")


@contextlib.contextmanager
def scoped_layers(conv_calls: list | None = None):
    """Label the HLO of the U-Net's layers with named scopes (SCOPES) while tracing; undone on exit.
    conv_calls: if a list, each nnx.Conv call traced appends (its CONV_SETTINGS, input shape) to it."""
    from flax import nnx

    import ivlib.nn.attention as attention_module

    patched = [(nnx.Conv, "__call__", "conv"), (nnx.Linear, "__call__", "dense"), (nnx.GroupNorm, "__call__", "norm"),
               (attention_module, "attend", "attention")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def wrap(fn, scope):
        @functools.wraps(fn)
        def scoped(*args, **kwargs):
            if scope == "conv" and conv_calls is not None:  # its settings, not the module: its weights are tracers
                conv = args[0]
                settings = {name: getattr(conv, name) for name in CONV_SETTINGS}
                conv_calls.append((tuple(settings.items()), tuple(args[1].shape)))
            with jax.named_scope(scope):
                return fn(*args, **kwargs)
        return scoped

    try:
        for owner, name, scope in patched:
            setattr(owner, name, wrap(getattr(owner, name), scope))
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


# --- the compiled HLO: instructions, their shapes, the computations they call ---------------------------------

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\((.*?)\)(.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")  # unindented; instructions are indented


def _dims(shape: str) -> list[int]:
    """[2, 3] of 'f32[2,3]{1,0}'; [] of a scalar or a tuple."""
    match = re.match(r"^[a-z0-9]+\[([\d,]*)\]", shape)
    return [int(d) for d in match.group(1).split(",") if d] if match else []


def parse_hlo(text: str) -> dict:
    """{computation: [instruction dicts]} of an HLO module's text; each instruction has its name, shape, opcode,
    operand names, attributes (the rest of the line) and op_name metadata."""
    computations, current = {}, None
    for line in text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = computations.setdefault(header.group(1), [])
            continue
        match = _INSTRUCTION.match(line)
        if match and current is not None:
            name, shape, opcode, operands, rest = match.groups()
            op_name = re.search(r'op_name="([^"]*)"', rest)
            current.append({"name": name, "shape": shape, "opcode": opcode, "rest": rest,
                            "operands": re.findall(r"%([\w.\-]+)", operands),
                            "op_name": op_name.group(1) if op_name else ""})
    return computations


def _window(instruction: dict) -> list[int]:
    """[3, 3] of a convolution with window={size=3x3 ...}; [] if it has none."""
    match = re.search(r"window=\{size=([\dx]+)", instruction["rest"])
    return [int(s) for s in match.group(1).split("x")] if match else []


def _flops(instruction: dict, shapes: dict) -> float:
    """FLOPs of a convolution or dot from its shapes (multiply-adds count 2); 0 for anything else."""
    out = math.prod(_dims(instruction["shape"]))
    if instruction["opcode"] == "dot":
        lhs = _dims(shapes.get(instruction["operands"][0], ""))
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", instruction["rest"])
        size = math.prod(lhs[int(d)] for d in contracting.group(1).split(",") if d) if contracting and lhs else 0
        return 2.0 * out * size
    if instruction["opcode"] == "convolution":
        window = _window(instruction)
        labels = re.search(r"dim_labels=\w+_(\w+)->", instruction["rest"])
        rhs = _dims(shapes.get(instruction["operands"][1], ""))
        groups = re.search(r"feature_group_count=(\d+)", instruction["rest"])
        if not (window and labels and rhs):
            return 0.0
        in_features = rhs[labels.group(1).index("i")]
        taps = math.prod(window)
        return 2.0 * out * taps * in_features / (int(groups.group(1)) if groups else 1)
    return 0.0


def _direction(op_name: str) -> str:
    if "transpose(" in op_name:
        return "bwd"
    return "fwd" if "jvp(" in op_name else "optimizer"


def _scope(op_name: str) -> str | None:
    found = re.findall(r"\b(" + "|".join(SCOPES) + r")\b", op_name)
    return found[-1] if found else None


def categorize(computations: dict) -> dict:
    """{top-level instruction name: (category, FLOPs)} for every instruction that can run as a thunk."""
    shapes = {i["name"]: i["shape"] for body in computations.values() for i in body}
    called = {}
    for body in computations.values():
        for i in body:
            for callee in re.findall(r"calls=%([\w.\-]+)", i["rest"]):
                called[callee] = i["opcode"]
    result = {}
    for computation, body in computations.items():
        if called.get(computation) == "fusion":
            continue  # inside a fusion: no thunk of its own
        for i in body:
            if i["opcode"] in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
                continue
            inner = []
            for callee in re.findall(r"calls=%([\w.\-]+)", i["rest"]):
                inner += computations.get(callee, [])
            ops = [i] + inner
            opcodes = {o["opcode"] for o in ops}
            flops = sum(_flops(o, shapes) for o in ops)
            convs = [o for o in ops if o["opcode"] == "convolution"]
            op_names = [o["op_name"] for o in ops if o["op_name"]]  # its own first, then its fused ops
            direction = _direction(op_names[0] if op_names else "")
            if convs:
                big = max(_window(convs[0]), default=0) > 3
                # a forward or input-gradient convolution's window is its kernel; the weight gradient's is the
                # image (XLA may drop its metadata, so the window decides, not the op_name)
                kind = "weight-grad" if big else ("input-grad" if direction == "bwd" else "forward")
                category = f"conv {kind}"
            elif opcodes & {"dot"}:
                scope = next(filter(None, map(_scope, op_names)), None)
                category = f"{'attention' if scope == 'attention' else 'dense'} {direction}"
            elif i["opcode"] in ("transpose", "copy") or re.match(r"(transpose|copy)", i["name"]):
                category = "layout"
            elif direction == "optimizer":
                category = "optimizer"
            else:
                scope = _scope(i["op_name"])
                category = f"{scope if scope in ('attention', 'norm') else 'other'} {direction}"
            result[i["name"]] = (category, flops)
    return result


# --- the profile -----------------------------------------------------------------------------------------------

def thunk_times(step, state, inputs, key, reps: int) -> tuple[dict, float]:
    """({thunk name: total microseconds over `reps` steps}, wall seconds per step) from a jax.profiler trace."""
    import time

    for _ in range(2):
        state = step(*state, *inputs, key)[:2]
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as logdir:
        start = time.perf_counter()
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            for _ in range(reps):
                state = step(*state, *inputs, key)[:2]
            jax.block_until_ready(state)
        wall = (time.perf_counter() - start) / reps
        (trace,) = glob.glob(f"{logdir}/**/perfetto_trace.json.gz", recursive=True)
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    times = collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            times[event["name"]] += event.get("dur", 0.0)
    return times, wall


def isolated_convs(conv_calls: list, options: dict, reps: int) -> dict:
    """{"conv forward" | "conv input-grad" | "conv weight-grad": {"ms", "gflop", "thunks"}}: each distinct
    nn.Conv call of `conv_calls` ((settings, input shape) pairs, `scoped_layers`) compiled on its own with
    `options` and timed (best of `reps` after a warm-up) forward, input gradient and weight gradient, times
    the number of its calls. FLOPs are 2 x output elements x kernel taps x input features, each way."""
    import time

    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    rows = {kind: {"ms": 0.0, "gflop": 0.0, "thunks": 0} for kind in ("forward", "input-grad", "weight-grad")}
    for (settings, shape), calls in collections.Counter(conv_calls).items():
        module = nnx.Conv(**dict(settings), rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(module)
        apply = lambda p, x: nnx.merge(graphdef, p)(x)  # noqa: E731
        x = jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))
        out = jax.eval_shape(apply, params, x)
        cotangent = jnp.ones(out.shape, out.dtype)
        programs = {"forward": lambda p, x: apply(p, x),
                    "input-grad": lambda p, x: jax.vjp(lambda x: apply(p, x), x)[1](cotangent)[0],
                    "weight-grad": lambda p, x: jax.vjp(lambda p: apply(p, x), p)[1](cotangent)[0]}
        flops = 2.0 * math.prod(out.shape) * math.prod(module.kernel.shape[:-1])
        for kind, fn in programs.items():
            compiled = jax.jit(fn, compiler_options=options or None).lower(params, x).compile()
            jax.block_until_ready(compiled(params, x))
            best = math.inf
            for _ in range(reps):
                start = time.perf_counter()
                jax.block_until_ready(compiled(params, x))
                best = min(best, time.perf_counter() - start)
            rows[kind]["ms"] += 1e3 * best * calls
            rows[kind]["gflop"] += flops * calls / 1e9
            rows[kind]["thunks"] += calls
    return {f"conv {kind}": r for kind, r in rows.items()}


def profile(size: str, devices: int, reps: int, convolutions: str = "ynnpack") -> dict:
    config, batch = unet_bench.sizes()[size]
    options = unet_bench.CONVOLUTIONS[convolutions]
    if convolutions != "ynnpack" and devices != 1:
        raise SystemExit("profile_step.py: --convolutions xla times convolutions in isolation on one device; "
                         f"give --devices 1 (got {devices})")
    conv_calls = []
    with scoped_layers(conv_calls):
        run = unet_bench.setup(config, batch, devices, options)
        state, inputs, key = (run["params"], run["opt_state"]), run["inputs"], run["key"]
        compiled = run["step"].lower(*state, *inputs, key).compile()
    labels = categorize(parse_hlo(compiled.as_text()))
    times, wall = thunk_times(compiled, state, inputs, key, reps)
    rows = collections.defaultdict(lambda: {"ms": 0.0, "gflop": 0.0, "thunks": 0})
    top = sorted((name for name in labels if name in times), key=lambda name: -times[name])[:15]
    for name, (category, flops) in labels.items():
        if name in times:
            rows[category]["ms"] += times[name] / 1e3 / reps
            rows[category]["gflop"] += devices * flops / 1e9
            rows[category]["thunks"] += 1
    if convolutions != "ynnpack":  # the conv thunks' times are not the convolutions' (the docstring): time them alone
        rows.update(isolated_convs(conv_calls, options, reps))
        attributed = sum(r["ms"] for r in rows.values())
        rows["unattributed"] = {"ms": max(wall * 1e3 - attributed, 0.0), "gflop": 0.0, "thunks": 0}
        top = [name for name in top if not labels[name][0].startswith("conv")]
    total = sum(r["ms"] for r in rows.values())
    unattributed = rows["unattributed"]["ms"] if "unattributed" in rows else 0.0
    peak = unet_bench.matmul_peak(3)
    table = {}
    for category, r in sorted(rows.items(), key=lambda kv: -kv[1]["ms"]):
        table[category] = {"ms": round(r["ms"], 2), "share": round(r["ms"] / total, 3), "thunks": r["thunks"],
                           "gflop": round(r["gflop"], 2),
                           "gflops": round(r["gflop"] / (r["ms"] / 1e3), 1) if r["gflop"] and r["ms"] else None}
    return {"size": size, "convolutions": convolutions, "params": unet_bench.count_params(config), "batch": batch,
            "devices": devices,
            "reps": reps, "step_wall_ms": round(wall * 1e3, 1), "thunk_ms": round(total - unattributed, 1),
            "matched_thunks": sum(r["thunks"] for r in rows.values()), "matmul_2048_gflops": round(peak, 1),
            "xla_gflop": round(unet_bench.flops_of(compiled, devices) / 1e9, 2),
            "parsed_gflop": round(sum(r["gflop"] for r in rows.values()), 2),
            "slowest_thunks": [{"thunk": name, "category": labels[name][0], "ms": round(times[name] / 1e3 / reps, 2),
                                "gflop": round(devices * labels[name][1] / 1e9, 3)} for name in top],
            "jax": jax.__version__, "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
            "categories": table}


def main(args) -> None:
    why = unet_bench.unsupported(args.convolutions) if args.convolutions != "ynnpack" else None
    if why:
        raise SystemExit(f"profile_step.py: {why}")
    result = profile(args.size, min(args.devices, len(jax.devices())), args.reps, args.convolutions)
    print(f"{args.size}: {result['params'] / 1e6:.2f}M parameters, batch {result['batch']}, "
          f"step {result['step_wall_ms']} ms wall, {result['thunk_ms']} ms summed over thunks; "
          f"matmul peak {result['matmul_2048_gflops']} GFLOP/s; {result['parsed_gflop']} GFLOP in convolutions "
          f"and matmuls of {result['xla_gflop']} in XLA's cost analysis")
    print(f"{'category':>22}{'ms':>9}{'share':>8}{'GFLOP':>9}{'GFLOP/s':>9}")
    for category, r in result["categories"].items():
        rate = f"{r['gflops']:9.1f}" if r["gflops"] else f"{'':>9}"
        print(f"{category:>22}{r['ms']:9.1f}{r['share']:8.1%}{r['gflop']:9.2f}{rate}")
    suffix = "" if args.convolutions == "ynnpack" else f"_{args.convolutions}"
    out = ROOT / "benchmarks" / "results" / f"profile_{args.size}{suffix}.json"
    out.write_text(json.dumps({**result, "command": "python benchmarks/profile_step.py " + " ".join(sys.argv[1:])},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(ARGS)
