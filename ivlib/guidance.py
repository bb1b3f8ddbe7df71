"""Classifier-free guidance and keeping guided predictions in range (chapter 08; paper §2.6.1–2.6.2)."""

import jax.numpy as jnp


def _per_sample(w, x):
    w = jnp.asarray(w, jnp.float32)
    if w.ndim == 1:
        if w.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"w has batch size {w.shape[0]} but the predictions have shape {x.shape}")
        w = w.reshape(w.shape + (1,) * (x.ndim - 1))
    elif w.ndim > 1:
        raise ValueError(f"w must be a scalar or have shape (batch,), got shape {w.shape}")
    return w


# [start-guide]
def guide(pred_cond, pred_uncond, w):
    """Classifier-free guidance, paper eq. (5): (1 + w) · cond − w · uncond (chapter 08).

    Works unchanged on x-, ε- or v-predictions (the map between them is affine in the prediction
    for fixed z and λ). w: scalar or (B,); w = 0 returns the conditional prediction. Imagen's
    "guidance scale" is 1 + w.
    """
    pred_cond = jnp.asarray(pred_cond)
    w = _per_sample(w, pred_cond)
    return (1.0 + w) * pred_cond - w * pred_uncond
# [end-guide]


# [start-thresholds]
def static_clip(x):
    """Clip an x prediction to the pixel range [-1, 1] (chapter 08; paper §2.6.2)."""
    return jnp.clip(x, -1.0, 1.0)


def dynamic_threshold(x, percentile=0.995):
    """Dynamic thresholding (Saharia et al. 2022b; chapter 08).

    Per sample: s = max(1, quantile_p(|x|)), then clip(x, −s, s) / s. x: (B, ...); the quantile is
    taken over all of a sample's values (every frame, pixel and channel).
    """
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"percentile must lie in (0, 1], got {percentile!r}")
    x = jnp.asarray(x)
    flat = jnp.abs(x.reshape(x.shape[0], -1))
    s = jnp.maximum(1.0, jnp.quantile(flat, percentile, axis=-1))
    s = s.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.clip(x, -s, s) / s
# [end-thresholds]


THRESHOLDS = ("dynamic", "static", "none")


def threshold_fn(threshold: str):
    """The x-prediction transform a sampler applies for `threshold` (chapter 08): dynamic_threshold,
    static_clip, or None for "none"."""
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    return {"dynamic": dynamic_threshold, "static": static_clip, "none": None}[threshold]


# [start-oscillating]
def oscillating_weights(num_steps, high=15.0, low=1.0, constant_steps=0):
    """Per-step guidance weights for oscillating guidance (paper §2.6.2; chapter 08).

    `high` for the first `constant_steps` steps, then high, low, high, low, ... Returns a float32
    array of shape (num_steps,), indexed by sampling step (0 = the noisiest step).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not isinstance(constant_steps, int) or constant_steps < 0:
        raise ValueError(f"constant_steps must be an integer >= 0, got {constant_steps!r}")
    step = jnp.arange(num_steps)
    alternating = jnp.where((step - constant_steps) % 2 == 0, high, low)
    return jnp.where(step < constant_steps, high, alternating).astype(jnp.float32)
# [end-oscillating]


# [start-cfg]
def classifier_free_prediction(model_fn, z, logsnr, text, text_mask, w, **model_kwargs):
    """The guided model output (eq. 5) with conditional and unconditional predictions computed in
    ONE batched forward pass (chapter 08).

    model_fn(z, logsnr, text, text_mask, **model_kwargs) -> prediction (v, ε or x: the guided
    combination is the same affine map in each space). The unconditional half sees the null
    prompt (zero embeddings, empty mask), exactly what text dropout showed it in training. w:
    scalar or (B,); any (B, ...) arrays in model_kwargs (e.g. the conditioning video) are repeated.
    """
    b = z.shape[0]
    double = lambda a: jnp.concatenate([a, a]) if jnp.ndim(a) and jnp.shape(a)[0] == b else a
    logsnr = jnp.broadcast_to(jnp.asarray(logsnr, jnp.float32), (b,))
    both_text = jnp.concatenate([text, jnp.zeros_like(text)])
    both_mask = jnp.concatenate([text_mask, jnp.zeros_like(text_mask)])
    kwargs = {k: (None if v is None else double(v)) for k, v in model_kwargs.items()}
    out = model_fn(double(z), double(logsnr), both_text, both_mask, **kwargs)
    return guide(out[:b], out[b:], w)
# [end-cfg]


def guided_output(model, z, logsnr, text, text_mask, w, **model_kwargs):
    """The output at guidance weight w of any text model (chapters 08–09): one pass of a guided-distilled
    student, which is told w (`UNetConfig.guidance_embedding`), or the classifier-free combination of the
    conditional and null-prompt passes (`classifier_free_prediction`) for every other model."""
    if getattr(getattr(model, "config", None), "guidance_embedding", False):
        return model(z, logsnr, text, text_mask, guidance=w, **model_kwargs)
    return classifier_free_prediction(model, z, logsnr, text, text_mask, w, **model_kwargs)
