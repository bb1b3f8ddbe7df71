"""benchmarks/which_way.py's scores (chapter 04's "Which way?"): motion, axis and sign accuracy."""

import math

import numpy as np

from ivlib.data import captions as C


def test_axis_and_sign_count_what_they_say(load_benchmark):
    ww = load_benchmark("which_way")
    asked = ["left", "left", "right", "up", "down", "down"]
    drawn = ["left", "right", "right", "left", "down", "still"]  # right, wrong way, right, wrong axis, right, none
    r = ww.which_way(asked, drawn)
    assert r["motion"] == 3 / 6 and r["on_axis"] == 4 and r["axis"] == 4 / 6 and r["sign"] == 3 / 4
    assert math.isnan(ww.which_way(["left"], ["up"])["sign"])  # nothing on the axis: no sign to score
    coin = ww.which_way(["left", "right"] * 8, ["left"] * 16)  # always one way: on the axis, a coin for the sign
    assert coin["axis"] == 1 and coin["sign"] == 0.5


def test_balanced_prompts_ask_each_way_equally(load_benchmark):
    prompts = load_benchmark("which_way").balanced_prompts(16)
    ways = [C.parse_caption(p)[0][0].motion for p in prompts]
    assert len(prompts) == 16 and all(ways.count(w) == 4 for w in ("left", "right", "up", "down"))


def test_key_symmetry_splits_a_table_into_its_even_and_odd_parts(load_benchmark, tmp_path):
    from safetensors.numpy import save_file

    even = np.abs(np.arange(-3, 4, dtype=np.float32))[:, None, None] * np.ones((7, 2, 4), np.float32)
    odd = np.arange(-3, 4, dtype=np.float32)[:, None, None] * np.ones((7, 2, 4), np.float32)
    save_file({"['down'][0]['temporal']['rel_keys'].value": even + 0.5 * odd, "other": np.ones(3, np.float32)},
              str(tmp_path / "k.safetensors"))
    ks = load_benchmark("which_way").key_symmetry(tmp_path / "k.safetensors")
    # per head: |a(+d) + a(-d)| / 2 = |even(d)| = d * sqrt(4) = 2d and |a(+d) - a(-d)| / 2 = |0.5 odd(d)| = d;
    # their means over d = 1, 2, 3 are 4 and 2
    assert np.isclose(ks["symmetric"], 4) and np.isclose(ks["antisymmetric"], 2)
    assert np.isclose(ks["max_norm"], (3 + 1.5) * 2)
    save_file({"x": np.ones(3, np.float32)}, str(tmp_path / "none.safetensors"))
    assert load_benchmark("which_way").key_symmetry(tmp_path / "none.safetensors") is None
