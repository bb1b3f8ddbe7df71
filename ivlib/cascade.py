"""Stages of the cascade and how a super-resolution stage sees its input (chapters 05–06; paper §2.2–2.5).

A stage is data: which kind it is (base, spatial or temporal super-resolution), the video it takes
and the video it makes (frames × height × width), and its Video U-Net. SR stages condition on the
previous stage's video, upsampled to their own shape and concatenated to z_t channel-wise (SR3 /
Palette, paper §2.3), after noise conditioning augmentation (§2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ivlib.diffusion import diffuse, sample, x_from_prediction
from ivlib.guidance import classifier_free_prediction
from ivlib.schedules import LOGSNR_MAX, LOGSNR_MIN, cosine_logsnr
from ivlib.nn.unet import UNetConfig

KINDS = ("base", "ssr", "tsr")
TEMPORAL_UPSAMPLING = ("repeat", "blank")


@dataclass(frozen=True)
class Stage:
    """One model of the cascade (chapter 05).

    The output shape is the U-Net's (frames, height, width); `in_*` is the shape of the video the
    stage conditions on (ignored for the base model). `fps` is the frame rate of the output in the
    paper's pipeline (Fig. 6). `temporal_upsampling` says how a TSR stage stretches its input to its
    own frame count before concatenation: repeat each frame, or put blank (zero) frames in between.
    `train_crop` (height, width): a fully convolutional stage is trained on random crops of this size.
    """

    name: str
    kind: str
    unet: UNetConfig
    in_frames: int = 0
    in_height: int = 0
    in_width: int = 0
    fps: float = 0.0
    temporal_upsampling: str = "repeat"
    train_crop: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.temporal_upsampling not in TEMPORAL_UPSAMPLING:
            raise ValueError(f"stage {self.name!r}: temporal_upsampling must be one of {TEMPORAL_UPSAMPLING}")
        if self.kind == "base":
            if self.unet.cond_channels:
                raise ValueError(f"stage {self.name!r}: a base model takes no conditioning video (cond_channels=0)")
            return
        if self.unet.cond_channels != self.unet.channels:
            raise ValueError(f"stage {self.name!r}: an SR stage needs cond_channels == channels ({self.unet.channels})")
        if self.kind == "ssr" and (self.in_frames != self.frames or self.in_height > self.height or self.in_width > self.width):
            raise ValueError(f"stage {self.name!r}: a spatial SR stage keeps frames and does not shrink; "
                             f"input {self.input_shape} -> output {self.output_shape}")
        if self.kind == "tsr" and ((self.in_height, self.in_width) != (self.height, self.width)
                                   or self.in_frames < 1 or self.frames % self.in_frames):
            raise ValueError(f"stage {self.name!r}: a temporal SR stage keeps height x width and multiplies frames; "
                             f"input {self.input_shape} -> output {self.output_shape}")

    @property
    def frames(self) -> int:
        return self.unet.frames

    @property
    def height(self) -> int:
        return self.unet.height

    @property
    def width(self) -> int:
        return self.unet.width

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_frames, self.in_height, self.in_width)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)


# [start-upsample]
def upsample_spatial(video, height, width):
    """Bilinear spatial resizing of (B, F, h, w, C) to (B, F, height, width, C) (paper §2.3)."""
    b, f, _, _, c = video.shape
    return jax.image.resize(video, (b, f, height, width, c), method="bilinear", antialias=True)


def upsample_temporal(video, frames, mode="repeat"):
    """Stretch (B, f, H, W, C) to `frames` frames (paper §2.3): repeat every frame, or keep the
    input frames at their times and fill the new ones with blank (zero) frames."""
    f = video.shape[1]
    if frames % f:
        raise ValueError(f"frames ({frames}) must be a multiple of the input's frame count ({f})")
    factor = frames // f
    if mode == "repeat":
        return jnp.repeat(video, factor, axis=1)
    if mode == "blank":
        blank = jnp.zeros((video.shape[0], f, factor - 1) + video.shape[2:], video.dtype)
        return jnp.concatenate([video[:, :, None], blank], axis=2).reshape((video.shape[0], frames) + video.shape[2:])
    raise ValueError(f"mode must be one of {TEMPORAL_UPSAMPLING}, got {mode!r}")
# [end-upsample]


def condition_video(stage: Stage, video):
    """The previous stage's video (B, in_frames, in_height, in_width, C) as this stage's conditioning
    input: upsampled to the stage's own (frames, height, width) (chapter 05). For a fully
    convolutional SSR stage any input size works; the output is `factor` times larger."""
    if stage.kind == "base":
        raise ValueError(f"stage {stage.name!r} is a base model: it has no conditioning video")
    b, f, h, w, _ = video.shape
    if stage.kind == "tsr":
        if (h, w) != (stage.height, stage.width) and not stage.unet.fully_convolutional:
            raise ValueError(f"stage {stage.name!r} expects input video of height x width {stage.height}x{stage.width}, got {h}x{w}")
        return upsample_temporal(video, f * (stage.frames // stage.in_frames), stage.temporal_upsampling)
    scale_h, scale_w = stage.height // stage.in_height, stage.width // stage.in_width
    return upsample_spatial(video, h * scale_h, w * scale_w)


# [start-augment]
def augment_condition(cond, cond_logsnr, noise):
    """Noise conditioning augmentation (paper §2.5; chapter 06): the conditioning video is put
    through the forward process at log-SNR `cond_logsnr` (random per sample in training, fixed at
    sampling, e.g. SNR 3 or 5) and the model is told `cond_logsnr`."""
    return diffuse(cond, cond_logsnr, noise)


def augment_for_training(cond, key, aug_max_t=0.6):
    """Training: a random augmentation level per sample, λ' = λ(t'), t' ~ U(0, aug_max_t) (chapter 06).

    aug_max_t = 0 turns augmentation off: every sample gets λ' = logsnr_max (20), a clean input.
    Returns (augmented cond, λ' of shape (B,)).
    """
    k_level, k_noise = jax.random.split(key)
    cond_logsnr = cosine_logsnr(jax.random.uniform(k_level, (cond.shape[0],), maxval=aug_max_t))
    return augment_condition(cond, cond_logsnr, jax.random.normal(k_noise, cond.shape)), cond_logsnr


def augment_for_sampling(cond, key, aug_snr=5.0):
    """Sampling: one fixed augmentation level for every sample, λ' = log(aug_snr) (paper: "such as 3 or 5").

    aug_snr = inf means no augmentation (λ' = logsnr_max, what a model trained without it saw).
    Returns (augmented cond, λ' of shape (B,)).
    """
    cond_logsnr = jnp.full((cond.shape[0],), jnp.clip(jnp.log(aug_snr), LOGSNR_MIN, LOGSNR_MAX), jnp.float32)
    return augment_condition(cond, cond_logsnr, jax.random.normal(key, cond.shape)), cond_logsnr
# [end-augment]


def sampling_condition(stage: Stage, low_res, key, aug_snr=5.0):
    """What an SR stage is given at sampling time (chapters 05–06): the previous stage's video upsampled
    (`condition_video`) and augmented at the fixed SNR `aug_snr`. Returns (cond, λ', key left for the
    sampler); `sample_stage` calls this, so (cond, λ') is exactly what the model sees."""
    cond = condition_video(stage, jnp.asarray(low_res, jnp.float32))
    key, aug_key = jax.random.split(key)
    cond, cond_logsnr = augment_for_sampling(cond, aug_key, aug_snr)
    return cond, cond_logsnr, key



THRESHOLDS = ("dynamic", "static", "none")


def _threshold_fn(threshold):
    from ivlib.guidance import dynamic_threshold, static_clip

    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    return {"dynamic": dynamic_threshold, "static": static_clip, "none": None}[threshold]


# [start-sample-stage]
@partial(jax.jit, static_argnames=("stage", "graphdef", "shape", "num_steps", "sampler", "gamma", "threshold"))
def _sample_stage(stage, graphdef, params, rest, text, text_mask, cond, cond_logsnr, key, weights,
                  shape, num_steps, sampler, gamma, threshold):
    model = nnx.merge(graphdef, params, rest)
    extra = {} if cond is None else {"cond": cond, "cond_logsnr": cond_logsnr}

    def denoise(z, logsnr, step):
        if text is None:
            out = model(z, logsnr, **extra)
        else:  # classifier-free guidance with per-step weights (constant or oscillating), one forward pass
            out = classifier_free_prediction(model, z, logsnr, text, text_mask, weights[step], **extra)
        return x_from_prediction(z, out, logsnr, stage.unet.target)

    return sample(denoise, shape, key, num_steps, sampler, gamma, x_transform=_threshold_fn(threshold), step_aware=True)
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

    def sample_kwargs(self) -> dict:
        """The keyword arguments of `sample_stage` these settings stand for."""
        return dict(num_steps=self.num_steps, sampler=self.sampler, gamma=self.gamma, guidance=self.weights(),
                    threshold=self.threshold, aug_snr=self.aug_snr)

    def weights(self):
        from ivlib.guidance import oscillating_weights

        if self.oscillate is None:
            return self.guidance
        high, low, constant_steps = self.oscillate
        return oscillating_weights(self.num_steps, high, low, int(constant_steps))


def stage_settings(stages, base: SamplerSettings, sr: SamplerSettings) -> dict:
    """{stage name: settings}: `base` for the base model, `sr` for every super-resolution stage (chapter 05)."""
    return {s.name: (base if s.kind == "base" else sr) for s in stages}


def check_chain(stages) -> None:
    """Raise ValueError unless every stage's output shape is the next stage's input (chapter 05)."""
    if not stages or stages[0].kind != "base":
        raise ValueError("a cascade starts with a base stage")
    for prev, nxt in zip(stages, stages[1:]):
        if nxt.kind == "base":
            raise ValueError(f"stage {nxt.name!r} is a base model; only the first stage can be")
        if prev.output_shape != nxt.input_shape:
            raise ValueError(f"stage {prev.name!r} makes videos of frames x height x width {prev.output_shape}, "
                             f"but the next stage {nxt.name!r} takes {nxt.input_shape}")


class Cascade:
    """A chain of stages with their trained parameters (chapter 05): text -> base -> SR -> ... -> video."""

    def __init__(self, stages, model_defs, params, text_encoder=None):
        stages = tuple(stages)
        check_chain(stages)
        if not len(stages) == len(model_defs) == len(params):
            raise ValueError("stages, model_defs and params must have one entry per stage")
        self.stages, self.model_defs, self.params = stages, tuple(model_defs), tuple(params)
        self.text_encoder = text_encoder
        self._cache = None

    @classmethod
    def pretrained(cls, config="toy", stages=None):
        """The shipped cascade of `config` (weights in ivlib/assets/weights) (chapter 05).

        stages: names of the stages to run; None takes every stage whose weights ship, from the
        base model up to the first stage without weights (printing which ones are left out).
        """
        from ivlib.configs import get_cascade
        from ivlib.text import default_text_encoder
        from ivlib.weights import shipped_weights_path

        everything = get_cascade(config)
        if stages is None:
            chosen = []
            for s in everything:
                if not shipped_weights_path(config, s.name).is_file():
                    break
                chosen.append(s)
            missing = [s.name for s in everything[len(chosen):]]
            if missing and chosen:
                print(f"note: no shipped weights for stage(s) {missing} of {config!r}; running {[s.name for s in chosen]}")
            chosen = chosen or list(everything[:1])  # nothing ships: load_stage explains how to train the base
        else:
            unknown = set(stages) - {s.name for s in everything}
            if unknown:
                raise ValueError(f"unknown stage(s) {sorted(unknown)} for config {config!r}; "
                                 f"stages: {[s.name for s in everything]}")
            chosen = [s for s in everything if s.name in stages]
        loaded = [load_stage(config, s.name) for s in chosen]
        return cls(chosen, [m for _, m, _ in loaded], [p for _, _, p in loaded], default_text_encoder())

    def embed(self, prompts):
        """Cached text embeddings (B, L, D), mask (B, L) for a list of prompts (chapter 04)."""
        from ivlib.text import EmbeddingCache

        if self._cache is None:
            self._cache = EmbeddingCache(self.text_encoder)
        return self._cache.get(list(prompts))

    def sample(self, prompts, key, settings=None):
        """Run every stage for `prompts`; returns the list of each stage's videos (the last is the final video).

        settings: one SamplerSettings for all stages, or a dict stage name -> SamplerSettings.
        """
        if isinstance(prompts, str) or not len(prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        text, mask = self.embed(prompts)
        videos, video = [], None
        for i, (stage, model_def, params) in enumerate(zip(self.stages, self.model_defs, self.params)):
            s = settings.get(stage.name, SamplerSettings()) if isinstance(settings, dict) else (settings or SamplerSettings())
            video = sample_stage(stage, model_def, params, jax.random.fold_in(key, i), text=text, text_mask=mask,
                                 low_res=video, batch_size=len(prompts), **s.sample_kwargs())
            videos.append(video)
        return videos

    def sample_final(self, prompts, key, settings=None, batch_size=32):
        """The final videos for `prompts` as one numpy array, `batch_size` prompts at a time; the batch
        starting at prompt i uses the key fold_in(key, i), so equal keys give equal videos whatever else
        changes (chapters 05, 08)."""
        return np.concatenate([np.asarray(self.sample(prompts[i:i + batch_size], jax.random.fold_in(key, i), settings)[-1])
                               for i in range(0, len(prompts), batch_size)])


def load_stage(config_name: str, stage_name: str, path=None):
    """(stage, model_def, params) with the shipped EMA weights of a stage (chapters 04–05).

    FileNotFoundError, naming the `ivlib train` command that makes them, if the weights are missing.
    """
    from ivlib.configs import get_stage
    from ivlib.train import ModelDef
    from ivlib.nn.unet import VideoUNet
    from ivlib.weights import load_params, shipped_weights_path

    stage = get_stage(config_name, stage_name)
    path = path or shipped_weights_path(config_name, stage_name)
    graphdef, init_params, rest = nnx.split(VideoUNet(stage.unet, rngs=nnx.Rngs(0)), nnx.Param, ...)
    try:
        params = load_params(path, init_params)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}. Train it with: ivlib train --config {config_name} --stage {stage_name} "
                                f"--workdir runs/{config_name}-{stage_name} (see chapter 04), then copy "
                                f"runs/{config_name}-{stage_name}/ema.safetensors to {path}") from None
    return stage, ModelDef(graphdef, rest), params
