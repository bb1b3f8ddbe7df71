"""The diffusion process, its parameterisations, losses and samplers (chapters 01, 02 and 09).

Notation of the paper (§2.1, §2.4): data x, noise ε, latent z_t = α_t x + σ_t ε, log-SNR λ_t,
velocity v = α ε − σ x. Arrays are videos (B, F, H, W, C) — or any shape whose leading axis is
the batch — and `logsnr` is a scalar or a (B,) vector that broadcasts over the trailing axes.
"""

from functools import partial

import jax
import jax.numpy as jnp

from ivlib.schedules import alpha_sigma, cosine_logsnr

TARGETS = ("v", "eps", "x")
SAMPLERS = ("ancestral", "ddim", "stochastic")


def per_sample(logsnr, x):
    """Reshape a scalar or (B,) log-SNR to broadcast against x of shape (B, ...); ValueError if the batch
    sizes disagree (chapter 02; also used by chapter 09's distillation targets)."""
    logsnr = jnp.asarray(logsnr, jnp.float32)
    if logsnr.ndim == 0:
        return logsnr
    if logsnr.ndim != 1:
        raise ValueError(f"logsnr must be a scalar or have shape (batch,), got shape {logsnr.shape}")
    x = jnp.asarray(x)
    if x.ndim == 0 or logsnr.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"logsnr has batch size {logsnr.shape[0]} but the array it scales has shape {x.shape}; "
            "expected a scalar or one log-SNR per sample (its leading axis)"
        )
    return logsnr.reshape(logsnr.shape + (1,) * (x.ndim - 1))


def _alpha_sigma_like(logsnr, x):
    return alpha_sigma(per_sample(logsnr, x))


# [start-forward]
def diffuse(x, logsnr, noise):
    """Sample the forward process q(z_t | x): z = α x + σ ε (chapter 01; paper eq. 1)."""
    alpha, sigma = _alpha_sigma_like(logsnr, x)
    return alpha * x + sigma * noise
# [end-forward]


# [start-parameterisations]
def v_target(x, noise, logsnr):
    """Velocity v = α ε − σ x, the target of v-prediction (chapter 02; paper §2.4)."""
    alpha, sigma = _alpha_sigma_like(logsnr, x)
    return alpha * noise - sigma * x


def x_from_v(z, v, logsnr):
    """x̂ = α z − σ v (chapter 02)."""
    alpha, sigma = _alpha_sigma_like(logsnr, z)
    return alpha * z - sigma * v


def eps_from_v(z, v, logsnr):
    """ε̂ = σ z + α v (chapter 02)."""
    alpha, sigma = _alpha_sigma_like(logsnr, z)
    return sigma * z + alpha * v


def x_from_eps(z, eps, logsnr):
    """x̂ = (z − σ ε̂) / α (chapter 02). Ill-conditioned as α → 0, which is why ivlib predicts v."""
    alpha, sigma = _alpha_sigma_like(logsnr, z)
    return (z - sigma * eps) / alpha


def eps_from_x(z, x, logsnr):
    """ε̂ = (z − α x̂) / σ (chapter 02; paper §2.1). Ill-conditioned as σ → 0."""
    alpha, sigma = _alpha_sigma_like(logsnr, z)
    return (z - alpha * x) / sigma


def v_from_x(z, x, logsnr):
    """v̂ = (α z − x̂) / σ, the velocity implied by an x prediction (chapter 02)."""
    alpha, sigma = _alpha_sigma_like(logsnr, z)
    return (alpha * z - x) / sigma
# [end-parameterisations]


def _check_target(target):
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def prediction_target(x, noise, logsnr, target="v"):
    """What a model trained with `target` ('v', 'eps' or 'x') should output (chapter 02)."""
    _check_target(target)
    if target == "v":
        return v_target(x, noise, logsnr)
    return noise if target == "eps" else x


def x_from_prediction(z, output, logsnr, target="v"):
    """The x prediction implied by a model output of kind `target` (chapter 02)."""
    _check_target(target)
    if target == "v":
        return x_from_v(z, output, logsnr)
    return x_from_eps(z, output, logsnr) if target == "eps" else output


# [start-losses]
def prediction_loss(output, x, noise, logsnr, target="v"):
    """Per-sample mean squared error between a model output and its target (chapter 02; paper eq. 2).

    output, x, noise: (B, ...). Returns (B,). With target 'eps' this is the paper's eq. (2);
    ivlib trains with 'v' (§2.4).
    """
    err = jnp.square(output - prediction_target(x, noise, logsnr, target))
    return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def x_mse_weight(logsnr, target="v"):
    """w(λ) with  loss_target = w(λ) · ‖x̂ − x‖²  for the same model (chapter 02).

    ε-MSE = SNR · x-MSE, v-MSE = (1 + SNR) · x-MSE, x-MSE = 1 · x-MSE; 'truncated_snr' is
    max(SNR, 1), the weighting used for distillation (Salimans & Ho 2022).
    """
    snr = jnp.exp(jnp.asarray(logsnr, jnp.float32))
    weights = {"v": 1.0 + snr, "eps": snr, "x": jnp.ones_like(snr), "truncated_snr": jnp.maximum(snr, 1.0)}
    if target not in weights:
        raise ValueError(f"target must be one of {tuple(weights)}, got {target!r}")
    return weights[target]
# [end-losses]


# [start-steps]
def ddim_step(z_t, x_pred, logsnr_t, logsnr_s):
    """One deterministic DDIM update from time t to s < t (chapter 09; Song et al. 2020).

    z_s = α_s x̂ + σ_s ε̂ with ε̂ = (z_t − α_t x̂)/σ_t. z_t, x_pred: (B, F, H, W, C); logsnr_*: scalar or (B,).
    """
    alpha_t, sigma_t = _alpha_sigma_like(logsnr_t, z_t)
    alpha_s, sigma_s = _alpha_sigma_like(logsnr_s, z_t)
    eps_pred = (z_t - alpha_t * x_pred) / sigma_t
    return alpha_s * x_pred + sigma_s * eps_pred


def ancestral_step(z_t, x_pred, logsnr_t, logsnr_s, noise, gamma):
    """One ancestral update from t to s < t, paper eq. (3)–(4) (chapter 02).

    mean = r (α_s/α_t) z_t + (1 − r) α_s x̂ with r = e^{λ_t − λ_s};
    variance = (σ̃²_{s|t})^{1−γ} (σ²_{t|s})^γ with σ̃²_{s|t} = (1 − r) σ_s², σ²_{t|s} = (1 − r) σ_t².
    γ ∈ [0, 1] interpolates between the two bounds on the reverse-process entropy.
    """
    lt, ls = per_sample(logsnr_t, z_t), per_sample(logsnr_s, z_t)
    alpha_t, sigma_t = alpha_sigma(lt)
    alpha_s, sigma_s = alpha_sigma(ls)
    r = jnp.exp(lt - ls)
    one_minus_r = -jnp.expm1(lt - ls)
    mean = r * (alpha_s / alpha_t) * z_t + one_minus_r * alpha_s * x_pred
    log_var = jnp.log(one_minus_r) + (1.0 - gamma) * 2.0 * jnp.log(sigma_s) + gamma * 2.0 * jnp.log(sigma_t)
    return mean + jnp.exp(0.5 * log_var) * noise


def renoise(z_u, logsnr_u, logsnr_s, noise):
    """Sample the forward process q(z_s | z_u) from a less noisy time u to s (λ_u ≥ λ_s; chapter 09).

    z_s = (α_s/α_u) z_u + σ_{s|u} ε with σ²_{s|u} = σ_s² − (α_s/α_u)² σ_u² = σ_s² (1 − e^{λ_s − λ_u}), so a
    z_u ~ q(z_u | x) becomes a z_s ~ q(z_s | x): the forward process run on from u to s.
    """
    lu, ls = per_sample(logsnr_u, z_u), per_sample(logsnr_s, z_u)
    alpha_u, _ = alpha_sigma(lu)
    alpha_s, sigma_s = alpha_sigma(ls)
    std = sigma_s * jnp.sqrt(-jnp.expm1(jnp.minimum(ls - lu, 0.0)))
    return (alpha_s / alpha_u) * z_u + std * noise


def stochastic_step(z_t, x_pred, logsnr_t, logsnr_s, logsnr_u, noise):
    """One step of the N-step stochastic sampler for distilled models (chapter 09; Meng et al. 2022, paper §2.7).

    A deterministic DDIM step of twice the step size, from t past s to u (λ_t < λ_s < λ_u), then back to s
    by the forward process with fresh noise: z_s = renoise(ddim_step(z_t, x̂, λ_t, λ_u), λ_u, λ_s, ε).
    """
    return renoise(ddim_step(z_t, x_pred, logsnr_t, logsnr_u), logsnr_u, logsnr_s, noise)
# [end-steps]


def _check_sampler_args(shape, num_steps, sampler, gamma):
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
    if len(shape) < 1 or any(int(d) < 1 for d in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive sizes (batch, ...), got {shape!r}")


# [start-sample]
def sample(denoise_fn, shape, key, num_steps, sampler="ancestral", gamma=0.3, logsnr_fn=cosine_logsnr,
           *, x_transform=None, step_aware=False):
    """Generate from noise with `num_steps` steps of a uniform t grid from 1 to 0 (chapters 02, 08, 09).

    denoise_fn(z, logsnr) -> x prediction, with z of `shape` and logsnr of shape (batch,); with
    `step_aware=True` it is called as denoise_fn(z, logsnr, step) (step = 0 for the first, noisiest
    step), which per-step guidance weights need. `x_transform(x_pred)` (e.g. clipping or dynamic
    thresholding) is applied to every x prediction. z_1 ~ N(0, I); each step goes from t = (i+1)/N
    to s = i/N with the ancestral rule (eq. 3–4, stochasticity `gamma`), DDIM, or the 'stochastic' sampler of
    distilled models (a DDIM step to (i − 1)/N and back to s with fresh noise, `stochastic_step`); the last step
    returns the final x prediction, the model's estimate of the data at t = 0.

    The whole loop is one `jax.lax.fori_loop` inside `jax.jit` (functions are static arguments:
    pass the same function object to reuse the compiled sampler). Returns an array of `shape`.
    """
    shape = tuple(int(d) for d in shape)
    _check_sampler_args(shape, num_steps, sampler, gamma)
    return _sample(denoise_fn, shape, key, jnp.int32(num_steps), sampler, float(gamma), logsnr_fn, x_transform,
                   step_aware)


@partial(jax.jit, static_argnums=(0, 1, 4, 6, 7, 8))  # num_steps is traced: one compilation serves every step count
def _sample(denoise_fn, shape, key, num_steps, sampler, gamma, logsnr_fn, x_transform, step_aware):
    init_key, step_key = jax.random.split(key)
    batch = shape[0]

    def body(step, carry):
        z_t, _ = carry
        i = num_steps - 1 - step  # this step goes from t = (i + 1)/N to s = i/N
        logsnr_t = jnp.full((batch,), logsnr_fn((i + 1) / num_steps))
        logsnr_s = jnp.full((batch,), logsnr_fn(i / num_steps))
        x_pred = denoise_fn(z_t, logsnr_t, step) if step_aware else denoise_fn(z_t, logsnr_t)
        if x_transform is not None:
            x_pred = x_transform(x_pred)
        if sampler == "ddim":
            z_s = ddim_step(z_t, x_pred, logsnr_t, logsnr_s)
        elif sampler == "stochastic":  # u = (i − 1)/N; on the last step (i = 0) z_s is unused: x̂ is returned
            logsnr_u = jnp.full((batch,), logsnr_fn(jnp.maximum(i - 1, 0) / num_steps))
            noise = jax.random.normal(jax.random.fold_in(step_key, step), shape)
            z_s = stochastic_step(z_t, x_pred, logsnr_t, logsnr_s, logsnr_u, noise)
        else:
            noise = jax.random.normal(jax.random.fold_in(step_key, step), shape)
            z_s = ancestral_step(z_t, x_pred, logsnr_t, logsnr_s, noise, gamma)
        return z_s, x_pred

    z_1 = jax.random.normal(init_key, shape)
    _, x_0 = jax.lax.fori_loop(0, num_steps, body, (z_1, jnp.zeros(shape)))
    return x_0
# [end-sample]


def idle_steps(num_steps: int, logsnr_fn=cosine_logsnr) -> int:
    """How many of `sample`'s `num_steps` steps do nothing: steps from t to s whose float32 log-SNRs are
    equal (or out of order), because the grid is finer than float32 resolves the schedule (chapter 02).
    For the cosine schedule: none at a million steps, hundreds of thousands at ten million. Above 2**24 steps
    a lower bound, not the count: half the grid lies in [0.5, 1], where float32 has only 2**23 values of t."""
    if num_steps > 1 << 24:
        return (num_steps + 1) // 2 - (1 << 23)
    i = jnp.arange(num_steps + 1, dtype=jnp.int32)
    logsnr = jnp.asarray(logsnr_fn(i / jnp.int32(num_steps)))  # the grid of `sample`, in its float32
    return int(jnp.sum(logsnr[:-1] <= logsnr[1:]))
