"""The shipped distilled toy cascade (chapter 09): what `make demo` and `ivlib generate` sample by default."""

import json
import pathlib

import numpy as np

from ivlib.cli import DISTILLED_STEPS, main
from ivlib.configs import get_cascade
from ivlib.pretrained import distilled_weights_path, has_distilled, stale_students, teacher_weights_path
from ivlib.weights import WEIGHTS_DIR, read_metadata, shipped_weights_path

TABLE = WEIGHTS_DIR / "toy_cascade.table1.json"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _teachers(meta):
    """The chain of records from a student back to the trained stage it was distilled from."""
    chain = [meta]
    while "teacher" in chain[-1]:
        chain.append(chain[-1]["teacher"])
    return chain


def test_every_toy_stage_ships_a_student_distilled_from_the_shipped_stage_by_recorded_commands():
    assert has_distilled("toy")
    for stage in get_cascade("toy"):
        meta = read_metadata(distilled_weights_path("toy", stage.name))
        assert meta["stage"] == stage.name and meta["guidance_embedding"]
        assert meta["sampling_steps"] == DISTILLED_STEPS  # what generate and eval sample it in by default
        chain = _teachers(meta)
        phases = [m["distill_config"]["phase"] for m in chain if "distill_config" in m]
        assert phases[-1] == "guided" and set(phases[:-1]) == {"progressive"}
        halvings = [m["sampling_steps"] for m in chain if m.get("distill_config", {}).get("phase") == "progressive"]
        assert halvings == [DISTILLED_STEPS * 2**k for k in range(len(halvings))]  # 8, 16, ...: each halves the last
        shipped = read_metadata(teacher_weights_path("toy", stage.name))  # the weights it was distilled from
        assert chain[-1]["steps"] == shipped["steps"] and chain[-1]["train_config"] == shipped["train_config"]
        commands = meta["commands"]
        assert [c for c in commands if c.startswith("ivlib distill")][-len(phases):] == commands[-len(phases):]
        assert f"--student-steps {DISTILLED_STEPS}" in commands[-1] and f"--stage {stage.name}" in commands[-1]


def test_students_of_earlier_weights_are_named_and_never_sampled_silently(tmp_path, capsys, monkeypatch):
    """A stage retrained after its student was distilled (the base grew relative keys in chapter 04, and was
    distilled again) leaves a stale student, which its metadata's teacher_file names: it is never sampled."""
    import ivlib.pretrained

    real = ivlib.pretrained.read_metadata
    student = distilled_weights_path("toy", "base")
    monkeypatch.setattr(ivlib.pretrained, "read_metadata", lambda path: {
        **real(path), **({"teacher_file": "toy_base_step8000.safetensors"} if path == student else {})})
    assert stale_students("toy") == ["base"] and teacher_weights_path("toy", "base").name == "toy_base_step8000.safetensors"
    assert stale_students("toy", ["base", "tsr"]) == ["base"] and teacher_weights_path("toy", "tsr") == \
        shipped_weights_path("toy", "tsr")
    out = tmp_path / "video.mp4"
    assert main(["generate", "the red digit 3 moving left", "--out", str(out), "--scale", "1", "--steps", "2",
                 "--sr-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "note: distilled students of earlier weights (base from toy_base_step8000.safetensors)" in printed
    assert "through 3 undistilled stages, 2 base / 2 SR ancestral steps" in printed


def test_generate_samples_the_distilled_cascade_unless_told_teacher(tmp_path, capsys):
    from ivlib.configs import toy

    assert stale_students("toy") == []  # every shipped student was distilled from the weights its stage ships
    out = tmp_path / "video.mp4"
    assert main(["generate", "the red digit 3 moving left", "--out", str(out), "--scale", "1"]) == 0
    printed = capsys.readouterr().out
    assert (f"through 3 distilled students, {DISTILLED_STEPS} base / {DISTILLED_STEPS} SR stochastic steps, "
            f"SR input noised at SNR {toy.DISTILLED_AUG_SNR:g}") in printed
    assert main(["generate", "the red digit 3 moving left", "--out", str(out), "--scale", "1", "--teacher",
                 "--steps", "2", "--sr-steps", "2"]) == 0
    assert f"undistilled stages (--teacher), 2 base / 2 SR ancestral steps, SR input noised at SNR {toy.AUG_SNR:g}" \
        in capsys.readouterr().out


def test_table1_rows_are_consistent_with_their_settings():
    from ivlib.configs import toy

    table = json.loads(TABLE.read_text())
    rows = table["rows"]
    assert table["num_videos"] >= 64 and "ground_truth" in table
    for name, row in rows.items():
        steps = {stage: s["num_steps"] for stage, s in row["settings"].items()}
        assert row["flops_per_video"] == sum(row["step_flops"][s] * n for s, n in steps.items())
        assert row["seconds_per_video"] > 0 and 0 <= row["r_precision"] <= 1
        if name.startswith("original"):
            assert steps == {"base": 256, "tsr": 128, "ssr": 128} and row["weights"] == ["teacher"] * 3
        if name.startswith("distilled-"):
            assert row["weights"][1:] == ["student"] * 2
        for stage, kind in zip(("tsr", "ssr"), row["weights"][1:]):  # each SR stage's input noised at its own SNR
            assert row["settings"][stage]["aug_snr"] == (toy.DISTILLED_AUG_SNR if kind == "student" else toy.AUG_SNR)
    if "original-constant" in rows:
        ref = rows["original-constant"]
        for row in rows.values():
            np.testing.assert_allclose(row["time_speedup"], ref["seconds_per_video"] / row["seconds_per_video"])
            np.testing.assert_allclose(row["flops_speedup"], ref["flops_per_video"] / row["flops_per_video"])
        # a guided teacher pays two passes per step: the student's step costs half the teacher's
        student = rows["distilled-8-stochastic"]["step_flops"]
        for stage, flops in ref["step_flops"].items():
            np.testing.assert_allclose(flops / student[stage], 2.0, rtol=0.05)


def test_students_aug_snr_is_the_validation_sweeps_best_and_generate_uses_it(load_benchmark):
    import argparse

    from ivlib import cli
    from ivlib.configs import toy

    student_aug = load_benchmark("student_aug")
    sweep = json.loads(student_aug.OUT.read_text())
    assert sweep["seed"] != 0 and sweep["num_videos"] >= 64  # validation prompts, not Table 1's test draw
    assert toy.DISTILLED_AUG_SNR == sweep["best_snr"] == student_aug.best_snr(sweep["rows"])
    parser = argparse.ArgumentParser()
    cli._add_sampling_args(parser)
    for argv, distilled, want in (([], True, toy.DISTILLED_AUG_SNR), ([], False, toy.AUG_SNR),
                                  (["--aug-snr", "3"], True, 3.0), (["--aug-snr", "3"], False, 3.0)):
        base, sr = cli._sampler_settings(parser.parse_args(argv), distilled)
        assert sr.aug_snr == want, (argv, distilled)


def test_best_snr_keeps_fvd_within_the_margin(load_benchmark):
    student_aug = load_benchmark("student_aug")
    rows = {"3": {"aug_snr": 3.0, "r_precision": 0.95, "fvd": 40.0},  # best R, FVD far off: not chosen
            "5": {"aug_snr": 5.0, "r_precision": 0.80, "fvd": 30.0},  # best FVD
            "10": {"aug_snr": 10.0, "r_precision": 0.85, "fvd": 31.0}}  # within 5 %, better R: chosen
    assert student_aug.best_snr(rows) == 10.0
    rows["10"]["fvd"] = 32.0  # 6.7 % off: out
    assert student_aug.best_snr(rows) == 5.0


def test_render_distillation_shows_teacher_and_student_from_the_same_seed():
    from ivlib import widgets
    from ivlib.cascade import Cascade

    teacher = Cascade.pretrained("toy", stages=["base"])
    student = Cascade.pretrained("toy", stages=["base"], distilled=True)
    assert student.stages[0].unet.guidance_embedding and not teacher.stages[0].unet.guidance_embedding
    videos = widgets.render_distillation(teacher, student, "the red digit 3 moving left", steps=2, teacher_steps=2)
    assert list(videos) == ["teacher: 2 steps x 2 passes", "student: 2 stochastic steps"]
    again = widgets.render_distillation(teacher, student, "the red digit 3 moving left", steps=2, teacher_steps=2)
    for name, video in videos.items():
        assert video.shape == (8, 16, 16, 3)
        np.testing.assert_array_equal(video, again[name])  # pure: the same seed gives the same videos
    widget = widgets.distillation_widget(teacher, student, teacher_steps=2)
    assert {c.description for c in widget.children[:-1]} == {"prompt", "steps", "sampler", "seed", "w"}
