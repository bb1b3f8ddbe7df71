"""Training a stage of the cascade: the state, the loss, one jit-compiled step (chapter 04).

The train state is a plain pytree — {"step", "params", "opt_state", "ema"} (`ivlib.loop.init_state`) —
so it can be checkpointed by orbax, placed on a device mesh (`ivlib.sharding`) and passed through
`jax.jit` without any framework magic. The model's structure (its NNX graph) travels separately as a
`ModelDef`. What the network predicts (v, ε or x) is the stage's own `stage.unet.target`, the one value
the sampler decodes with. The loop around the step — data, text cache, checkpoints, resume, NaN guard —
is `ivlib.loop.fit`, run for a stage by `ivlib.trainer`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ivlib.conditioning import augment_for_training, condition_video
from ivlib.diffusion import diffuse, prediction_loss
from ivlib.loop import apply_gradients, init_state
from ivlib.nn.model_def import ModelDef
from ivlib.nn.unet import UNetConfig, VideoUNet
from ivlib.schedules import cosine_logsnr
from ivlib.stage import Stage


def create_state(unet_config: UNetConfig, tx: optax.GradientTransformation, key):
    """A freshly initialised model: (ModelDef, state) with state = {step, params, opt_state, ema} (chapter 04)."""
    model_def, params = ModelDef.split(VideoUNet(unet_config, rngs=nnx.Rngs(key)))
    return model_def, init_state(jax.tree.map(jnp.asarray, params), tx)


def state_initializer(unet_config: UNetConfig, tx):
    """`init(key) -> state` for tracing `create_state` (abstractly or sharded, chapter 10), and the list
    its ModelDef lands in when it runs."""
    model_defs = []

    def init(key):
        model_def, state = create_state(unet_config, tx, key)
        if jax.tree.leaves(model_def.rest):
            raise ValueError("this model keeps non-parameter state (e.g. dropout random streams), which an "
                             "abstract or sharded initialisation cannot carry; use dropout=0.0")
        model_defs.append(model_def)
        return state

    return init, model_defs


def default_optimizer(learning_rate=3e-4, warmup_steps=100, clip_norm=1.0):
    """Adam with linear warm-up and global-norm clipping (chapter 04; our choice for the toy stages)."""
    schedule = optax.linear_schedule(0.0, learning_rate, max(1, warmup_steps))
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(schedule))


def _random_crop(key, x, cond, size):
    """The same random (height, width) crop of x and cond, per sample (fully convolutional SSR, §2.3)."""
    b, f, h, w, c = x.shape
    ch, cw = size
    k1, k2 = jax.random.split(key)
    top = jax.random.randint(k1, (b,), 0, h - ch + 1)
    left = jax.random.randint(k2, (b,), 0, w - cw + 1)

    def crop(video, t, l):
        return jax.lax.dynamic_slice(video, (0, t, l, 0), (f, ch, cw, video.shape[-1]))

    return jax.vmap(crop)(x, top, left), jax.vmap(crop)(cond, top, left)


def stage_inputs(stage: Stage, batch, k_aug, k_crop, aug_max_t=0.6):
    """(x, extra): the clean target video and, for SR stages, the model's conditioning inputs
    {"cond", "cond_logsnr"} — the upsampled low-resolution video after noise conditioning augmentation at
    λ' = λ(t'), t' ~ U(0, aug_max_t) (§2.5), both cropped alike for stages trained on crops (chapter 06)."""
    x = batch["video"]
    if stage.kind == "base":
        return x, {}
    cond = condition_video(stage, batch["cond"])
    if stage.train_crop is not None:
        x, cond = _random_crop(k_crop, x, cond, stage.train_crop)
    cond, cond_logsnr = augment_for_training(cond, k_aug, aug_max_t)
    return x, {"cond": cond, "cond_logsnr": cond_logsnr}


# [start-loss]
def diffusion_loss(model: VideoUNet, batch, key, stage: Stage, text_dropout=0.1, aug_max_t=0.6):
    """The stage's training loss on one batch (chapters 02 and 04).

    The paper's eq. (2) is the ε-MSE, ‖ε̂ − ε‖². ivlib minimises the v-MSE, ‖v̂ − v‖², by default: a
    choice (the paper says its models predict v, §2.4, not which loss trains them). For the same model
    the two weight the x-error differently: ε-MSE = SNR · ‖x̂ − x‖², v-MSE = (1 + SNR) · ‖x̂ − x‖²
    (`diffusion.x_mse_weight`), so the v-MSE keeps a weight of at least 1 at low SNR, where the
    ε-MSE ignores the x-error. A stage whose `unet.target` is "eps" (`ivlib train --target eps`)
    trains with eq. (2) itself.

    t ~ U(0, 1) per sample, z_t = α x + σ ε, and the network is regressed onto its target,
    `stage.unet.target`, the same value the sampler decodes with. A
    fraction `text_dropout` of prompts is replaced by the null prompt so the same network also
    learns the unconditional model that classifier-free guidance needs (§2.6.1). SR stages see the
    upsampled low-resolution video after noise conditioning augmentation at a random log-SNR
    λ' = λ(t'), t' ~ U(0, aug_max_t) (§2.5; the range is our choice), and are told λ'.
    """
    k_t, k_noise, k_drop, k_aug, k_crop = jax.random.split(key, 5)
    x, extra = stage_inputs(stage, batch, k_aug, k_crop, aug_max_t)
    b = x.shape[0]
    logsnr = cosine_logsnr(jax.random.uniform(k_t, (b,)))
    noise = jax.random.normal(k_noise, x.shape)
    z = diffuse(x, logsnr, noise)
    text, text_mask = batch.get("text"), batch.get("text_mask")
    if text is not None:
        keep = jax.random.uniform(k_drop, (b,)) >= text_dropout
        text, text_mask = text * keep[:, None, None], text_mask & keep[:, None]
    output = model(z, logsnr, text, text_mask, is_image=batch.get("is_image"), **extra)
    return jnp.mean(prediction_loss(output, x, noise, logsnr, stage.unet.target))
# [end-loss]


def hold_until(grads, name: str, step, until: int):
    """`grads` with the gradient of every parameter called `name` (e.g. "rel_keys") zero before step `until`:
    with Adam such a parameter does not move, so one that starts at zero joins training at step `until`."""
    if not until:
        return grads

    def held(path, g):
        named = any(getattr(k, "key", getattr(k, "name", None)) == name for k in path)
        return jnp.where(step >= until, g, jnp.zeros_like(g)) if named else g

    return jax.tree_util.tree_map_with_path(held, grads)


def make_train_step(model_def: ModelDef, tx, stage: Stage, text_dropout=0.1, ema_decay=0.999, aug_max_t=0.6,
                    relative_keys_from: int = 0):
    """One optimisation step as a pure function (chapter 04): (state, batch, key) -> (state, metrics).
    Callers compile it: `jax.jit(step)` on one device, `ivlib.sharding.jit_step(step, mesh, shardings)` on a
    mesh (state split by the partition rule and donated; what `ivlib train` and `ivlib.memory` both run).

    batch: {"video" (B,F,H,W,C), "text" (B,L,D), "text_mask" (B,L) bool, "is_image" (B,) bool,
    and for SR stages "cond": the clean previous-stage video}. The network learns `stage.unet.target`.
    The weights' EMA (`ivlib.loop.ema_update`) warms up as min(ema_decay, (1 + step) / (10 + step)) so
    short runs already have useful EMA weights. relative_keys_from: temporal attention's relative keys (which
    start at zero) are held at zero until this step (`hold_until`), then learn: the growth of chapter 04's
    "Which way?" in one run.
    """

    def loss_fn(params, batch, key):
        return diffusion_loss(model_def.bind(params), batch, key, stage, text_dropout, aug_max_t)

    def train_step(state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, key)
        grads = hold_until(grads, "rel_keys", state["step"], relative_keys_from)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
        return apply_gradients(state, grads, tx, ema_decay), metrics

    return train_step
