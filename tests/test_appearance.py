"""Chapter 07's pixel measures: hue and 'looks orange' against closed forms and ground truth, centroid jumps."""

import numpy as np
import pytest

from ivlib import appearance
from ivlib.data import captions as C
from ivlib.data import clips, make_dataset
from ivlib.data.render import render


@pytest.mark.parametrize("rgb,hue", [((1, 0, 0), 0), ((1, 0.5, 0), 30), ((1, 1, 0), 60), ((0, 1, 0), 120),
                                     ((0, 1, 1), 180), ((0, 0, 1), 240), ((1, 0, 1), 300), ((0.5, 0.5, 0.5), 0)])
def test_hue_is_the_hsv_hue_angle(rgb, hue):
    assert appearance.hue_degrees(np.array(rgb)) == pytest.approx(hue)


def _ground_truth(colour, n=14):
    prompts = [C.caption([C.ObjectSpec("digit", C.DIGITS[i % 10], colour, None, "plain", C.MOTIONS[i % 7])])
               for i in range(n)]
    return render([clips.clip_for_caption(p, seed=i, split="test") for i, p in enumerate(prompts)], 8, 16, 16)


@pytest.mark.parametrize("colour", C.VIDEO_COLOURS)
def test_only_orange_objects_look_orange(colour):
    assert appearance.looks_orange(_ground_truth("orange")).all()
    assert not appearance.looks_orange(_ground_truth(colour)).any()


def test_a_blank_video_is_not_orange_and_keeps_its_centroid_at_the_centre():
    blank = -np.ones((1, 3, 16, 16, 3), np.float32)
    assert not appearance.looks_orange(blank).any()
    np.testing.assert_allclose(appearance.centroids(blank), 7.5)
    assert appearance.largest_jump(blank)[0] == 0


def test_centroids_follow_a_moving_pixel_exactly():
    video = -np.ones((1, 4, 16, 16, 3), np.float32)
    path = [(2, 3), (3, 4), (3, 4), (7, 4)]
    for t, (r, c) in enumerate(path):
        video[0, t, r, c] = 1.0
    video[0, 2] = -1.0  # an empty frame keeps the previous centroid
    np.testing.assert_allclose(appearance.centroids(video)[0], path)
    assert appearance.largest_jump(video)[0] == pytest.approx(4.0)


def test_ground_truth_moves_smoothly_and_packed_images_do_not():
    videos = make_dataset("digits", frames=8, height=16, width=16, split="test", max_objects=1).batch(0, 64)["video"]
    assert appearance.moves_smoothly(videos).all()
    packs = make_dataset("digits", frames=8, height=16, width=16, split="test", max_objects=1,
                         image_fraction=1.0).batch(0, 64)["video"]
    assert appearance.moves_smoothly(packs).mean() < 0.2


def test_bad_videos_are_named():
    with pytest.raises(ValueError, match=r"expected \(B, F, H, W, 3\)"):
        appearance.looks_orange(np.zeros((8, 16, 16, 3)))
