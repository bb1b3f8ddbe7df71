"""Cascade configurations as data: `toy` (CPU), `colab` (one TPU host), `paper` (the 7-model, 11.6B cascade)
(chapter 10).

    get_cascade("paper")          # -> (base, tsr1, ssr1, ssr2, tsr2, tsr3, ssr3), Stage objects
    get_stage("toy", "base")      # -> one Stage
    num_params(get_stage("paper", "base"))   # 5.5e9, from shapes only

"paper-500m" and "paper-1.6b" are the paper's cascade with the smaller base models of its scaling study
(Fig. 11); "paper" and "paper-5.6b" have the 5.6B base.
"""

from __future__ import annotations

from ivlib.compat import fast_tracing
from ivlib.configs import colab, paper, toy
from ivlib.nn.unet import UNetConfig, count_params
from ivlib.stage import Stage

_CASCADES = {
    "toy": lambda: toy.CASCADE,
    "colab": lambda: colab.CASCADE,
    "paper": lambda: paper.cascade("5.6b"),
    "paper-5.6b": lambda: paper.cascade("5.6b"),
    "paper-1.6b": lambda: paper.cascade("1.6b"),
    "paper-500m": lambda: paper.cascade("500m"),
}
CONFIG_NAMES = tuple(_CASCADES)
_MODULES = {"toy": toy, "colab": colab, "paper": paper, "paper-5.6b": paper, "paper-1.6b": paper, "paper-500m": paper}


def get_cascade(name: str) -> tuple[Stage, ...]:
    """The stages of cascade `name`, in sampling order (chapter 10). Names: see `CONFIG_NAMES`."""
    if name not in _CASCADES:
        raise ValueError(f"unknown config name {name!r}; valid names: {', '.join(CONFIG_NAMES)}")
    return tuple(_CASCADES[name]())


def get_stage(config_name: str, stage_name: str) -> Stage:
    """One stage of cascade `config_name` by its name, e.g. get_stage("paper", "ssr3") (chapter 10)."""
    stages = {stage.name: stage for stage in get_cascade(config_name)}
    if stage_name not in stages:
        raise ValueError(f"config {config_name!r} has no stage {stage_name!r}; valid stage names: "
                         f"{', '.join(stages)}")
    return stages[stage_name]


def text_settings(name: str) -> tuple[str, int]:
    """(text encoder, tokens per prompt) that cascade `name` is conditioned on: its module's TEXT_ENCODER
    and TEXT_LENGTH (chapter 10), e.g. ("google/t5-v1_1-base", 64) for "colab"."""
    if name not in _MODULES:
        raise ValueError(f"unknown config name {name!r}; valid names: {', '.join(CONFIG_NAMES)}")
    return _MODULES[name].TEXT_ENCODER, _MODULES[name].TEXT_LENGTH


def num_params(stage: Stage | UNetConfig) -> int:
    """Parameters of a stage's Video U-Net, from `nnx.eval_shape` (nothing allocated; chapter 10).

    Seconds even for the 5.6B base: tracing runs under `ivlib.compat.fast_tracing` (see there why).
    """
    config = stage.unet if isinstance(stage, Stage) else stage
    if not isinstance(config, UNetConfig):
        raise ValueError(f"stage must be a Stage or a UNetConfig; got {type(stage).__name__}")
    with fast_tracing():
        return count_params(config)


def _levels_with(stage: Stage, flag) -> str:
    """'all', 'none', or the resolutions (width x height, as the paper writes them) of the levels where flag holds."""
    u = stage.unet
    hits = [i for i, level in enumerate(u.levels) if flag(level)]
    if not hits:
        return "none"
    if len(hits) == len(u.levels):
        return "all levels"
    sizes = [f"{u.width >> i}x{u.height >> i}" for i in hits]
    return ", ".join(sizes)


def describe(stage: Stage, params: bool = True) -> dict:
    """One row of chapter 10's cascade table: shapes as the paper writes them (frames x width x height),
    fps, temporal layer, where spatial and cross-attention are, and the parameter count."""
    u = stage.unet
    row = {
        "stage": stage.name,
        "kind": stage.kind.upper(),
        "input": "text" if stage.kind == "base" else f"{stage.in_frames}x{stage.in_width}x{stage.in_height}",
        "output": f"{u.frames}x{u.width}x{u.height}",
        "fps": stage.fps,
        "temporal": "/".join(sorted({level.temporal for level in u.levels})),
        "spatial attention": _levels_with(stage, lambda level: level.spatial_attention),
        "text cross-attention": _levels_with(stage, lambda level: level.uses_cross_attention and u.text_dim > 0),
        "fully convolutional": u.fully_convolutional,
    }
    if params:
        row["params"] = num_params(stage)
    return row


__all__ = ["CONFIG_NAMES", "colab", "describe", "get_cascade", "get_stage", "num_params", "paper", "toy"]
