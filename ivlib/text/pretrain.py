"""Pretraining the toy T5 encoder on the toy caption language (chapter 04).

Imagen Video's text encoder is a *pretrained* T5-XXL, frozen (paper §2.1): its embeddings already
carry what words mean and how they bind before any diffusion model reads them. The toy cascade's
encoder gets the same treatment at toy scale: the NNX T5 encoder of `ivlib.text.t5` is pretrained
here on captions of the toy grammar, then frozen and shipped (`ivlib/assets/text/toy_t5.safetensors`).

The objective is masked-token prediction (BERT's; Devlin et al. 2019), not T5's span corruption
(Raffel et al. 2020), and that is our choice: span corruption trains an encoder *and* a decoder, and
part of what it learns lives in the decoder, which is thrown away. Masked-token prediction reads its
answers straight off the encoder's outputs (through the tied token embedding), so everything learned
stays in what we keep. Toy captions are a few words long, so spans would be one or two tokens anyway.

What it can learn from a grammar whose attributes are drawn independently: not that "7" follows
"red" (it doesn't, more than any digit), but which slot a position is (colour, digit, shape, motion),
which object of "... and ..." a word belongs to, and a representation in which each word's identity
survives its context. Chapter 04 measures what that buys.

    ivlib pretrain-text --steps 3000 --out ivlib/assets/text/toy_t5.safetensors
"""

from __future__ import annotations

import json
import pathlib
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

MASK_RATE = 0.3  # fraction of caption tokens chosen for prediction (our choice; BERT: 0.15 of long texts)
CORPUS_DATASET = "joint"  # videos and still images, digits and shapes, one or two objects


def caption_corpus(count: int, seed: int = 0) -> list:
    """`count` captions of the toy language from the training split (held-out captions never appear)."""
    from ivlib.data import make_dataset

    data = make_dataset(CORPUS_DATASET, frames=1, height=16, width=16, split="train", seed=seed)
    return [data.params(i).caption for i in range(count)]


def mask_tokens(rng: np.random.Generator, input_ids, mask, mask_id: int, vocab: int, rate: float = MASK_RATE):
    """BERT's corruption: choose `rate` of the tokens (at least one per caption, never EOS); of those,
    80 % become `mask_id`, 10 % a random word, 10 % stay. Returns (corrupted ids, chosen (B, L) bool)."""
    eos = np.zeros_like(mask)
    eos[np.arange(len(mask)), mask.sum(1) - 1] = True
    candidates = mask & ~eos
    scores = np.where(candidates, rng.random(mask.shape), 2.0)
    first = scores == scores.min(1, keepdims=True)  # one guaranteed choice per caption
    chosen = candidates & ((scores < rate) | first)
    action = rng.random(mask.shape)
    corrupted = np.where(chosen & (action < 0.8), mask_id, input_ids)
    random_words = rng.integers(3, vocab, mask.shape)
    corrupted = np.where(chosen & (action >= 0.8) & (action < 0.9), random_words, corrupted)
    return corrupted.astype(np.int32), chosen


def masked_token_loss(encoder, input_ids, mask, targets, chosen):
    """Cross-entropy of the original tokens at the chosen positions, logits = output · token embedding."""
    hidden = encoder(input_ids, mask)  # (B, L, d)
    logits = hidden @ encoder.shared.embedding[...].T
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    hits = (jnp.argmax(logits, -1) == targets) & chosen
    return jnp.sum(loss * chosen) / jnp.sum(chosen), jnp.sum(hits) / jnp.sum(chosen)


def pretrain_toy_t5(steps: int = 3000, batch_size: int = 256, learning_rate: float = 3e-3, corpus_size: int = 50_000,
                    seed: int = 0, progress: bool = True, log=None):
    """Pretrain the toy T5 encoder (from the random encoder's weights) by masked-token prediction.

    Returns (encoder, history) where history holds {"step", "loss", "accuracy"} rows every 100 steps.
    The vocabulary's last id (never produced by the toy tokenizer) serves as the mask token.
    """
    from ivlib.text.encoder import DEFAULT_BIAS_STD, DEFAULT_CONFIG, DEFAULT_SEED, RANDOM_NAME, text_encoder
    from ivlib.text.t5 import random_t5_encoder

    for name, value in (("steps", steps), ("batch_size", batch_size), ("corpus_size", corpus_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    start = text_encoder(RANDOM_NAME)
    # a fresh copy of the random encoder's weights (nnx.merge(*nnx.split(m)) would share m's Variables)
    encoder = random_t5_encoder(DEFAULT_CONFIG, DEFAULT_SEED, DEFAULT_BIAS_STD)
    vocab = encoder.config.vocab_size
    mask_id = vocab - 1
    if len(start.tokenizer) > mask_id:
        raise ValueError(f"the tokenizer uses every id up to {len(start.tokenizer)}; no free id for the mask token")
    corpus = caption_corpus(corpus_size, seed)
    ids, masks = start.tokenize(corpus)
    rng = np.random.default_rng(seed)

    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(200, steps // 10 + 1), steps)
    optimizer = nnx.Optimizer(encoder, optax.adamw(schedule, weight_decay=0.01), wrt=nnx.Param)

    @nnx.jit
    def step(encoder, optimizer, input_ids, mask, targets, chosen):
        grad_fn = nnx.value_and_grad(masked_token_loss, has_aux=True)
        (loss, accuracy), grads = grad_fn(encoder, input_ids, mask, targets, chosen)
        optimizer.update(encoder, grads)
        return loss, accuracy

    history, t0 = [], time.perf_counter()
    for i in range(steps):
        rows = rng.integers(0, len(ids), batch_size)
        corrupted, chosen = mask_tokens(rng, ids[rows], masks[rows], mask_id, len(start.tokenizer))
        loss, accuracy = step(encoder, optimizer, corrupted, masks[rows], ids[rows], chosen)
        if (i + 1) % 100 == 0 or i + 1 == steps:
            row = {"step": i + 1, "loss": float(loss), "accuracy": float(accuracy),
                   "seconds": round(time.perf_counter() - t0, 1)}
            history.append(row)
            if log is not None:
                log(json.dumps(row))
            elif progress:
                print(json.dumps(row), flush=True)
    return encoder, history


REFERENCE_PROMPTS = ("a red 7 moving left", "the blue digit 3 standing still", "a small green circle and a white 1")
REFERENCE_TOKENS = 4  # the first tokens of each reference prompt are stored with the weights (a load check)


def reference_embeddings(encoder) -> list:
    """The first REFERENCE_TOKENS token embeddings of REFERENCE_PROMPTS, as nested lists (rounded to 1e-6)."""
    from ivlib.text.encoder import TextEncoder, toy_tokenizer

    emb, _ = TextEncoder(toy_tokenizer(), encoder, 32, name="reference").encode(list(REFERENCE_PROMPTS))
    return np.round(np.asarray(emb)[:, :REFERENCE_TOKENS], 6).tolist()


def save_toy_t5(encoder, path, metadata: dict) -> pathlib.Path:
    """Write the encoder's parameters (float32) with `metadata` (the command, the history) to `path`,
    adding the reference embeddings that `tests/test_text.py` checks a load against."""
    from ivlib.weights import save_params

    metadata = {**metadata, "reference_prompts": list(REFERENCE_PROMPTS), "reference_embeddings": reference_embeddings(encoder)}
    return save_params(path, nnx.state(encoder, nnx.Param), metadata=metadata, dtype=np.float32)
