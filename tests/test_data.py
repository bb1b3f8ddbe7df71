"""Tests for ivlib.data: toy datasets, captions, rendering consistency, transforms, user folders."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ivlib import data
from ivlib.data import captions as C
from ivlib.data import clips, sprites
from ivlib.data.captions import ObjectSpec


def _one_object_clip(spec, seed=0, duration=8.0):
    return clips.sample_clip(np.random.default_rng(seed), [spec], duration=duration)


# ---------------------------------------------------------------- datasets: determinism, shapes, range


@pytest.mark.parametrize("name", ["digits", "shapes", "digits+shapes", "images", "joint"])
def test_batch_is_deterministic_typed_and_in_range(name):
    a = data.make_dataset(name, frames=4, height=8, width=8, seed=3).batch(2, 6)
    b = data.make_dataset(name, frames=4, height=8, width=8, seed=3).batch(2, 6)
    np.testing.assert_array_equal(a["video"], b["video"])
    assert a["caption"] == b["caption"] and a["params"] == b["params"]
    assert a["video"].shape == (6, 4, 8, 8, 3) and a["video"].dtype == np.float32
    assert a["is_image"].shape == (6,) and a["is_image"].dtype == np.bool_
    assert a["video"].min() >= -1.0 and a["video"].max() <= 1.0
    assert a["video"].min() == -1.0  # black background
    assert all(isinstance(c, str) and c for c in a["caption"])


def test_different_index_seed_or_split_gives_different_batches():
    ds = data.make_dataset("digits+shapes", frames=4, height=8, width=8, seed=0)
    base = ds.batch(0, 8)
    assert not np.array_equal(base["video"], ds.batch(1, 8)["video"])
    other = data.make_dataset("digits+shapes", frames=4, height=8, width=8, seed=1).batch(0, 8)
    assert not np.array_equal(base["video"], other["video"])
    test = data.make_dataset("digits+shapes", frames=4, height=8, width=8, split="test").batch(0, 8)
    assert not set(base["caption"]) & set(test["caption"])


def test_sample_does_not_depend_on_batch_size_and_getitem_matches():
    ds = data.make_dataset("shapes", frames=2, height=8, width=8)
    big = ds.batch(1, 6)  # samples 6..11
    small = ds.batch(3, 2)  # samples 6, 7
    np.testing.assert_array_equal(big["video"][:2], small["video"])
    item = ds[7]
    np.testing.assert_array_equal(item["video"], big["video"][1])
    assert item["caption"] == big["caption"][1]


def test_iterator_yields_consecutive_batches():
    ds = data.make_dataset("digits", frames=2, height=8, width=8, batch_size=3)
    it = iter(ds)
    first, second = next(it), next(it)
    assert first["caption"] == ds.batch(0)["caption"] and second["caption"] == ds.batch(1)["caption"]


def test_unknown_name_option_and_bad_shape_raise():
    with pytest.raises(ValueError, match="digits\\+shapes"):
        data.make_dataset("mnist", frames=8, height=16, width=16)
    with pytest.raises(ValueError, match="colour_count"):
        data.make_dataset("digits", frames=8, height=16, width=16, colour_count=3)
    with pytest.raises(ValueError, match="height"):
        data.make_dataset("digits", frames=8, height=0, width=16)
    with pytest.raises(ValueError, match="split"):
        data.make_dataset("digits", frames=8, height=16, width=16, split="val")
    with pytest.raises(ValueError, match="path="):
        data.make_dataset("folder", frames=8, height=16, width=16)


# ---------------------------------------------------------------- captions


def _captions(name, n=400, **kw):
    ds = data.make_dataset(name, frames=2, height=4, width=4, **kw)
    return [ds.params(i) for i in range(n)]


def test_captions_use_only_vocabulary_and_parse_back_to_params():
    vocabulary = set(data.VOCABULARY)
    assert len(vocabulary) == len(data.VOCABULARY)
    for p in _captions("joint", 300):
        assert set(p.caption.split()) <= vocabulary, p.caption
        specs, image = C.parse_caption(p.caption)
        clip = p.images[0] if isinstance(p, clips.ImagePack) else p
        assert specs == clip.specs and image == p.is_image


def test_caption_grammar_examples():
    red7 = ObjectSpec("digit", "7", "red", motion="bounce_vertical")
    blue1 = ObjectSpec("digit", "1", "blue", motion="right")
    assert C.caption([red7, blue1]) == "a red 7 bouncing up and down and a blue 1 moving right"
    assert C.caption([red7], variants=(1,)) == "the red digit 7 bouncing up and down"
    circle = ObjectSpec("shape", "circle", "orange", "small", "outlined")
    assert C.caption([circle], image=True) == "a small outlined orange circle"
    assert C.parse_caption("an orange 3 and a big red square") == (
        (ObjectSpec("digit", "3", "orange"), ObjectSpec("shape", "square", "red", "big")), True)
    for bad in ["a red 7 moving sideways", "a purple 7 moving left", "a small red 7 moving left",
                "a red 7 moving left and a blue 1", "the red digit circle"]:
        with pytest.raises(ValueError, match="caption"):
            C.parse_caption(bad)


def test_image_only_words_never_in_videos_but_in_images():
    assert set(data.IMAGE_ONLY_WORDS) <= set(data.VOCABULARY)
    for name in ["digits", "shapes", "digits+shapes", "joint"]:
        for p in _captions(name, 300):
            if not p.is_image:
                assert not set(p.caption.split()) & set(data.IMAGE_ONLY_WORDS), p.caption
    image_words = [set(p.caption.split()) for p in _captions("images", 200)]
    for word in data.IMAGE_ONLY_WORDS:
        assert any(word in words for words in image_words)
    # an image-only attribute cannot even be asked of a video clip's sampler
    assert all(not s.image_only for p in _captions("joint", 300) if not p.is_image for s in p.specs)


def test_test_split_holds_out_captions_and_handwriting():
    train = _captions("digits", 600)
    test = _captions("digits", 200, split="test")
    assert not {p.caption for p in train} & {p.caption for p in test}
    assert all(C.in_test_split(C.caption_key(p.specs), 0.1) for p in test)
    train_sprites = {t.sprite for p in train for t in p.things}
    test_sprites = {t.sprite for p in test for t in p.things}
    assert not train_sprites & test_sprites
    assert all(s % sprites.HELD_OUT_SPRITE_EVERY == 0 for s in test_sprites)
    # the assignment is the stable hash, the same in every process
    assert C.in_test_split("a red 7 moving left", 0.1) == C.in_test_split("a red 7 moving left", 0.1)
    fraction = np.mean([C.in_test_split(f"caption {i}", 0.1) for i in range(4000)])
    assert 0.08 < fraction < 0.12


# ---------------------------------------------------------------- rendering: pixels match captions


def test_colour_and_motion_in_pixels_match_the_caption():
    for motion, axis, sign in [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)]:
        spec = ObjectSpec("shape", "square", "blue", "small", motion=motion)
        clip = _one_object_clip(spec, seed=5)
        video = data.render([clip], 8, 32, 32)[0]
        ink = (video + 1).sum(-1)  # (F, H, W) brightness above background
        ys, xs = np.mgrid[:32, :32]
        centroid = [np.array([(ink[f] * xs).sum(), (ink[f] * ys).sum()]) / ink[f].sum() for f in range(8)]
        moved = np.array(centroid[-1]) - np.array(centroid[0])
        assert sign * moved[axis] > 2.0 and abs(moved[1 - axis]) < 1e-3, (motion, moved)
        # colour: where the square is, the pixel is the caption's colour
        peak = video[0][ink[0] == ink[0].max()][0]
        np.testing.assert_allclose((peak + 1) / 2, C.COLOURS["blue"], atol=1e-5)


def test_objects_stay_inside_and_bouncing_turns():
    rng = np.random.default_rng(0)
    for motion in C.MOTIONS:
        for k in range(20):
            spec = ObjectSpec("digit", str(k % 10), "red", motion=motion)
            thing = clips.sample_thing(rng, spec, 8.0, "all")
            centre = clips.centres([thing], clips.frame_times(64, 8.0))[:, 0]
            half = thing.scale / 2
            assert (centre >= half - 1e-12).all() and (centre <= 1 - half + 1e-12).all()
            step = np.diff(centre, axis=0)
            if motion.startswith("bounce"):
                axis = 0 if motion == "bounce_horizontal" else 1
                assert (step[:, axis] > 0).any() and (step[:, axis] < 0).any()  # at least one turn
            elif motion != "still":  # moving clips never reach a wall: constant velocity
                np.testing.assert_allclose(step - step[0], 0.0, atol=1e-12)


def test_frame_skipping_16_frame_render_equals_8_frame_render():
    params = data.make_dataset("digits+shapes", frames=8, height=16, width=16).batch(0, 12)["params"]
    video16 = data.render(params, 16, 16, 16)
    video8 = data.render(params, 8, 16, 16)
    np.testing.assert_array_equal(data.skip_frames(video16, 8), video8)
    np.testing.assert_array_equal(data.skip_frames(video16, 8, stride=2), video8)


def test_box_downsampled_32_render_equals_16_render_and_resize_is_close():
    ds = data.make_dataset("digits+shapes", frames=4, height=16, width=16, max_objects=1)
    batch = ds.batch(0, 8)
    video32 = ds.render(batch["params"], 4, 32, 32)
    box = video32.reshape(8, 4, 16, 2, 16, 2, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(box, batch["video"], atol=1e-5)  # exact area resampling
    resized = data.resize_video(video32, 16, 16)
    assert np.abs(resized - batch["video"]).mean() < 0.03  # bilinear antialiasing blurs edges a bit more


def test_image_packs_hold_independent_images_of_one_caption():
    ds = data.make_dataset("images", frames=4, height=16, width=16)
    batch = ds.batch(0, 5)
    assert batch["is_image"].all()
    for pack, video in zip(batch["params"], batch["video"]):
        assert isinstance(pack, data.ImagePack) and len(pack.images) == 4
        assert {image.caption for image in pack.images} == {pack.caption}
        assert not np.array_equal(video[0], video[1])  # independent draws, not a still video
    # rendering a pack at fewer frames is frame skipping; more frames than images is an error
    np.testing.assert_array_equal(ds.render(batch["params"], 2, 16, 16), data.skip_frames(batch["video"], 2))
    with pytest.raises(ValueError, match="frames"):
        ds.render(batch["params"], 8, 16, 16)
    single = data.make_dataset("images", frames=1, height=8, width=8).batch(0, 3)
    assert single["video"].shape == (3, 1, 8, 8, 3)


def test_outlined_shape_is_hollow_and_sprites_are_alpha():
    plain = sprites.shape_texture("circle", "plain")
    outlined = sprites.shape_texture("circle", "outlined")
    centre = sprites.TEXELS // 2
    assert plain[centre, centre] == 1.0 and outlined[centre, centre] == 0.0
    assert 0 < outlined.sum() < plain.sum()
    assert 0.0 <= sprites.digit_texture(0).min() and sprites.digit_texture(0).max() <= 1.0
    # the circle's area (radius 0.45 of the box) within anti-aliasing error
    np.testing.assert_allclose(plain.mean(), np.pi * 0.45**2, rtol=2e-3)


def test_clip_for_caption_renders_what_it_says():
    clip = data.clip_for_caption("the green digit 4 moving down", seed=1)
    assert clip.caption == "a green 4 moving down" and clip.things[0].vy > 0
    with pytest.raises(ValueError, match="either every object"):
        data.clip_for_caption("a green 4 moving down and a big red circle")


# ---------------------------------------------------------------- transforms


def test_resize_video_matches_jax_antialiased_bilinear():
    video = np.random.default_rng(0).uniform(-1, 1, (2, 3, 12, 20, 3)).astype(np.float32)
    for height, width in [(5, 7), (24, 40), (12, 9)]:
        expected = jax.image.resize(jnp.asarray(video), (2, 3, height, width, 3), "linear", antialias=True)
        np.testing.assert_allclose(data.resize_video(video, height, width), np.asarray(expected), atol=1e-5)
    constant = np.full((1, 1, 9, 9, 3), 0.25, np.float32)
    np.testing.assert_allclose(data.resize_video(constant, 4, 13), 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="height"):
        data.resize_video(video, 0, 4)


def test_skip_frames_picks_evenly_spaced_frames_and_checks_lengths():
    video = np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1, 1) * np.ones((1, 16, 2, 2, 3), np.float32)
    np.testing.assert_array_equal(data.skip_frames(video, 4)[0, :, 0, 0, 0], [0, 4, 8, 12])
    np.testing.assert_array_equal(data.skip_frames(video, 3, stride=5, start=1)[0, :, 0, 0, 0], [1, 6, 11])
    assert data.skip_frames(video[0], 8).shape == (8, 2, 2, 3)
    with pytest.raises(ValueError, match="divisor"):
        data.skip_frames(video, 5)
    with pytest.raises(ValueError, match="need"):
        data.skip_frames(video, 4, stride=6)


# ---------------------------------------------------------------- the user's video folder


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    import mediapy

    data.ensure_ffmpeg()
    folder = tmp_path_factory.mktemp("videos")
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    for name, rgb in colours.items():
        video = np.zeros((12, 24, 32, 3), np.uint8)
        video[:] = rgb
        if name == "red":  # a grey ramp instead: frame k has level 20 k, so frame selection is visible
            video[:] = (np.arange(12) * 20)[:, None, None, None]
        mediapy.write_video(folder / f"{name}.mp4", video, fps=12)
    (folder / "captions.csv").write_text('file,caption\nred.mp4,a fading video\ngreen.mp4,"green, green"\n'
                                         "blue.mp4,a blue video\n")
    (folder / "captions.jsonl").write_text("\n".join(json.dumps({"file": f"{n}.mp4", "caption": f"all {n}"})
                                                     for n in colours) + "\n")
    return folder


def test_folder_reads_mp4s_with_csv_and_jsonl_captions(video_folder):
    ds = data.load_video_folder(video_folder, "captions.csv", frames=4, height=8, width=8, stride=2)
    assert len(ds) == 3
    batch = ds.batch(0, 6)
    assert batch["video"].shape == (6, 4, 8, 8, 3) and batch["video"].dtype == np.float32
    assert sorted(batch["caption"][:3]) == ["a blue video", "a fading video", "green, green"]  # one epoch
    assert not batch["is_image"].any()
    for caption, video, p in zip(batch["caption"], batch["video"], batch["params"]):
        if caption == "green, green":
            np.testing.assert_allclose(video.mean(axis=(0, 1, 2)), [-1, 1, -1], atol=0.05)
        if caption == "a fading video":  # grey level 20 * frame index, frames `stride` apart
            expected = (np.arange(p.start, p.start + 8, 2) * 20) / 127.5 - 1
            np.testing.assert_allclose(video.mean(axis=(1, 2, 3)), expected, atol=0.05)
    assert ds.render(batch["params"], 8, 4, 4).shape == (6, 8, 4, 4, 3)
    with pytest.raises(ValueError, match="divisor"):
        ds.render(batch["params"], 3, 4, 4)
    jsonl = data.make_dataset("folder", frames=2, height=4, width=4, split="all", path=video_folder,
                              captions="captions.jsonl")
    assert set(jsonl.batch(0, 3)["caption"]) == {"all red", "all green", "all blue"}


def test_folder_errors_name_the_file(video_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        data.load_video_folder(video_folder, "nothere.csv")
    missing = tmp_path / "missing.csv"
    missing.write_text(f"file,caption\n{video_folder / 'red.mp4'},ok\n{video_folder / 'gone.mp4'},gone\n")
    with pytest.raises(FileNotFoundError, match=re.escape("gone.mp4")):
        data.load_video_folder(video_folder, missing)
    cases = {
        "columns.csv": ("name,text\nred.mp4,a\n", "columns.csv.*'file' and 'caption'"),
        "empty.csv": ("file,caption\nred.mp4,  \n", "empty.csv:2.*empty or missing caption"),
        "broken.jsonl": ('{"file": "red.mp4", "caption": "a"}\n{"file": \n', "broken.jsonl:2.*not valid JSON"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            data.load_video_folder(video_folder, tmp_path / name)
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video")
    (tmp_path / "bad.csv").write_text("file,caption\nbad.mp4,a broken file\n")
    with pytest.raises(ValueError, match="bad.mp4"):
        data.load_video_folder(tmp_path, "bad.csv").batch(0, 1)
    with pytest.raises(ValueError, match=r"\.mp4' has 12 frames"):
        data.load_video_folder(video_folder, "captions.csv", frames=8, stride=2).batch(0, 3)
