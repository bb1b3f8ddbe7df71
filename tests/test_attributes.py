"""The per-attribute scorer (chapter 04): right on ground truth, near chance on noise, clear errors."""

import numpy as np
import pytest

from ivlib.attributes import attribute_accuracy, labels_of, one_digit_prompts
from ivlib.data import make_dataset


@pytest.fixture(scope="module")
def held_out():
    return make_dataset("digits", frames=8, height=16, width=16, split="test", seed=3, max_objects=1).batch(0, 256)


def test_right_on_held_out_ground_truth(held_out):
    accuracy = attribute_accuracy(held_out["video"], held_out["caption"])
    assert min(accuracy.values()) >= 0.95, accuracy


def test_right_at_the_cascade_resolution():
    batch = make_dataset("digits", frames=16, height=32, width=32, split="test", seed=4, max_objects=1).batch(0, 128)
    assert min(attribute_accuracy(batch["video"], batch["caption"]).values()) >= 0.9


def test_near_chance_on_noise(held_out):
    noise = np.random.default_rng(0).uniform(-1, 1, held_out["video"].shape).astype(np.float32)
    accuracy = attribute_accuracy(noise, held_out["caption"])
    # chance: 1/10 (digit), 1/7 (colour, motion); a constant answer scores its class's frequency
    assert accuracy["digit"] < 0.25 and accuracy["colour"] < 0.3 and accuracy["motion"] < 0.3, accuracy


def test_labels_and_bad_prompts():
    labels = labels_of(["a red 7 moving left", "the white digit 0 standing still"])
    assert labels["digit"].tolist() == [7, 0]
    assert one_digit_prompts(["a red 7 moving left"])
    assert not one_digit_prompts(["a big red circle moving left"])
    with pytest.raises(ValueError, match="one-digit video captions"):
        labels_of(["a big red circle moving left"])
    with pytest.raises(ValueError, match="one caption per video"):
        attribute_accuracy(np.zeros((2, 8, 16, 16, 3), np.float32), ["a red 7 moving left"])
