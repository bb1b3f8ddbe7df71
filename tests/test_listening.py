"""The prompt-word loss gap (`ivlib.listening`): zero for a model that ignores a word, positive for one that reads it."""

import jax.numpy as jnp
import numpy as np
import pytest

from ivlib.data import parse_caption
from ivlib.diffusion import prediction_target
from ivlib.listening import SWAPS, held_out_clips, loss_gaps, swap_caption


def test_swap_changes_one_attribute_and_keeps_the_phrasing():
    assert swap_caption("a red 7 moving left", "digit") == "a red 2 moving left"
    assert swap_caption("the red digit 7 moving left", "digit") == "the red digit 2 moving left"
    for caption in ("a red 7 moving left", "the white digit 0 standing still", "a blue 3 bouncing up and down"):
        spec = parse_caption(caption)[0][0]
        for attribute in SWAPS:
            new = parse_caption(swap_caption(caption, attribute))[0][0]
            changed = {a for a, key in (("digit", "label"), ("colour", "colour"), ("motion", "motion"))
                       if getattr(new, key) != getattr(spec, key)}
            assert changed == {attribute}, (caption, attribute, new)
    with pytest.raises(ValueError, match="one-digit video caption"):
        swap_caption("a small red circle moving left", "digit")
    with pytest.raises(ValueError, match="attribute"):
        swap_caption("a red 7 moving left", "size")


def _digit_reader(videos, prompts, noise):
    """A denoiser that predicts the exact v target when its text names the clip's digit, and 0 otherwise;
    its 'embedding' holds only the digit, so colour and motion words cannot matter to it."""
    truth = jnp.array([int(parse_caption(p)[0][0].label) for p in prompts])

    def embed(captions):
        digits = np.array([int(parse_caption(c)[0][0].label) for c in captions], np.float32)
        return jnp.asarray(digits)[:, None, None], jnp.ones((len(captions), 1), bool)

    def model(z, logsnr, emb, mask):
        right = (emb[:, 0, 0] == truth)[:, None, None, None, None]
        return jnp.where(right, prediction_target(videos, noise, logsnr, "v"), 0.0)

    return model, embed


def test_gap_is_positive_only_for_the_word_the_model_reads():
    import jax

    videos, prompts = held_out_clips(8, frames=2, size=8)
    noise = jax.random.normal(jax.random.PRNGKey(3), videos.shape)
    model, embed = _digit_reader(jnp.asarray(videos), prompts, noise)
    gaps = loss_gaps(model, embed, videos, prompts, logsnrs=(-2.0, 1.0), seed=3)
    for lam in (-2.0, 1.0):
        assert gaps["true"][lam] == pytest.approx(0.0, abs=1e-9)  # the exact target when the digit is right
        assert gaps["digit"][lam] > 0.1  # the loss of predicting 0 instead
        assert gaps["colour"][lam] == 0.0 and gaps["motion"][lam] == 0.0


def test_gap_is_zero_for_a_model_that_ignores_its_text():
    videos, prompts = held_out_clips(4, frames=2, size=8)
    model = lambda z, logsnr, emb, mask: 0.5 * z
    embed = lambda captions: (jnp.ones((len(captions), 1, 1)), jnp.ones((len(captions), 1), bool))
    gaps = loss_gaps(model, embed, videos, prompts, logsnrs=(0.0,))
    assert all(gaps[a][0.0] == 0.0 for a in SWAPS) and gaps["true"][0.0] > 0


def test_direction_swaps_reverse_or_turn_the_motion_and_nothing_else():
    from ivlib.listening import straight_line_clips, swap_direction

    assert swap_direction("a red 7 moving left", "opposite") == "a red 7 moving right"
    assert swap_direction("the blue digit 2 moving up", "opposite") == "the blue digit 2 moving down"
    assert swap_direction("a red 7 moving left", "perpendicular") == "a red 7 moving up"
    with pytest.raises(ValueError, match="moving left, right, up or down"):
        swap_direction("a red 7 standing still", "opposite")
    with pytest.raises(ValueError, match="kind"):
        swap_direction("a red 7 moving left", "diagonal")
    videos, prompts = straight_line_clips(6, frames=2, size=8)
    assert videos.shape == (6, 2, 8, 8, 3)
    assert all(parse_caption(p)[0][0].motion in ("left", "right", "up", "down") for p in prompts)


def test_a_model_that_knows_the_axis_but_not_the_sign_has_no_opposite_gap():
    """The exact v target when the caption's axis is the clip's, 0 otherwise: blind to left vs right."""
    import jax

    from ivlib.listening import direction_gaps, straight_line_clips

    videos, prompts = straight_line_clips(8, frames=2, size=8)
    noise = jax.random.normal(jax.random.PRNGKey(0), videos.shape)
    axis = lambda caption: float(parse_caption(caption)[0][0].motion in ("up", "down"))
    truth = jnp.array([axis(p) for p in prompts])
    embed = lambda captions: (jnp.array([axis(c) for c in captions])[:, None, None], jnp.ones((len(captions), 1), bool))

    def model(z, logsnr, emb, mask):
        right = (emb[:, 0, 0] == truth)[:, None, None, None, None]
        return jnp.where(right, prediction_target(jnp.asarray(videos), noise, logsnr, "v"), 0.0)

    gaps = direction_gaps(model, embed, videos, prompts, logsnrs=(0.0,), seed=0)
    assert gaps["true"][0.0] == pytest.approx(0.0, abs=1e-9) and gaps["opposite"][0.0] == 0.0
    assert gaps["perpendicular"][0.0] > 0.1
