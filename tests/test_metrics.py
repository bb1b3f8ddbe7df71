"""Toy-domain metrics (chapters 04-09): Fréchet distance closed forms, R-precision and score on hand-made
embeddings, and the shipped toy dual encoder on held-out ground truth."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

from ivlib import metrics
from ivlib.data import make_dataset, resize_video, skip_frames


def _features(mean, cov_root, n=500, seed=0):
    """n samples whose sample mean is exactly `mean` and sample covariance exactly cov_root @ cov_root.T."""
    x = np.random.default_rng(seed).normal(size=(n, len(mean)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # sample covariance = I
    return x @ np.asarray(cov_root).T + mean


def test_frechet_distance_matches_the_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    a, b = _features(mu_a, np.diag(sd_a)), _features(mu_b, np.diag(sd_b), seed=1)
    diagonal = np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2)  # (1 + 0 + 6.25) + (4 + 2.25 + 0) = 13.5
    assert metrics.frechet_distance(a, b) == pytest.approx(diagonal, rel=1e-9)
    assert diagonal == pytest.approx(13.5)
    # full covariances, against the textbook formula with scipy's matrix square root
    root_a = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [-0.3, 0.2, 0.7]])
    root_b = np.array([[2.0, 0.0, 0.0], [-0.4, 0.5, 0.0], [0.1, 0.9, 1.2]])
    a, b = _features(mu_a, root_a, seed=2), _features(mu_b, root_b, seed=3)
    s_a, s_b = root_a @ root_a.T, root_b @ root_b.T
    exact = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(sqrtm(s_a @ s_b)))
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=1e-8)
    assert metrics.frechet_distance(b, a) == pytest.approx(exact, rel=1e-8)  # symmetric


def test_frechet_distance_is_zero_for_identical_features_and_checks_shapes():
    x = np.random.default_rng(0).normal(size=(40, 64))  # fewer samples than dimensions: singular covariance
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(x[:, :1], x[:, :1] + 2.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="feats"):
        metrics.frechet_distance(x, x[:, :3])
    with pytest.raises(ValueError, match="feats"):
        metrics.frechet_distance(x[:1], x)


class FakeEvaluator:
    """Hand-made embeddings: a 'video' is already its (B, F, D) frame embeddings; prompts look up a table."""

    def __init__(self, table):
        self.table = {p: e / np.linalg.norm(e) for p, e in table.items()}

    def frame_embeddings(self, videos):
        videos = np.asarray(videos, np.float64)
        return videos / np.linalg.norm(videos, axis=-1, keepdims=True)

    def text_embeddings(self, prompts):
        return np.stack([self.table[p] for p in prompts])


def _fake(num_prompts=100, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    prompts = [f"prompt {i}" for i in range(num_prompts)]
    return FakeEvaluator(dict(zip(prompts, rng.normal(size=(num_prompts, dim))))), prompts, rng


def test_r_precision_is_one_for_matching_and_chance_for_random_embeddings():
    ev, prompts, rng = _fake()
    truth = ev.text_embeddings(prompts)
    videos = truth[:, None, :] + 0.05 * rng.normal(size=(100, 4, 32))  # 4 frames near their prompt
    assert metrics.r_precision(ev, videos, prompts, candidates=prompts, num_distractors=9) == 1.0
    assert metrics.clip_score(ev, truth[:, None, :].repeat(4, 1), prompts) == pytest.approx(100.0)
    unrelated = rng.normal(size=(400, 4, 32))  # frames that know nothing of their prompt
    labels = [prompts[i % 100] for i in range(400)]
    hit_rate = metrics.r_precision(ev, unrelated, labels, candidates=prompts, num_distractors=9)
    assert abs(hit_rate - 0.1) < 0.03  # chance 1/10; std of the mean over 400 videos ~ 0.015
    assert abs(metrics.clip_score(ev, unrelated, labels)) < 2.0


def test_r_precision_never_draws_a_paraphrase_as_distractor():
    same = ["a red 7 moving left and a big blue circle moving up",
            "a big blue circle moving up and the red digit 7 moving left"]  # same clip, other words and order
    ev, prompts, _ = _fake(20)
    ev.table[same[0]] = ev.table[same[1]] = ev.table[prompts[0]]
    videos = ev.text_embeddings([same[0]])[:, None, :]
    pool = prompts[1:] + same
    assert metrics.meaning(same[0]) == metrics.meaning(same[1]) != metrics.meaning(prompts[0])
    # all 19 other prompts are drawn; an identical-embedding paraphrase among them would tie and miss
    assert metrics.r_precision(ev, videos, [same[0]], candidates=pool, num_distractors=19) == 1.0
    with pytest.raises(ValueError, match="candidates"):
        metrics.r_precision(ev, videos, [same[0]], candidates=pool, num_distractors=20)


@pytest.fixture(scope="module")
def ground_truth():
    """Held-out toy clips (captions never seen in training, held-out handwriting) and a second draw."""
    draw = lambda seed: make_dataset("digits+shapes", frames=8, height=16, width=16, split="test",
                                     seed=seed).batch(0, 256)
    return draw(0), draw(1)


def test_shipped_evaluator_reads_held_out_ground_truth(ground_truth):
    ev = metrics.load_evaluator()
    assert metrics.load_evaluator() is ev  # cached per process
    assert "ivlib train-evaluator" in ev.metadata["command"]
    batch = ground_truth[0]
    videos, prompts = batch["video"][:64], batch["caption"][:64]
    top1 = metrics.r_precision(ev, videos, prompts)
    assert top1 > 0.5  # chance is 0.01
    shuffled = prompts[1:] + prompts[:1]
    assert metrics.clip_score(ev, videos, prompts) > metrics.clip_score(ev, videos, shuffled) + 10.0
    frames = ev.frame_embeddings(videos)
    assert frames.shape == (64, 8, ev.config.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(frames, axis=-1), 1.0, atol=1e-4)


def test_fvd_separates_ground_truth_from_noise_still_and_shuffled_frames(ground_truth):
    ev = metrics.load_evaluator()
    a, b = ground_truth[0]["video"], ground_truth[1]["video"]  # 256 each: FD is biased upwards for few videos
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(size=b.shape), -1, 1).astype(np.float32)
    still = np.repeat(b[:, :1], 8, axis=1)  # right objects, no motion
    shuffled = np.stack([v[rng.permutation(8)] for v in b])  # right frames, incoherent motion
    same = metrics.fvd(ev, a, b)  # 4.75 when the weights were shipped
    assert same < metrics.fvd(ev, a, noise) / 50
    assert same < metrics.fvd(ev, a, still) / 10
    assert same < metrics.fvd(ev, a, shuffled) / 2
    assert metrics.fvd(ev, a, a) == pytest.approx(0.0, abs=1e-3)
    assert metrics.fvd(ev, a, b) == pytest.approx(metrics.fvd(ev, b, a), rel=1e-6)


def test_prepare_brings_cascade_output_to_the_evaluator_input(ground_truth):
    params = ground_truth[0]["params"][:32]
    data = make_dataset("digits+shapes", frames=16, height=32, width=32, split="test")
    big = data.render(params, 16, 32, 32)
    small = metrics.prepare(big)
    np.testing.assert_allclose(small, resize_video(skip_frames(big, 8), 16, 16), atol=1e-6)
    ev = metrics.load_evaluator()
    assert metrics.r_precision(ev, big, [p.caption for p in params]) > 0.5


def test_bad_input_raises_clear_errors(ground_truth, tmp_path):
    ev = metrics.load_evaluator()
    videos, prompts = ground_truth[0]["video"][:4], ground_truth[0]["caption"][:4]
    with pytest.raises(ValueError, match="videos"):
        ev.frame_embeddings(videos[0])  # one video without the batch axis
    with pytest.raises(ValueError, match="frames"):
        ev.video_features(videos[:, :6])
    with pytest.raises(ValueError, match="one prompt per video"):
        metrics.clip_score(ev, videos, prompts[:3])
    with pytest.raises(ValueError, match="one prompt per video"):
        metrics.r_precision(ev, videos, prompts + ["a red 1 moving up"])
    with pytest.raises(ValueError, match="list of str"):
        metrics.clip_score(ev, videos[:1], prompts[0])
    with pytest.raises(FileNotFoundError, match="ivlib train-evaluator"):
        metrics.load_evaluator(tmp_path / "missing.safetensors")


def test_patch_fd_is_zero_for_equal_sets_and_grows_with_noise():
    from ivlib.data import make_dataset
    videos = make_dataset("digits", frames=4, height=16, width=16, split="test", seed=0).batch(0, 16)["video"]
    assert metrics.patch_fd(videos, videos) < 1e-6
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(videos.shape).astype(np.float32)
    d = [metrics.patch_fd(videos, np.clip(videos + s * noise, -1, 1)) for s in (0.05, 0.2, 0.5)]
    assert 0 < d[0] < d[1] < d[2]
    # a blurred copy (box filter) is also told apart from the sharp one
    blur = (videos + np.roll(videos, 1, 2) + np.roll(videos, 1, 3) + np.roll(np.roll(videos, 1, 2), 1, 3)) / 4
    assert metrics.patch_fd(videos, blur) > d[0]
    with pytest.raises(ValueError, match="equal H, W, C"):
        metrics.patch_fd(videos, videos[:, :, :8])


def test_psnr_closed_form():
    a = np.zeros((1, 2, 4, 4, 3), np.float32)
    np.testing.assert_allclose(metrics.psnr(a, a + 0.2), 20.0, rtol=1e-6)  # 10 log10(4 / 0.04); 0.2 in float32
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(a, a[:, :1])
