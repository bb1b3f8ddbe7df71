"""What a frozen text encoder's embeddings make easy to read: linear probes and nearest captions (chapter 04).

A diffusion model reads its text through a few small layers (a pooled vector, cross-attention), so what
matters about a frozen encoder is what those layers can get out of it cheaply. Two measurements:

* `linear_probe`: fit a ridge-regression classifier from the *pooled* embedding (the masked mean over
  tokens, what the U-Net's pooled path sees) to one attribute of the caption — digit, colour or motion —
  on few training captions, and report its accuracy on other captions.
* `nearest_captions`: the captions whose pooled embeddings are closest (cosine) to a query's.
"""

from __future__ import annotations

import numpy as np

PROBE_ATTRIBUTES = ("digit", "colour", "motion")


def one_digit_captions(count: int, split: str = "train", seed: int = 0) -> list:
    """`count` one-digit video captions of the toy grammar (both phrasings, e.g. "the red digit 7 moving left")."""
    from ivlib.data import make_dataset

    data = make_dataset("digits", frames=1, height=16, width=16, split=split, seed=seed, max_objects=1)
    return [data.params(i).caption for i in range(count)]


def pooled(encoder, prompts) -> np.ndarray:
    """(N, dim): the masked mean of an encoder's token embeddings, per prompt."""
    emb, mask = encoder.encode(list(prompts))
    emb, mask = np.asarray(emb), np.asarray(mask, np.float32)[..., None]
    return (emb * mask).sum(1) / np.maximum(mask.sum(1), 1.0)


def _labels(prompts, attribute):
    from ivlib.data import parse_caption

    specs = [parse_caption(p)[0][0] for p in prompts]
    return [{"digit": s.label, "colour": s.colour, "motion": s.motion}[attribute] for s in specs]


def linear_probe(encoder, attribute: str, train_prompts, test_prompts, ridge: float = 1e-2) -> float:
    """Held-out accuracy of a ridge-regression classifier from pooled embeddings to `attribute` (in [0, 1])."""
    if attribute not in PROBE_ATTRIBUTES:
        raise ValueError(f"attribute must be one of {PROBE_ATTRIBUTES}, got {attribute!r}")
    y_train, y_test = _labels(train_prompts, attribute), _labels(test_prompts, attribute)
    classes = sorted(set(y_train) | set(y_test))
    x_train, x_test = pooled(encoder, train_prompts), pooled(encoder, test_prompts)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    x_train, x_test = (np.concatenate([x, np.ones((len(x), 1))], 1) for x in (x_train, x_test))
    targets = np.eye(len(classes))[[classes.index(y) for y in y_train]]
    weights = np.linalg.solve(x_train.T @ x_train + ridge * len(x_train) * np.eye(x_train.shape[1]), x_train.T @ targets)
    predicted = [classes[i] for i in np.argmax(x_test @ weights, 1)]
    return float(np.mean([p == y for p, y in zip(predicted, y_test)]))


def probe_table(encoders: dict, num_train: int = 100, num_test: int = 500, seed: int = 0) -> dict:
    """{encoder name: {attribute: held-out probe accuracy}} with `num_train` training captions (train split)
    and `num_test` held-out captions (test split): how readily each encoder's pooled embedding tells an attribute."""
    train, test = one_digit_captions(num_train, "train", seed), one_digit_captions(num_test, "test", seed)
    return {name: {a: linear_probe(enc, a, train, test) for a in PROBE_ATTRIBUTES} for name, enc in encoders.items()}


def nearest_captions(encoder, query: str, candidates, k: int = 5) -> list:
    """The k candidates closest to `query` by cosine similarity of pooled embeddings: [(caption, cosine), ...]."""
    candidates = [c for c in dict.fromkeys(candidates) if c != query]
    vectors = pooled(encoder, [query] + candidates)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = vectors[1:] @ vectors[0]
    order = np.argsort(-cosine)[:k]
    return [(candidates[i], float(cosine[i])) for i in order]
