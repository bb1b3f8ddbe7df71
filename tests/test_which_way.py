"""benchmarks/which_way.py's scores (chapter 04's "Which way?"): motion, axis and sign accuracy."""

import math

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
