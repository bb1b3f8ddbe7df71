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

# stage -> [(steps, run directory)], the halvings in order; each run's teacher is the run before it
RUNS = {
    "base": [(None, "runs/distill-guided"), (16, "runs/distill-p16"), (8, "runs/distill-p8"), (4, "runs/distill-p4"),
             (2, "runs/distill-p2")],
    "tsr": [(None, "runs/distill-tsr-guided"), (8, "runs/distill-tsr-p8"), (4, "runs/distill-tsr-p4"),
            (2, "runs/distill-tsr-p2")],
    "ssr": [(None, "runs/distill-ssr-guided"), (8, "runs/distill-ssr-p8"), (4, "runs/distill-ssr-p4"),
            (2, "runs/distill-ssr-p2")],
}
SHIP = (8, 4, 2)


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


def main():
    from ivlib.distiller import lineage
    from ivlib.pretrained import distilled_weights_path
    from ivlib.weights import read_metadata, update_metadata

    for stage, runs in RUNS.items():
        minutes = {}
        for steps, run in runs:
            run = ROOT / run
            if not (run / "ema.safetensors").is_file():
                print(f"{run.relative_to(ROOT)}: not run; skipped")
                continue
            phase = "guided" if steps is None else f"{2 * steps} -> {steps} steps"
            minutes[phase] = round(wall_minutes(run), 1)
            if steps not in SHIP:
                continue
            out = distilled_weights_path("toy", stage)
            if steps != 8:
                out = out.with_name(f"toy_{stage}_distilled{steps}.safetensors")
            shutil.copyfile(run / "ema.safetensors", out)
            meta = read_metadata(out)
            assert meta["stage"] == stage and meta["sampling_steps"] == steps, (out, meta["sampling_steps"])
            update_metadata(out, commands=lineage(meta), minutes=dict(minutes))
            print(f"{out.relative_to(ROOT)}: {steps} steps, {sum(minutes.values()):.0f} wall minutes of distillation")


if __name__ == "__main__":
    main()
