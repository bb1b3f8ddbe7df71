"""Checking a list of prompts before it is encoded (chapter 04)."""

import numpy as np


def check_prompts(prompts) -> list:
    """prompts: a list/tuple (or 1-D numpy array) of str -> list of str, else a ValueError saying what is wrong."""
    if isinstance(prompts, np.ndarray) and prompts.ndim == 1:
        prompts = prompts.tolist()
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise ValueError("prompts must be a list of strings (wrap one prompt as [prompt]), "
                         f"got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("prompts is empty: pass at least one prompt (\"\" is the unconditional prompt)")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompts[{i}] must be a str, got {type(p).__name__}: {p!r}")
    return list(prompts)
