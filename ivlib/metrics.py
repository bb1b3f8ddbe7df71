"""Evaluation on the toy domain: video-text score, R-precision and Fréchet video distance (chapters 04-09).

Table 1 of the paper reports a *CLIP score* ("we take the average score over all frames") and a
*CLIP R-Precision* (Park et al., 2021; "top-1 accuracy (R = 1), treating the frames of a video
sample as images sharing the same text label"), and Fig. 11 an FVD, always beside the ground-truth
row. ivlib computes the same three numbers with its own **toy-domain video-text dual encoder**
(`ivlib.nn.dual_encoder`), trained contrastively on ground-truth toy videos. It is not OpenAI's
CLIP and not I3D: its numbers compare models of this toy domain with each other and with ground
truth, never with the paper's values. The shipped weights come from

    ivlib train-evaluator --workdir runs/evaluator --steps 2000

(i.e. `train_evaluator("runs/evaluator", steps=2000)`), then
`cp runs/evaluator/evaluator.safetensors ivlib/assets/weights/`. The file's metadata records
the command and the held-out numbers it reached.

    >>> ev = load_evaluator()
    >>> evaluate(videos, prompts, reference_videos=ground_truth)   # {"clip_score", "r_precision", "chance", "fvd"}
    >>> ground_truth_row()                                          # the same on held-out ground truth
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import numpy as np
from flax import nnx

from ivlib.nn.dual_encoder import DualEncoder, DualEncoderConfig, contrastive_loss, l2_normalize

WEIGHTS_PATH = pathlib.Path(__file__).parent / "assets" / "weights" / "evaluator.safetensors"
TRAIN_COMMAND = "ivlib train-evaluator --workdir runs/evaluator --steps 2000"
DATASET = "digits+shapes"  # the evaluator's training data (train split, the dataset's default options)
TEXT_LENGTH = 32  # tokens of the frozen toy T5; the longest toy caption has 18 (our choice)
NAME = "ivlib toy video-text dual encoder (not OpenAI CLIP, not I3D)"


# ---------------------------------------------------------------- the evaluator
def prepare(videos, frames=8, height=16, width=16) -> np.ndarray:
    """Bring videos to the evaluator's input (chapter 05): (B, F', H', W', 3) -> (B, frames, height, width, 3).

    Frames are skipped evenly (F' must be a multiple of `frames`, e.g. 16 -> 8) and space is resized with
    the data pipeline's antialiased bilinear resize; values are clipped to [-1, 1].
    """
    from ivlib.data import resize_video, skip_frames

    videos = np.asarray(videos, np.float32)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.shape[0] < 1:
        raise ValueError(f"videos: expected (batch, frames, height, width, 3) in [-1, 1], got shape {videos.shape}")
    if videos.shape[1] % frames:
        raise ValueError(f"videos: the evaluator needs a multiple of {frames} frames (skipped down to {frames}), "
                         f"got {videos.shape[1]}")
    if not np.all(np.isfinite(videos)):
        raise ValueError("videos: contain NaN or infinite values")
    videos = skip_frames(videos, frames) if videos.shape[1] != frames else videos
    if videos.shape[2:4] != (height, width):
        videos = resize_video(videos, height, width)
    return np.clip(videos, -1.0, 1.0)


def _check_prompts(prompts, count=None, name="prompts") -> list:
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"{name}: expected a non-empty list of str, got {type(prompts).__name__}")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{name}: every entry must be a str")
    if count is not None and len(prompts) != count:
        raise ValueError(f"{name}: got {len(prompts)} prompts for {count} videos; expected one prompt per video")
    return list(prompts)


def _in_chunks(fn, arrays, chunk):
    """fn over the leading axis in chunks padded to a power of two (few shapes, few compilations)."""
    out = []
    for start in range(0, len(arrays[0]), chunk):
        parts = [a[start:start + chunk] for a in arrays]
        size = min(chunk, 1 << (len(parts[0]) - 1).bit_length())
        padded = [np.pad(a, ((0, size - len(a)),) + ((0, 0),) * (a.ndim - 1)) for a in parts]
        out.append(np.asarray(fn(*padded))[:len(parts[0])])
    return np.concatenate(out)


class Evaluator:
    """A trained toy dual encoder, numpy in and numpy out (chapters 04-09); get the shipped one with
    `load_evaluator()`. Videos of any multiple of 8 frames and any size are `prepare`d first."""

    def __init__(self, model: DualEncoder, metadata=None, chunk=64):
        from ivlib.text import RANDOM_NAME, EmbeddingCache, text_encoder

        self.config, self.metadata, self.chunk = model.config, dict(metadata or {}), chunk
        self.text_cache = EmbeddingCache(text_encoder(RANDOM_NAME, TEXT_LENGTH))
        graphdef, state = nnx.split(model)
        video = jax.jit(lambda state, v: nnx.merge(graphdef, state).video(v))
        text = jax.jit(lambda state, e, m: l2_normalize(nnx.merge(graphdef, state).text(e, m)))
        self._video, self._text = functools.partial(video, state), functools.partial(text, state)

    def _frame_features(self, videos) -> np.ndarray:
        c = self.config
        return _in_chunks(self._video, [prepare(videos, c.frames, c.height, c.width)], self.chunk)

    def video_features(self, videos) -> np.ndarray:
        """(B, F, H, W, 3) -> (B, D): the per-frame features before normalisation (norm ~20 on ground
        truth), averaged over frames: the clip-level features of `fvd`."""
        return self._frame_features(videos).mean(axis=1)

    def frame_embeddings(self, videos) -> np.ndarray:
        """(B, F, H, W, 3) -> (B, 8, D) unit vectors, one per frame (each has seen the whole clip's motion)."""
        return np.asarray(l2_normalize(self._frame_features(videos)))

    def text_embeddings(self, prompts) -> np.ndarray:
        """list of N str -> (N, D) unit vectors (frozen toy T5 tokens, cached, then the text tower)."""
        emb, mask = self.text_cache.get(_check_prompts(prompts))
        return _in_chunks(self._text, [np.asarray(emb), np.asarray(mask)], 4 * self.chunk)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Evaluator:
    from ivlib.weights import load_params, read_metadata

    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"no evaluator weights at {path}: train them with `{TRAIN_COMMAND}` and copy "
                                f"runs/evaluator/evaluator.safetensors to {WEIGHTS_PATH}")
    meta = read_metadata(path)
    if "config" not in meta:
        raise ValueError(f"{path} is not an evaluator weight file (no 'config' in its metadata)")
    config = DualEncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DualEncoder(config, rngs=nnx.Rngs(0))))
    evaluator = Evaluator(nnx.merge(graphdef, load_params(path, abstract)), meta)
    if meta.get("text_encoder") != evaluator.text_cache.encoder.name:  # its text tower reads that encoder only
        raise ValueError(f"{path} was trained on text encoder {meta.get('text_encoder')!r}, ivlib now has "
                         f"{evaluator.text_cache.encoder.name!r}: retrain it with `{TRAIN_COMMAND}`")
    return evaluator


def load_evaluator(path=None) -> Evaluator:
    """The shipped toy evaluator (chapter 04), loaded once per process and path.

    Raises FileNotFoundError naming the training command when the weights are missing, and ValueError
    when they were trained on another frozen text encoder than its own: the random toy T5 ("toy-t5-random"),
    kept apart from the models' pretrained one so that retraining those never changes the yardstick.
    """
    return _load(str(pathlib.Path(path or WEIGHTS_PATH).absolute()))


# ---------------------------------------------------------------- the metrics
def clip_score(evaluator, videos, prompts) -> float:
    """Frame-averaged video-text score (chapter 08; the paper's Table 1 "CLIP score", toy encoder).

    100 x the cosine between each frame's embedding and its prompt's embedding, averaged over all
    frames and videos (the paper's 0-100 scale; no clipping at 0, our choice). videos: (B, F, H, W, 3).
    """
    prompts = _check_prompts(prompts, len(videos))
    frames = evaluator.frame_embeddings(videos)
    return float(100.0 * np.mean(np.einsum("bfd,bd->bf", frames, evaluator.text_embeddings(prompts))))


def meaning(prompt: str):
    """What a toy caption says, independent of phrasing and object order; other text maps to itself."""
    from ivlib.data import caption, parse_caption

    try:
        specs, image = parse_caption(prompt)
    except ValueError:
        return prompt.strip()
    return (image,) + tuple(sorted(caption([s], image) for s in specs))


@functools.lru_cache(maxsize=4)
def test_prompts(count: int = 2048, seed: int = 0) -> tuple:
    """The distinct captions of the first `count` held-out samples of the toy test split (R-precision's pool)."""
    from ivlib.data import make_dataset

    data = make_dataset(DATASET, frames=8, height=16, width=16, split="test", seed=seed)
    return tuple(dict.fromkeys(data.params(i).caption for i in range(count)))


def r_precision(evaluator, videos, prompts, candidates=None, num_distractors=99, seed=0) -> float:
    """CLIP R-precision with R = 1 (chapter 08; Park et al. 2021, the paper's Table 1), toy encoder.

    For every video, `num_distractors` prompts are drawn (without replacement, `seed`) from
    `candidates` (default: `test_prompts()`) among those that do not mean the same as its prompt;
    each *frame* then counts as a hit when its true prompt scores strictly highest. Returns the hit
    rate over all frames of all videos, in [0, 1]; chance is 1 / (num_distractors + 1).
    """
    prompts = _check_prompts(prompts, len(videos))
    pool = list(dict.fromkeys(_check_prompts(list(candidates) if candidates is not None else list(test_prompts()),
                                             name="candidates")))
    if isinstance(num_distractors, bool) or not isinstance(num_distractors, int) or num_distractors < 1:
        raise ValueError(f"num_distractors: expected a positive int, got {num_distractors!r}")
    frames = evaluator.frame_embeddings(videos)
    pool_emb, true_emb = evaluator.text_embeddings(pool), evaluator.text_embeddings(prompts)
    pool_meaning = [meaning(p) for p in pool]
    rng, hits = np.random.default_rng(seed), []
    for i, prompt in enumerate(prompts):
        key = meaning(prompt)
        allowed = np.flatnonzero([m != key for m in pool_meaning])
        if len(allowed) < num_distractors:
            raise ValueError(f"candidates: only {len(allowed)} differ from prompt {prompt!r}, "
                             f"need num_distractors={num_distractors}")
        distractors = pool_emb[rng.choice(allowed, num_distractors, replace=False)]
        hits.append(frames[i] @ true_emb[i] > (frames[i] @ distractors.T).max(axis=1))
    return float(np.mean(hits))


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (chapter 08; FID/FVD's formula).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)). feats: (N, D) and (M, D), N, M >= 2.
    The trace of the matrix square root is computed stably as sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))),
    a symmetric PSD matrix similar to S_a S_b, in float64.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"feats_a, feats_b: expected (N, D) and (M, D) with N, M >= 2, got {a.shape} and {b.shape}")
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a), 0, None)).sum()
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    return float(max(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def fvd(evaluator, videos_a, videos_b) -> float:
    """Fréchet video distance on the toy encoder's pooled video features (chapter 08; not I3D's FVD).

    Biased upwards for few videos: compare only numbers computed from equally many videos.
    """
    return frechet_distance(evaluator.video_features(videos_a), evaluator.video_features(videos_b))


def psnr(videos, reference) -> float:
    """Peak signal-to-noise ratio in dB between videos in [-1, 1] (peak-to-peak 2) and their references
    of the same shape (chapters 05–06): 10 log10(4 / MSE)."""
    a, b = np.asarray(videos, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"videos and reference must have the same shape, got {a.shape} and {b.shape}")
    return float(10 * np.log10(4.0 / np.mean((a - b) ** 2)))


def patch_fd(videos_a, videos_b, patch=4, per_video=256, seed=0) -> float:
    """Fréchet distance between the distributions of `patch` x `patch` pixel patches of two sets of
    videos, at their full resolution (chapter 06; our measure, not the paper's).

    The toy evaluator (and so `fvd`) sees videos at 8x16x16; this looks at fine detail — blur,
    grain, ringing — that a super-resolution stage adds or removes. `per_video` patches are drawn
    from random frames and positions of each video (the same positions for both sets when their
    shapes agree). videos: (N, F, H, W, C) in [-1, 1], N >= 1, both the same H, W, C.
    """
    a, b = np.asarray(videos_a, np.float32), np.asarray(videos_b, np.float32)
    if a.ndim != 5 or b.ndim != 5 or a.shape[2:] != b.shape[2:]:
        raise ValueError(f"videos_a, videos_b: expected (N, F, H, W, C) with equal H, W, C, got {a.shape} and {b.shape}")
    if not 1 <= patch <= min(a.shape[2], a.shape[3]):
        raise ValueError(f"patch must lie in [1, {min(a.shape[2], a.shape[3])}], got {patch}")

    def patches(v):
        rng = np.random.default_rng(seed)
        n, f, h, w, _ = v.shape
        i = np.repeat(np.arange(n), per_video)
        t = rng.integers(0, f, n * per_video)
        y, x = rng.integers(0, h - patch + 1, n * per_video), rng.integers(0, w - patch + 1, n * per_video)
        dy, dx = np.meshgrid(np.arange(patch), np.arange(patch), indexing="ij")
        out = v[i[:, None, None], t[:, None, None], y[:, None, None] + dy, x[:, None, None] + dx]
        return out.reshape(len(i), -1)

    return frechet_distance(patches(a), patches(b))


def evaluate(videos, prompts, reference_videos=None, evaluator=None, num_distractors=99, seed=0) -> dict:
    """All toy metrics of a set of (generated) videos (chapter 08): the paper's Table 1 row, toy encoder.

    Returns {"clip_score" (0-100), "r_precision" (0-1), "chance", "num_videos", "evaluator"} and
    "fvd" against `reference_videos` when given.
    """
    evaluator = load_evaluator() if evaluator is None else evaluator
    row = {"clip_score": clip_score(evaluator, videos, prompts),
           "r_precision": r_precision(evaluator, videos, prompts, num_distractors=num_distractors, seed=seed),
           "chance": 1.0 / (num_distractors + 1), "num_videos": len(videos),
           "evaluator": NAME if isinstance(evaluator, Evaluator) else type(evaluator).__name__}
    if reference_videos is not None:
        row["fvd"] = fvd(evaluator, videos, reference_videos)
    return row


def ground_truth_row(num_videos=256, seed=0, frames=8, height=16, width=16, evaluator=None) -> dict:
    """The ground-truth row (chapter 08; Table 1's last row): held-out toy videos and their captions,
    FVD against a second, independent held-out draw (dataset seed `seed + 1`) of as many videos.

    With the shipped weights and the defaults: clip_score 92.96, r_precision 0.973 (chance 0.01),
    fvd 4.75; the same at the cascade's 16x32x32: 92.72, 0.962, 4.71.
    """
    from ivlib.data import make_dataset

    draw = lambda s: make_dataset(DATASET, frames=frames, height=height, width=width, split="test",
                                  seed=s).batch(0, num_videos)
    batch = draw(seed)
    return evaluate(batch["video"], batch["caption"], draw(seed + 1)["video"], evaluator, seed=seed)


# ---------------------------------------------------------------- training
def train_evaluator(workdir, steps=2000, batch_size=64, seed=0, learning_rate=1e-3, warmup_steps=100,
                    ema_decay=0.995, checkpoint_every=250, log_every=25, heldout_videos=256,
                    progress=True) -> pathlib.Path:
    """Train the toy dual encoder contrastively on ground truth (chapter 04); returns the weight file.

    Data: "digits+shapes" train split at 8x16x16, batch k = dataset batch k. Loss: `contrastive_loss`
    (symmetric InfoNCE, captions of equal meaning masked as false negatives). Adam with warm-up and
    clipping (`ivlib.train`), EMA of the weights; the same loop as the cascade's stages (`ivlib.loop.fit`:
    exact resume from <workdir>/checkpoints, the NaN guard, a progress bar). Writes
    <workdir>/metrics.jsonl and, at the end, <workdir>/evaluator.safetensors
    (EMA weights, float16) whose metadata holds the command and the held-out ground-truth row
    (`ground_truth_row` on `heldout_videos` test videos).
    """
    from ivlib.data import make_dataset
    from ivlib.loop import apply_gradients, check_workdir, fit, init_state
    from ivlib.text import RANDOM_NAME, EmbeddingCache, text_encoder
    from ivlib.train import default_optimizer
    from ivlib.weights import save_params

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    path = check_workdir(workdir)
    config = DualEncoderConfig()
    data = make_dataset(DATASET, frames=config.frames, height=config.height, width=config.width, seed=seed)
    text_cache = EmbeddingCache(text_encoder(RANDOM_NAME, TEXT_LENGTH))
    graphdef, params = nnx.split(DualEncoder(config, rngs=nnx.Rngs(seed)))
    tx = default_optimizer(learning_rate, warmup_steps)

    def batch_fn(step):
        batch = data.batch(step, batch_size)
        keys = [meaning(c) for c in batch["caption"]]
        text, mask = text_cache.get(batch["caption"])
        return {"video": batch["video"], "text": text, "text_mask": mask,
                "same": np.array([[a == b for b in keys] for a in keys])}

    @jax.jit
    def train_step(state, batch, key):  # contrastive training draws no random numbers: fit passes key=None
        loss_fn = lambda p: contrastive_loss(nnx.merge(graphdef, p), batch["video"], batch["text"],
                                             batch["text_mask"], batch["same"])
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        return apply_gradients(state, grads, tx, ema_decay), {"loss": loss, "accuracy": accuracy}

    state = fit(train_step, init_state(params, tx), batch_fn, workdir=path, steps=steps,
                checkpoint_every=checkpoint_every, keep_checkpoints=2, log_every=log_every, progress=progress,
                desc="train evaluator")
    row = ground_truth_row(heldout_videos, evaluator=Evaluator(nnx.merge(graphdef, state["ema"])))
    command = f"ivlib train-evaluator --workdir {workdir} --steps {steps}" + (
        f" --batch-size {batch_size}" if batch_size != 64 else "") + (f" --seed {seed}" if seed else "")
    meta = {"name": NAME, "command": command, "config": dataclasses.asdict(config), "dataset": DATASET,
            "text_encoder": text_cache.encoder.name, "max_text_length": TEXT_LENGTH,
            "steps": int(state["step"]), "batch_size": batch_size, "seed": seed, "heldout_ground_truth": row}
    (path / "heldout.json").write_text(json.dumps(meta, indent=1))
    return save_params(path / "evaluator.safetensors", state["ema"], metadata=meta)
