"""The pretrained toy T5 (chapter 04): it loads, gives the embeddings recorded with its weights, and its
masked-token objective is what the docstring says."""

import numpy as np
import pytest

from ivlib.text import PRETRAINED_NAME, RANDOM_NAME, default_text_encoder, text_encoder
from ivlib.text.encoder import PRETRAINED_FILE
from ivlib.text.pretrain import REFERENCE_TOKENS, mask_tokens, reference_embeddings
from ivlib.weights import read_metadata


def test_shipped_weights_give_the_recorded_embeddings():
    meta = read_metadata(PRETRAINED_FILE)
    assert meta["command"].startswith("ivlib pretrain-text")
    encoder = text_encoder(PRETRAINED_NAME)
    emb, mask = encoder.encode(meta["reference_prompts"])
    np.testing.assert_allclose(np.asarray(emb)[:, :REFERENCE_TOKENS], meta["reference_embeddings"], atol=2e-5)
    assert np.asarray(mask).any(axis=1).all()


def test_pretrained_differs_from_random_and_learned_the_objective():
    meta = read_metadata(PRETRAINED_FILE)
    pretrained, random = text_encoder(PRETRAINED_NAME), text_encoder(RANDOM_NAME)
    assert pretrained.name != random.name  # embedding caches can never mix them up
    a = np.asarray(reference_embeddings(pretrained.encoder))
    b = np.asarray(reference_embeddings(random.encoder))
    assert np.abs(a - b).max() > 0.1
    # a random guess over ~300 tokens is right 0.3 % of the time; grammar words alone make up over half
    assert meta["history"][-1]["accuracy"] > 0.5


def test_unknown_encoder_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown text encoder 'toy-t5-xxl'.*toy-t5-random"):
        text_encoder("toy-t5-xxl")


def test_mask_tokens_follows_bert():
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(10, 20, dtype=np.int32), (4000, 1))
    mask = np.ones_like(ids, bool)
    mask[:, 8:] = False  # 7 words + EOS at position 7, then padding
    ids[:, 7] = 1
    corrupted, chosen = mask_tokens(rng, ids, mask, mask_id=319, vocab=300, rate=0.3)
    assert not chosen[:, 7:].any()  # never EOS or padding
    assert chosen.any(axis=1).all()  # at least one per caption
    assert abs(chosen[:, :7].mean() - 0.3) < 0.05  # the rate, plus the guaranteed one
    picked = corrupted[chosen]
    assert abs(np.mean(picked == 319) - 0.8) < 0.02  # 80 % masked
    assert abs(np.mean(picked == ids[chosen]) - 0.1) < 0.02  # ~10 % kept (a random word rarely equals it)
    np.testing.assert_array_equal(corrupted[~chosen], ids[~chosen])


def test_loading_the_pretrained_encoder_leaves_the_random_one_alone():
    random_before = np.asarray(reference_embeddings(text_encoder(RANDOM_NAME).encoder))
    text_encoder(PRETRAINED_NAME)
    np.testing.assert_array_equal(np.asarray(reference_embeddings(text_encoder(RANDOM_NAME).encoder)), random_before)


def test_the_toy_cascade_reads_the_random_encoder():
    # chapter 04's ablation: the masked-token-pretrained encoder slows the base model down (see DEFAULT_NAME)
    assert default_text_encoder() is text_encoder(RANDOM_NAME)
