"""The cascade: stages sampled one after another, text -> base -> SR -> ... -> video (chapters 05–08).

`sample_stage` samples one stage (a `Stage`, its `ModelDef` and parameters) with classifier-free
guidance, thresholding and, for super-resolution stages, the previous stage's video as conditioning
(`ivlib.conditioning`); `Cascade` chains them. The pieces a cascade is made of live below this module:
the stage schema in `ivlib.stage`, SR conditioning and augmentation in `ivlib.conditioning`, the
threshold registry in `ivlib.guidance`, loading trained weights in `ivlib.pretrained`. Their names are
re-exported here because the chapters import them from `ivlib.cascade`.
"""

from __future__ import annotations

import math
import pathlib
import numbers
import time
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ivlib.conditioning import (augment_condition, augment_for_sampling, augment_for_training, condition_video,
                                sampling_condition, upsample_spatial, upsample_temporal)
from ivlib.diffusion import SAMPLERS, idle_steps, sample, x_from_prediction
from ivlib.guidance import THRESHOLDS, guided_output, oscillating_weights, threshold_fn
from ivlib.pretrained import distilled_weights_path, load_stage, shipped_stages, trained_text
from ivlib.stage import Stage, check_chain

__all__ = [  # this module's own names, then those re-exported for the chapters (see the docstring)
    "Cascade", "SamplerSettings", "sample_stage", "stage_denoiser", "stage_settings",
    "Stage", "check_chain", "THRESHOLDS", "load_stage", "augment_condition", "augment_for_sampling",
    "augment_for_training", "condition_video", "sampling_condition", "upsample_spatial", "upsample_temporal",
]


# [start-sample-stage]
def stage_denoiser(stage: Stage, model, text=None, text_mask=None, weights=None, cond=None, cond_logsnr=None):
    """The x prediction a stage is sampled with (chapters 02, 04, 08): denoise(z, logsnr, step).

    The network predicts `stage.unet.target` (v, ε or x: the one value training used); with `text`,
    classifier-free guidance at weight weights[step] combines it with the null prompt's in one pass
    (eq. 5), or a guided-distilled student is told the weight (chapter 09). The output is decoded to x̂
    with `x_from_prediction`.
    """
    extra = {} if cond is None else {"cond": cond, "cond_logsnr": cond_logsnr}

    def denoise(z, logsnr, step):
        if text is None:
            out = model(z, logsnr, **extra)
        else:  # guidance with per-step weights (constant or oscillating): one batched pass, or a student told w
            out = guided_output(model, z, logsnr, text, text_mask, weights[step], **extra)
        return x_from_prediction(z, out, logsnr, stage.unet.target)

    return denoise


@partial(jax.jit, static_argnames=("stage", "graphdef", "shape", "num_steps", "sampler", "gamma", "threshold"))
def _sample_stage(stage, graphdef, params, rest, text, text_mask, cond, cond_logsnr, key, weights,
                  shape, num_steps, sampler, gamma, threshold):
    denoise = stage_denoiser(stage, nnx.merge(graphdef, params, rest), text, text_mask, weights, cond, cond_logsnr)
    return sample(denoise, shape, key, num_steps, sampler, gamma, x_transform=threshold_fn(threshold), step_aware=True)
# [end-sample-stage]


def sample_stage(stage: Stage, model_def, params, key, *, text=None, text_mask=None, low_res=None, batch_size=None,
                 num_steps=64, sampler="ancestral", gamma=0.3, guidance=0.0, threshold="static", aug_snr=5.0):
    """Sample one stage of the cascade (chapters 04–08).

    text, text_mask: (B, L, D), (B, L) cached T5 embeddings (None for an unconditional model).
    low_res: the previous stage's video for SR stages; it is upsampled (`condition_video`) and
    noised at the fixed augmentation SNR `aug_snr` (paper §2.5: "such as 3 or 5"). guidance: a
    weight w or a (num_steps,) array of per-step weights (`oscillating_weights`). threshold:
    'dynamic', 'static' or 'none', applied to every x prediction. Returns (B, F, H, W, C).
    """
    if stage.kind == "base":
        if low_res is not None:
            raise ValueError(f"stage {stage.name!r} is a base model: low_res must be None")
        b = batch_size or (text.shape[0] if text is not None else None)
        if b is None:
            raise ValueError("give batch_size (or text) so the base model knows how many videos to make")
        shape, cond, cond_logsnr = (b, stage.frames, stage.height, stage.width, stage.unet.channels), None, None
    else:
        if low_res is None:
            raise ValueError(f"stage {stage.name!r} is a {stage.kind.upper()} stage: it needs low_res, the previous stage's video")
        cond, cond_logsnr, key = sampling_condition(stage, low_res, key, aug_snr)
        shape = cond.shape
    weights = jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), (num_steps,))
    if text is not None and text.shape[0] != shape[0]:
        raise ValueError(f"text has batch size {text.shape[0]} but {shape[0]} videos are sampled")
    return _sample_stage(stage, model_def.graphdef, params, model_def.rest, text, text_mask, cond, cond_logsnr, key,
                         weights, shape=tuple(shape), num_steps=num_steps, sampler=sampler, gamma=float(gamma),
                         threshold=threshold)


@dataclass(frozen=True)
class SamplerSettings:
    """How one stage is sampled (chapters 08–09). `oscillate=(high, low, constant_steps)` replaces the
    constant `guidance` weight by oscillating guidance (paper §2.6.2)."""

    num_steps: int = 64
    sampler: str = "ancestral"
    gamma: float = 0.3
    guidance: float = 0.0
    oscillate: tuple[float, float, int] | None = None
    threshold: str = "static"  # the toy's best (chapter 08 sweep); Fig. 14 of the paper uses static clipping too
    aug_snr: float = 5.0

    def __post_init__(self):
        """ValueError for settings no sampler can run; a one-line warning for legal ones that surprise."""
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, numbers.Integral) \
                or not 1 <= self.num_steps < 2**31:
            raise ValueError(f"num_steps must be a positive integer (below 2**31), got {self.num_steps!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {THRESHOLDS}, got {self.threshold!r}")
        if not 0.0 <= _number("gamma", self.gamma) <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        weights = [("guidance", self.guidance)]
        if self.oscillate is not None:
            if len(self.oscillate) != 3:
                raise ValueError(f"oscillate must be (high, low, constant_steps), got {self.oscillate!r}")
            high, low, constant_steps = self.oscillate
            weights += [("oscillating guidance's high weight", high), ("oscillating guidance's low weight", low)]
            if isinstance(constant_steps, bool) or not isinstance(constant_steps, numbers.Integral) or constant_steps < 0:
                raise ValueError(f"oscillate's constant_steps must be an integer >= 0, got {constant_steps!r}")
            if constant_steps >= self.num_steps:
                _warn(f"oscillating guidance never oscillates: its {constant_steps} constant steps cover all "
                      f"{self.num_steps} steps")
        for name, w in weights:
            if not math.isfinite(w := _number(name, w)):
                raise ValueError(f"{name} must be a finite number, got {w!r}")
            if w < 0:
                _warn(f"{name} w = {w:g} < 0 weakens the prompt: (1 + w) · conditional − w · unconditional "
                      "ignores it at w = -1 and steers away from it below (w = 0 is the plain conditional model)")
        if math.isnan(aug_snr := _number("aug_snr", self.aug_snr)):
            raise ValueError(f"aug_snr must be a number (inf: no augmentation), got {self.aug_snr!r}")
        if aug_snr <= 0:
            _warn(f"aug_snr = {aug_snr:g} <= 0: super-resolution stages get pure noise in place of the "
                  "previous stage's video (SNR 0, the end of the schedule), so they ignore it")
        if self.num_steps > 10**6 and (idle := idle_steps(int(self.num_steps))):  # a million: far beyond any use
            _warn(f"{self.num_steps} steps are more than the float32 noise schedule resolves: "
                  f"{idle} of them go between equal log-SNRs and do nothing")

    def sample_kwargs(self) -> dict:
        """The keyword arguments of `sample_stage` these settings stand for."""
        return dict(num_steps=self.num_steps, sampler=self.sampler, gamma=self.gamma, guidance=self.weights(),
                    threshold=self.threshold, aug_snr=self.aug_snr)

    def weights(self):
        """The guidance weight, or (num_steps,) per-step weights for oscillating guidance."""
        if self.oscillate is None:
            return self.guidance
        high, low, constant_steps = self.oscillate
        return oscillating_weights(self.num_steps, high, low, int(constant_steps))


def _number(name, value) -> float:
    """float(value), or a ValueError naming the setting: a bool or a string is not a number here."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _warn(message):
    warnings.warn(message, UserWarning, stacklevel=4)


def stage_settings(stages, base: SamplerSettings, sr: SamplerSettings) -> dict:
    """{stage name: settings}: `base` for the base model, `sr` for every super-resolution stage (chapter 05)."""
    return {s.name: (base if s.kind == "base" else sr) for s in stages}


class Cascade:
    """A chain of stages with their trained parameters (chapter 05): text -> base -> SR -> ... -> video."""

    def __init__(self, stages, model_defs, params, text_encoder=None):
        """text_encoder: one `TextEncoder` for every stage (the paper's frozen T5), or a sequence with one
        per stage, each the encoder that stage was trained on."""
        stages = tuple(stages)
        check_chain(stages)
        if not len(stages) == len(model_defs) == len(params):
            raise ValueError("stages, model_defs and params must have one entry per stage")
        self.stages, self.model_defs, self.params = stages, tuple(model_defs), tuple(params)
        encoders = tuple(text_encoder) if isinstance(text_encoder, (list, tuple)) else (text_encoder,) * len(stages)
        if len(encoders) != len(stages):
            raise ValueError(f"text_encoder: expected one encoder or one per stage ({len(stages)}), got {len(encoders)}")
        self.text_encoders = encoders
        self._caches = {}

    @property
    def text_encoder(self):
        """The base stage's text encoder (every stage's, when they share one)."""
        return self.text_encoders[0]

    @classmethod
    def pretrained(cls, config="toy", stages=None, distilled=False, weights=None):
        """The shipped cascade of `config` (weights in ivlib/assets/weights) (chapter 05).

        stages: names of the stages to run; None takes every stage whose weights ship, from the
        base model up to the first stage without weights (printing which ones are left out). Each
        stage reads the frozen text encoder its weights were trained on, at their text length (`trained_text`).
        distilled: each stage's distilled student (chapter 09), told w and sampled in a few steps.
        weights: {stage name: weight file} to run instead of the shipped weights of those stages (an earlier
        checkpoint, an arm of an experiment, a run of your own; chapters 04, 07, 09).
        """
        from ivlib.text import text_encoder

        weights = {name: pathlib.Path(path) for name, path in (weights or {}).items()}
        chosen = shipped_stages(config, stages)
        unknown = sorted(set(weights) - {s.name for s in chosen})
        if unknown:
            raise ValueError(f"weights: {unknown} are not stages of this cascade ({[s.name for s in chosen]})")
        loaded, texts = [], []
        for s in chosen:
            path = weights.get(s.name)
            loaded.append(load_stage(config, s.name, path=path, distilled=distilled and path is None))
            student = distilled_weights_path(config, s.name) if distilled else None
            texts.append(trained_text(config, s.name, path or student))
        return cls([s for s, _, _ in loaded], [m for _, m, _ in loaded], [p for _, _, p in loaded],
                   [text_encoder(name, length) for name, length in texts])

    def embed(self, prompts, stage=None):
        """Cached text embeddings (B, L, D), mask (B, L) for a list of prompts, from the text encoder of
        `stage` (a stage name; None: the base stage) (chapter 04)."""
        from ivlib.text import EmbeddingCache

        names = [s.name for s in self.stages]
        if stage is not None and stage not in names:
            raise ValueError(f"stage: expected one of {names}, got {stage!r}")
        encoder = self.text_encoders[names.index(stage) if stage is not None else 0]
        if id(encoder) not in self._caches:
            self._caches[id(encoder)] = EmbeddingCache(encoder)
        return self._caches[id(encoder)].get(list(prompts))

    def check_prompts(self, prompts, hint="pass allow_unknown_words=True to sample them anyway") -> list:
        """`prompts` as a list, after every stage's text encoder has checked their words (chapter 04): a
        ValueError names each word a toy encoder does not know (`TextEncoder.check_words`)."""
        if isinstance(prompts, str) or not len(prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        prompts = list(prompts)
        for encoder in dict.fromkeys(e for e in self.text_encoders if e is not None):
            encoder.check_words(prompts, hint)
        return prompts

    def sample(self, prompts, key, settings=None, allow_unknown_words=False):
        """Run every stage for `prompts`; returns the list of each stage's videos (the last is the final video).

        settings: one SamplerSettings for all stages, or a dict stage name -> SamplerSettings.
        allow_unknown_words: sample prompts with words the toy text encoder does not know, rather than raise
        a ValueError naming them (`check_prompts`), to see what the model makes of them.
        """
        if isinstance(prompts, str) or not len(prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if not allow_unknown_words:
            self.check_prompts(prompts)
        videos, video = [], None
        for i, (stage, model_def, params) in enumerate(zip(self.stages, self.model_defs, self.params)):
            text, mask = self.embed(prompts, stage.name)
            s = settings.get(stage.name, SamplerSettings()) if isinstance(settings, dict) else (settings or SamplerSettings())
            video = sample_stage(stage, model_def, params, jax.random.fold_in(key, i), text=text, text_mask=mask,
                                 low_res=video, batch_size=len(prompts), **s.sample_kwargs())
            videos.append(video)
        return videos

    def sample_final(self, prompts, key, settings=None, batch_size=32, allow_unknown_words=False, seconds=None):
        """The final videos for `prompts` as one numpy array, `batch_size` prompts at a time; the batch
        starting at prompt i uses the key fold_in(key, i), so equal keys give equal videos whatever else
        changes (chapters 05, 08). seconds: a list that gets each batch's wall-clock seconds (the first
        batch's include compiling the samplers)."""
        if not allow_unknown_words:
            self.check_prompts(prompts)  # every prompt before the first batch is sampled
        batches = []
        for i in range(0, len(prompts), batch_size):
            start = time.perf_counter()
            batches.append(np.asarray(self.sample(prompts[i:i + batch_size], jax.random.fold_in(key, i), settings,
                                                  allow_unknown_words=True)[-1]))
            if seconds is not None:
                seconds.append(time.perf_counter() - start)
        return np.concatenate(batches)
