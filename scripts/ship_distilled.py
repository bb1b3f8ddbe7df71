"""Copy the distilled students of `ivlib distill` runs into the package, with how they were made (chapter 09).

    python scripts/ship_distilled.py            # after the runs of the README's "Distilling" commands

For each stage and each student step count, the run's EMA weights go to
ivlib/assets/weights/toy_<stage>_distilled[<steps>].safetensors (no suffix: the 8-step student, the one
`ivlib generate` samples by default), with two metadata entries added: `commands`, every command from the
teacher's training to this student (`ivlib.distiller.lineage`), and `minutes`, the wall-clock minutes of each
distillation phase on the machine that ran it (`wall_minutes`: its logged steps over their measured rates).
"""

import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (stage, steps) -> the run whose student ships; the runs before it are read from its lineage (each
# student's metadata holds its teacher's). The base was distilled again after it grew relative keys
# (chapter 04): 32 -> 16 -> 8 -> 4 -> 2, each halving from the last (runs/distill-rk-*). The SR stages' 16 -> 8
# halvings were run a second time, longer (runs/distill2-*: copies of the first runs, resumed to more steps);
# their 4- and 2-step students were halved from the first, shorter 8-step students.
SHIP = {
    ("base", 8): "runs/distill-rk-p8", ("base", 4): "runs/distill-rk-p4", ("base", 2): "runs/distill-rk-p2",
    ("tsr", 8): "runs/distill2-tsr-p8", ("tsr", 4): "runs/distill-tsr-p4", ("tsr", 2): "runs/distill-tsr-p2",
    ("ssr", 8): "runs/distill2-ssr-p8", ("ssr", 4): "runs/distill-ssr-p4", ("ssr", 2): "runs/distill-ssr-p2",
}


def wall_minutes(run: pathlib.Path) -> float:
    """Minutes a run computed, from its metrics.jsonl: each logged window's steps over its measured rate
    (`steps_per_s`, compilation included), summed. A run resumed days later counts its steps, not the days."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds, previous = 0.0, 0
    for row in rows:
        if "steps_per_s" in row:
            seconds += (row["step"] - previous) / row["steps_per_s"]
            previous = row["step"]
    return seconds / 60


def phases(meta: dict) -> list:
    """[(phase, run directory)] of every distillation from the teacher's training to the student of `meta`,
    in order: "guided", then "32 -> 16 steps" and so on."""
    chain = []
    while meta and "distill_config" in meta:
        config = meta["distill_config"]
        phase = "guided" if config["phase"] == "guided" else f"{2 * config['student_steps']} -> {config['student_steps']} steps"
        chain.append((phase, ROOT / config["workdir"]))
        meta = meta.get("teacher") or {}
    return chain[::-1]


def main():
    from ivlib.distiller import lineage
    from ivlib.pretrained import distilled_weights_path
    from ivlib.weights import read_metadata, update_metadata

    for (stage, steps), run in SHIP.items():
        run = ROOT / run
        if not (run / "ema.safetensors").is_file():
            print(f"{run.relative_to(ROOT)}: not run; skipped")
            continue
        out = distilled_weights_path("toy", stage)
        if steps != 8:
            out = out.with_name(f"toy_{stage}_distilled{steps}.safetensors")
        shutil.copyfile(run / "ema.safetensors", out)
        meta = read_metadata(out)
        assert meta["stage"] == stage and meta["sampling_steps"] == steps, (out, meta["sampling_steps"])
        minutes = {phase: round(wall_minutes(directory), 1) for phase, directory in phases(meta)}
        update_metadata(out, commands=lineage(meta), minutes=minutes)
        print(f"{out.relative_to(ROOT)}: {steps} steps, {sum(minutes.values()):.0f} wall minutes of distillation {minutes}")


if __name__ == "__main__":
    main()
