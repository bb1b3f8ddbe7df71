"""Tests of the cascade configurations and the memory plan (chapter 10).

Parameter counts come from `nnx.eval_shape` (nothing is allocated), so the paper's 11.6B cascade is
counted on a laptop in seconds.
"""

import time

import jax
import jax.numpy as jnp
import optax
import pytest

from ivlib.compat import fast_tracing
from ivlib.configs import CONFIG_NAMES, describe, get_cascade, get_stage, num_params, paper
from ivlib.memory import abstract_batch, abstract_train_state, fits, plan_memory, state_bytes
from ivlib.nn.unet import Level, UNetConfig, count_params
from ivlib.sharding import make_mesh
from ivlib.stage import Stage


@pytest.fixture(scope="module")
def paper_counts():
    start = time.perf_counter()
    counts = {"base": num_params(paper.BASE)}
    counts["seconds_for_base"] = time.perf_counter() - start
    counts.update({stage.name: num_params(stage) for stage in get_cascade("paper")[1:]})
    for size in ("500m", "1.6b"):
        counts[f"base-{size}"] = num_params(paper.base_stage(size))
    return counts


# ------------------------------------------------------------------ the paper's numbers
def test_paper_base_is_5_6b_and_the_cascade_11_6b(paper_counts):
    assert abs(paper_counts["base"] / 5.6e9 - 1) < 0.03, paper_counts["base"]
    total = sum(paper_counts[s.name] for s in get_cascade("paper"))
    assert abs(total / 11.6e9 - 1) < 0.03, total


def test_counting_the_5_6b_base_takes_seconds_not_minutes(paper_counts):
    # ~3 s on a 2-core CPU; without `fast_tracing` tracing is quadratic and takes over a minute
    assert paper_counts["seconds_for_base"] < 40, paper_counts["seconds_for_base"]


def test_the_three_base_sizes_of_fig_11(paper_counts):
    for size, name in (("500m", "base-500m"), ("1.6b", "base-1.6b"), ("5.6b", "base")):
        assert abs(paper_counts[name] / paper.BASE_PARAMS[size] - 1) < 0.03, (size, paper_counts[name])
    # Fig. 11 scales by "base channel count and depth": both grow with size
    sizes = [paper.BASE_SIZES[s] for s in ("500m", "1.6b", "5.6b")]
    assert sizes == sorted(sizes) and [b for _, b in sizes] == sorted(b for _, b in sizes)


def test_paper_variants_only_swap_the_base():
    for name, size in (("paper-500m", "500m"), ("paper-1.6b", "1.6b"), ("paper-5.6b", "5.6b")):
        stages = get_cascade(name)
        assert stages[0] == paper.base_stage(size)
        assert stages[1:] == get_cascade("paper")[1:]


def test_paper_shapes_follow_fig_6():
    stages = get_cascade("paper")
    # frames x height x width (Fig. 6 writes frames x width x height)
    assert [s.output_shape for s in stages] == [(16, 24, 40), (32, 24, 40), (32, 48, 80), (32, 192, 320),
                                                 (64, 192, 320), (128, 192, 320), (128, 768, 1280)]
    assert [s.kind for s in stages] == ["base", "tsr", "ssr", "ssr", "tsr", "tsr", "ssr"]
    assert [s.fps for s in stages] == [3, 6, 6, 6, 12, 24, 24]
    for prev, stage in zip(stages, stages[1:]):  # each stage takes the previous stage's video
        assert stage.input_shape == prev.output_shape, stage.name
    final = stages[-1]
    assert final.frames / final.fps == pytest.approx(16 / 3)  # 5.3 seconds
    assert len({s.name for s in stages}) == 7


def test_paper_architecture_rules_of_section_2_3():
    stages = {s.name: s for s in get_cascade("paper")}
    for stage in stages.values():
        u = stage.unet
        assert u.text_dim == 4096 and u.target == "v", stage.name  # T5-XXL into every stage, v-prediction
        assert any(level.uses_cross_attention for level in u.levels), stage.name
        temporal = {level.temporal for level in u.levels}
        assert temporal == ({"attention"} if stage.kind == "base" else {"conv"}), stage.name
    spatial = {name: any(level.spatial_attention for level in s.unet.levels) for name, s in stages.items()}
    assert spatial == {"base": True, "tsr1": True, "ssr1": True, "ssr2": True,
                       "tsr2": False, "tsr3": False, "ssr3": False}
    assert all(level.spatial_attention for level in stages["base"].unet.levels)
    for name in ("ssr1", "ssr2"):  # none at the stage's own (highest) resolution
        assert not stages[name].unet.levels[0].spatial_attention
    last = stages["ssr3"]
    assert last.unet.fully_convolutional and last.train_crop is not None
    factor = 2 ** (len(last.unet.levels) - 1)
    assert last.train_crop[0] % factor == 0 and last.train_crop[1] % factor == 0
    assert last.train_crop[0] < last.height and last.train_crop[1] < last.width
    assert [s.name for s in get_cascade("paper") if s.unet.fully_convolutional] == ["ssr3"]
    assert stages["base"].unet.height == 24 and len(stages["base"].unet.levels) == 4  # 40x24 -> 5x3


# ------------------------------------------------------------------ toy and colab
def test_toy_cascade_keeps_the_papers_rules_at_cpu_size():
    """What the toy cascade must be, whatever its widths (configs/toy.py's docstring): a chain that
    fits together, the paper's §2.3 rules, the toy text encoder's width, and a CPU-sized budget."""
    from ivlib.stage import check_chain
    from ivlib.text import DEFAULT_CONFIG

    stages = get_cascade("toy")
    check_chain(stages)  # each stage takes the previous stage's video
    base, *sr = stages
    assert {s.kind for s in sr} == {"tsr", "ssr"}  # both kinds of super-resolution, as in the paper
    assert len({s.frames / s.fps for s in stages}) == 1  # every stage shows the same seconds of video
    final = stages[-1]
    assert all(s.frames <= final.frames and s.height <= final.height and s.width <= final.width for s in stages)
    for s in stages:
        u = s.unet
        factor = 2 ** (len(u.levels) - 1)  # the U-Net halves height and width at every level below the top
        height, width = s.train_crop or (s.height, s.width)
        assert height % factor == 0 and width % factor == 0, s.name
        assert u.text_dim == DEFAULT_CONFIG.d_model and u.target == "v", s.name  # toy T5 into every stage; §2.4
        assert u.cond_channels == (0 if s.kind == "base" else u.channels), s.name
        temporal = {lv.temporal for lv in u.levels}
        assert temporal == ({"attention"} if s.kind == "base" else {"conv"}), s.name  # §2.3
    assert any(lv.spatial_attention for lv in base.unet.levels)
    assert not any(lv.spatial_attention for s in sr for lv in s.unet.levels)  # the toy's "highest resolution"
    last_ssr = [s for s in stages if s.kind == "ssr"][-1]
    assert [s.name for s in stages if s.unet.fully_convolutional] == [last_ssr.name]
    crop = last_ssr.train_crop
    assert crop is not None and crop[0] < last_ssr.height and crop[1] < last_ssr.width
    assert all(s.train_crop is None for s in stages if s is not last_ssr)
    counts = [num_params(s) for s in stages]
    assert sum(counts) < 3e6 and min(counts) > 1e5, counts  # trains on a laptop CPU, yet not trivial


def test_colab_cascade_is_the_papers_first_three_stages_smaller():
    stages = get_cascade("colab")
    assert [s.output_shape for s in stages] == [s.output_shape for s in get_cascade("paper")[:3]]
    assert [s.kind for s in stages] == ["base", "tsr", "ssr"]
    counts = [num_params(s) for s in stages]
    assert 50e6 < counts[0] < 200e6 and all(20e6 < n < 100e6 for n in counts[1:]), counts
    # 16 bytes per parameter (params, two Adam moments, EMA) fit one 8 GB v2 core with room for activations
    assert all(16 * n < 4e9 for n in counts)


def test_describe_writes_the_papers_labels():
    base = describe(get_stage("paper", "base"), params=False)
    assert (base["input"], base["output"], base["temporal"], base["spatial attention"]) == (
        "text", "16x40x24", "attention", "all levels")
    ssr1 = describe(get_stage("paper", "ssr1"), params=False)
    assert ssr1["spatial attention"] == "40x24, 20x12, 10x6, 5x3" and ssr1["input"] == "32x40x24"
    last = describe(get_stage("paper", "ssr3"), params=False)
    assert (last["kind"], last["output"], last["temporal"], last["spatial attention"], last["text cross-attention"],
            last["fully convolutional"]) == ("SSR", "128x1280x768", "conv", "none", "40x24", True)
    assert describe(get_stage("toy", "ssr"))["params"] == num_params(get_stage("toy", "ssr"))


def test_get_stage_and_get_cascade_reject_unknown_names():
    assert get_stage("paper", "ssr3") == get_cascade("paper")[-1]
    assert isinstance(get_stage("toy", "tsr"), Stage)
    assert set(CONFIG_NAMES) >= {"toy", "colab", "paper", "paper-500m", "paper-1.6b"}
    with pytest.raises(ValueError, match="valid names: toy, colab, paper"):
        get_cascade("papr")
    with pytest.raises(ValueError, match="valid stage names: base, tsr, ssr"):
        get_stage("toy", "ssr3")
    with pytest.raises(ValueError, match="size must be one of"):
        paper.base_stage("2b")
    with pytest.raises(ValueError, match="Stage or a UNetConfig"):
        num_params("base")


def test_fast_tracing_counts_the_same_and_restores_jax():
    from jax._src.interpreters import partial_eval as pe

    config = UNetConfig(frames=2, height=8, width=8, text_dim=8, head_dim=8,
                        levels=(Level(8, 1, True, "attention"), Level(16, 1, False, "conv")))
    before = pe.DynamicJaxprTracer._origin_msg
    with fast_tracing():
        fast = count_params(config)
    assert pe.DynamicJaxprTracer._origin_msg is before
    assert fast == count_params(config) == num_params(config)


# ------------------------------------------------------------------ memory plan
def test_state_bytes_are_16_per_parameter_split_over_the_model_axis():
    tx = optax.adam(1e-3)
    _, state = abstract_train_state(paper.SSR3, tx)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state))
    n = sum(x.size for x in jax.tree.leaves(state["params"]))
    whole = state_bytes(state, 1)
    assert whole["params"] == whole["ema"] == 4 * n
    assert whole["opt_state"] == 8 * n + 4  # two moments + Adam's step count (int32)
    split = state_bytes(state, 8)
    assert whole["total"] / 8 < split["total"] < 1.01 * whole["total"] / 8  # small arrays stay whole
    assert fits(split["total"], 32) and not fits(whole["total"], 16)


def test_abstract_batch_shapes():
    batch = abstract_batch(get_stage("paper", "ssr3"), 2, 128)
    assert batch["video"].shape == (2, 128, 768, 1280, 3)
    assert batch["cond"].shape == (2, 128, 192, 320, 3)
    assert batch["text"].shape == (2, 128, 4096) and batch["text_mask"].dtype == jnp.bool_
    assert "cond" not in abstract_batch(get_stage("toy", "base"), 1, 8)
    with pytest.raises(ValueError, match="batch_size"):
        abstract_batch(get_stage("toy", "base"), 0, 8)


def test_compiled_memory_plan_of_a_tiny_stage():
    unet = UNetConfig(frames=2, height=8, width=8, text_dim=8, head_dim=8, levels=(Level(8, 1, False, "conv"),))
    stage = Stage("base", "base", unet, fps=1.0)
    plan = plan_memory(stage, make_mesh(1, 1), batch_per_device=2, tx=optax.sgd(0.1), text_length=4)
    mem, state = plan["compiled"], plan["state"]
    assert plan["params"] == count_params(unet)
    assert state["total"] == 8 * plan["params"] + 4  # params + EMA (+ the step); SGD keeps no moments
    assert mem["alias"] == state["total"]  # the donated state is updated in place
    assert mem["argument"] == state["total"] + plan["batch_bytes"] + 8  # + the PRNG key
    assert mem["temp"] > 0 and mem["total"] == mem["argument"] + mem["output"] - mem["alias"] + mem["temp"]
