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
