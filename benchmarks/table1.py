"""Table 1 of the paper on the toy cascade: the original cascade against its distilled students (chapter 09).

    python benchmarks/table1.py                      # every row; rows already in the file are kept
    python benchmarks/table1.py --rows distilled-8-ddim --num-videos 64

Each row samples the same held-out prompts (chapter 04's 64 one-digit test captions) from the same noise
with `ivlib.evaluation.evaluate_cascade`: CLIP score, R-precision and FVD of the toy evaluator, the
digit / colour / motion accuracies, and the seconds per video on this machine without compilation (the full
batches after the first). Rows, after the paper's (Table 1; §2.6.2, §2.7):

* original: the shipped stages at the paper's step counts, 256 base / 128 SR ancestral steps, with
  classifier-free guidance (two passes per step), constant (w = `toy.GUIDANCE` for the base, 1 for the SR
  stages) or oscillating (high ⟷ low after a quarter of the steps, in the base and the TSR stage: the paper
  oscillates below 80×48 only; the toy's weights are 3 ⟷ 0, its students' range being w ∈ [0, 4]);
* distilled SR: the original base, 256 steps, under the distilled SR stages at 8 steps; and the other way
  round (student-base), the distilled base at 8 steps under the original SR stages at 128: where each gap opens;
* distilled-N: every stage's distilled student (one pass per step, told w) at N steps per stage, with
  the stochastic sampler or DDIM (stages without an N-step student use their 8-step one: the row says so).

The SR stages' input is noised at the original stages' SNR (`toy.AUG_SNR`, 5) under the original SR stages and
at the students' own (`toy.DISTILLED_AUG_SNR`, chosen on validation prompts by benchmarks/student_aug.py) under
the distilled ones.

Also the FLOPs of sampling one video (XLA's cost analysis of each stage's denoiser, times its passes and
steps) and the speedups against the constant-guidance original, with the paper's 18× (time) and 36× (FLOPs)
beside them. Rows go to ivlib/assets/weights/toy_cascade.table1.json as they finish, so a stopped run
resumes where it stopped.
"""

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib/assets/weights/toy_cascade.table1.json"
PAPER = {"time_speedup": 18, "flops_speedup": 36, "original_steps": [256, 128], "distilled_steps": 8}
OSCILLATE = (3.0, 0.0)  # the toy's high and low weights of oscillating guidance


def row_specs():
    """name -> (what the row is, {stage: (which weights, SamplerSettings kwargs)})."""
    from ivlib.configs import toy

    def const(steps, sr_steps, sampler, aug_snr, base_w=toy.GUIDANCE):
        return {"base": dict(num_steps=steps, sampler=sampler, guidance=base_w),
                "tsr": dict(num_steps=sr_steps, sampler=sampler, guidance=1.0, aug_snr=aug_snr),
                "ssr": dict(num_steps=sr_steps, sampler=sampler, guidance=1.0, aug_snr=aug_snr)}

    def osc(steps, sr_steps, sampler, aug_snr):
        out = const(steps, sr_steps, sampler, aug_snr)
        for name, n in (("base", steps), ("tsr", sr_steps)):
            out[name] = dict(out[name], guidance=OSCILLATE[0], oscillate=(*OSCILLATE, n // 4))
        return out

    teacher, student = ("teacher",) * 3, ("student",) * 3
    aug, student_aug = toy.AUG_SNR, toy.DISTILLED_AUG_SNR  # the SR stages' input noised at each one's own SNR
    specs = {
        "original-constant": ("original cascade, constant guidance", teacher, const(256, 128, "ancestral", aug)),
        "original-oscillate": ("original cascade, oscillating guidance", teacher, osc(256, 128, "ancestral", aug)),
        "distilled-sr-constant": ("original base, distilled SR stages, constant guidance",
                                  ("teacher", "student", "student"),
                                  {**const(8, 8, "stochastic", student_aug),
                                   "base": const(256, 8, "ancestral", aug)["base"]}),
        "student-base-constant": ("distilled base, original SR stages, constant guidance",
                                  ("student", "teacher", "teacher"),
                                  {**const(256, 128, "ancestral", aug), "base": const(8, 8, "stochastic", aug)["base"]}),
    }
    for n in (8, 4, 2):
        for sampler in ("stochastic", "ddim"):
            specs[f"distilled-{n}-{sampler}"] = (f"distilled cascade, {n} steps, {sampler}, constant guidance",
                                                 student, const(n, n, sampler, student_aug))
    specs["distilled-8-stochastic-oscillate"] = ("distilled cascade, 8 steps, stochastic, oscillating guidance",
                                                 student, osc(8, 8, "stochastic", student_aug))
    return specs


def student_path(stage: str, steps: int):
    """The shipped student of `stage` that samples in `steps` steps (None: none ships)."""
    from ivlib.pretrained import distilled_weights_path
    from ivlib.weights import read_metadata

    for path in (distilled_weights_path("toy", stage), distilled_weights_path("toy", stage).with_name(
            f"toy_{stage}_distilled{steps}.safetensors")):
        if path.is_file() and read_metadata(path).get("sampling_steps") == steps:
            return path
    return None


def build(kinds, settings):
    """(Cascade, {stage: SamplerSettings}, notes) for one row."""
    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.pretrained import teacher_weights_path

    weights, chosen, notes = {}, {}, []
    for name, kind in zip(("base", "tsr", "ssr"), kinds):
        kw = dict(settings[name])
        path = teacher_weights_path("toy", name)  # what the students were distilled from
        if kind == "student":
            path = student_path(name, kw["num_steps"])
            if path is None:
                path, kw["num_steps"] = student_path(name, 8), 8
                notes.append(f"{name}: no {settings[name]['num_steps']}-step student ships; its 8-step one runs")
        weights[name] = path
        chosen[name] = SamplerSettings(**kw)
    return Cascade.pretrained("toy", stages=list(weights), weights=weights), chosen, notes


def denoiser_flops(cascade, prompt="the red digit 3 moving left") -> list:
    """FLOPs of one denoising step of each stage for one video (guided: both passes), from XLA's cost analysis."""
    import jax
    import jax.numpy as jnp

    from ivlib.cascade import stage_denoiser

    flops = []
    for stage, model_def, params in zip(cascade.stages, cascade.model_defs, cascade.params):
        text, mask = cascade.embed([prompt], stage.name)
        shape = (1, stage.frames, stage.height, stage.width, 3)
        cond = jnp.zeros(shape) if stage.unet.cond_channels else None

        def step(params, z, text, mask, cond):
            extra = {} if cond is None else {"cond": cond, "cond_logsnr": jnp.zeros((1,))}
            return stage_denoiser(stage, model_def.bind(params), text, mask, jnp.ones((1,)), **extra)(
                z, jnp.zeros((1,)), 0)

        cost = jax.jit(step).lower(params, jnp.zeros(shape), text, mask, cond).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops.append(float(cost["flops"]))
    return flops


def run_row(name, spec, num_videos, batch_size):
    from ivlib.evaluation import evaluate_cascade

    what, kinds, settings = spec
    cascade, chosen, notes = build(kinds, settings)
    flops = denoiser_flops(cascade)
    result = evaluate_cascade(cascade, dataset_options={"max_objects": 1}, num_videos=num_videos,
                              batch_size=batch_size, settings=chosen)
    return {
        "row": name, "what": what, "weights": list(kinds), "notes": notes,
        "settings": {k: dataclasses.asdict(v) for k, v in chosen.items()},
        **result["model"], "ground_truth": result["ground_truth"],
        "seconds_per_video": result["seconds_per_video_compiled"],
        "seconds_per_video_with_compile": result["seconds_per_video"],
        "step_flops": dict(zip(chosen, flops)),
        "flops_per_video": sum(f * chosen[s].num_steps for f, s in zip(flops, chosen)),
    }


def main():
    specs = row_specs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(specs), choices=list(specs))
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--redo", action="store_true", help="sample rows that the file already holds again")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.num_videos < 2 * args.batch_size:
        sys.exit("--num-videos must be at least twice --batch-size: the first batch is not timed (it compiles)")
    out = pathlib.Path(args.out)
    table = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    if table.get("num_videos", args.num_videos) != args.num_videos:
        sys.exit(f"{out} holds rows of {table['num_videos']} videos: give --num-videos {table['num_videos']} "
                 "or another --out")
    for name in args.rows:
        if name in table["rows"] and not args.redo:
            continue
        start = time.perf_counter()
        row = run_row(name, specs[name], args.num_videos, args.batch_size)
        row["wall_seconds"] = time.perf_counter() - start
        table["rows"][name] = row
        table.update(num_videos=args.num_videos, batch_size=args.batch_size, paper=PAPER,
                     machine=f"{platform.machine()}, {platform.processor() or 'cpu'}, jax on CPU",
                     command="python benchmarks/table1.py", ground_truth=row.pop("ground_truth"))
        summarise(table)
        out.write_text(json.dumps(table, indent=1))
        print(f"{name}: CLIP {row['clip_score']:.3f}  R {row['r_precision']:.3f}  FVD {row['fvd']:.1f}  "
              + "  ".join(f"{k} {v:.2f}" for k, v in row.get("attributes", {}).items())
              + f"  {row['seconds_per_video']:.3f} s/video  {row['flops_per_video'] / 1e9:.2f} GFLOP/video", flush=True)


def summarise(table):
    """Speedups of every row against the constant-guidance original, in time and FLOPs."""
    rows = table["rows"]
    ref = rows.get("original-constant")
    if ref is None:
        return
    for row in rows.values():
        row["time_speedup"] = ref["seconds_per_video"] / row["seconds_per_video"]
        row["flops_speedup"] = ref["flops_per_video"] / row["flops_per_video"]


if __name__ == "__main__":
    main()
