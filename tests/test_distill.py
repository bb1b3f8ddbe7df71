"""Distillation's math against closed forms and exact teachers (chapter 09): the stochastic sampler's
step, the inverse of a DDIM step, the two-steps-into-one target, guided targets and the loss weight."""

import jax
import jax.numpy as jnp
import numpy as np

from ivlib import diffusion as D
from ivlib import distill
from ivlib.analytic import gaussian_denoiser, mixture_denoiser
from ivlib.schedules import alpha_sigma, cosine_logsnr

SHAPE = (3, 2, 4, 4, 3)


def _normal(seed, shape=SHAPE):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _np_alpha_sigma(logsnr):
    return np.sqrt(1 / (1 + np.exp(-logsnr))), np.sqrt(1 / (1 + np.exp(logsnr)))


def test_renoise_runs_the_forward_process_on():
    """From z_u ~ q(z_u | x), renoise gives α_s x plus noise of variance exactly σ_s²: q(z_s | x)."""
    lu, ls = 2.5, -0.7
    (a_u, s_u), (a_s, s_s) = _np_alpha_sigma(lu), _np_alpha_sigma(ls)
    x = _normal(0)
    signal = D.renoise(a_u * x, lu, ls, jnp.zeros(SHAPE))
    np.testing.assert_allclose(signal, a_s * x, rtol=1e-5, atol=1e-6)
    old = D.renoise(jnp.full(SHAPE, s_u), lu, ls, jnp.zeros(SHAPE))  # coefficient of z_u's noise
    fresh = D.renoise(jnp.zeros(SHAPE), lu, ls, jnp.ones(SHAPE))      # coefficient of the fresh noise
    np.testing.assert_allclose(old**2 + fresh**2, s_s**2, rtol=1e-5)
    np.testing.assert_allclose(D.renoise(x, ls, ls, _normal(1)), x, atol=1e-6)  # u = s: nothing to add


def test_stochastic_step_reference_value():
    lt, ls, lu = 0.0, 1.762619, 4.0
    (a_t, s_t), (a_s, s_s), (a_u, s_u) = (_np_alpha_sigma(l) for l in (lt, ls, lu))
    z, x, eps = 0.8, -0.3, 0.5
    z_u = a_u * x + s_u * (z - a_t * x) / s_t
    expected = a_s / a_u * z_u + np.sqrt(s_s**2 - (a_s / a_u * s_u) ** 2) * eps
    got = D.stochastic_step(jnp.full((1, 1), z), jnp.full((1, 1), x), lt, ls, lu, jnp.full((1, 1), eps))
    np.testing.assert_allclose(got, [[expected]], rtol=1e-5)


def test_stochastic_step_with_a_perfect_denoiser_keeps_the_forward_marginal():
    """If x̂ = x and z_t = α_t x + σ_t ε₀, the DDIM step recovers ε₀, and z_s = α_s x + noise of variance σ_s²."""
    lt, ls, lu = -1.0, 0.5, 2.0
    (a_t, s_t), (a_s, s_s) = _np_alpha_sigma(lt), _np_alpha_sigma(ls)
    x = _normal(2)
    signal = D.stochastic_step(a_t * x, x, lt, ls, lu, jnp.zeros(SHAPE))
    np.testing.assert_allclose(signal, a_s * x, rtol=1e-5, atol=1e-6)
    zero = jnp.zeros(SHAPE)
    old = D.stochastic_step(jnp.full(SHAPE, s_t), zero, lt, ls, lu, zero)
    fresh = D.stochastic_step(zero, zero, lt, ls, lu, jnp.ones(SHAPE))
    np.testing.assert_allclose(old**2 + fresh**2, s_s**2, rtol=1e-5)


def test_ddim_x_target_inverts_a_ddim_step():
    z_t, x = _normal(3), _normal(4)
    lt, ls = jnp.array([-3.0, 0.0, 2.0]), jnp.array([-2.9, 1.5, 9.0])
    z_s = D.ddim_step(z_t, x, lt, ls)
    np.testing.assert_allclose(distill.ddim_x_target(z_t, z_s, lt, ls), x, rtol=1e-3, atol=1e-3)
    target = _normal(5)
    np.testing.assert_allclose(D.ddim_step(z_t, distill.ddim_x_target(z_t, target, lt, ls), lt, ls), target,
                               rtol=1e-4, atol=1e-4)


def test_two_step_target_of_a_point_mass_teacher_is_the_point():
    """Every DDIM step of a teacher that always predicts m keeps x̂ = m, so the one-step target is m."""
    m = _normal(6)[:1]
    teacher = lambda z, logsnr: jnp.broadcast_to(m, z.shape)
    lt, lmid, ls = distill.student_times(jnp.array([1, 2, 3]), 4)
    target = distill.two_step_target(teacher, _normal(7), lt, lmid, ls)
    np.testing.assert_allclose(target, jnp.broadcast_to(m, SHAPE), atol=1e-4)


def _mixture_teacher():
    means = jnp.stack([jnp.full((2, 3), -0.6), jnp.linspace(-1, 1, 6).reshape(2, 3), jnp.full((2, 3), 0.7)])
    return mixture_denoiser(means, jnp.array([0.05, 0.2, 0.1]), jnp.array([0.2, 0.5, 0.3]))


def test_a_student_that_outputs_its_target_samples_in_n_steps_what_the_teacher_samples_in_2n():
    """Distillation verified without training: with an exact (non-linear) teacher the student's exact target
    is computable, and DDIM with it in N steps lands where the teacher's DDIM lands in 2N steps."""
    teacher = _mixture_teacher()
    n = 4

    def student(z, logsnr, step):
        lt, lmid, ls = distill.student_times(jnp.full(z.shape[:1], n - 1 - step), n)
        return distill.two_step_target(teacher, z, lt, lmid, ls)

    key = jax.random.PRNGKey(8)
    fast = D.sample(student, (256, 2, 3), key, n, "ddim", step_aware=True)
    slow = D.sample(teacher, (256, 2, 3), key, 2 * n, "ddim")
    np.testing.assert_allclose(fast, slow, atol=2e-4)
    assert float(jnp.max(jnp.abs(D.sample(teacher, (256, 2, 3), key, n, "ddim") - slow))) > 0.05  # N teacher steps differ


def test_student_times_are_the_samplers_grid():
    lt, lmid, ls = distill.student_times(jnp.arange(4), 4)
    np.testing.assert_allclose(lt, cosine_logsnr(jnp.arange(1, 5) / 4), rtol=1e-6)
    np.testing.assert_allclose(lmid, cosine_logsnr(jnp.arange(1, 9, 2) / 8), rtol=1e-6)
    np.testing.assert_allclose(ls, cosine_logsnr(jnp.arange(4) / 4), rtol=1e-6)


def test_guided_target_closed_form_on_gaussian_teachers():
    """Conditional N(0.5, 0.3²), unconditional N(0, 1): x̃ = (1 + w) E_c[x|z] − w E_u[x|z], per sample w."""
    cond, uncond = gaussian_denoiser(jnp.full((2, 3), 0.5), 0.3), gaussian_denoiser(jnp.zeros((2, 3)), 1.0)
    z, logsnr, w = _normal(9, (3, 2, 3)), jnp.array([-1.0, 0.0, 2.0]), jnp.array([0.0, 1.0, 7.5])
    a, s = (v[:, None, None] for v in alpha_sigma(logsnr))
    e_c = 0.5 + a * 0.09 / (a**2 * 0.09 + s**2) * (z - a * 0.5)
    e_u = a / (a**2 + s**2) * z
    expected = (1 + w[:, None, None]) * e_c - w[:, None, None] * e_u
    np.testing.assert_allclose(distill.guided_target(cond, uncond, z, logsnr, w), expected, rtol=1e-5, atol=1e-5)


def test_distillation_loss_is_truncated_snr_weighted_x_mse():
    xs, xt = jnp.ones((2, 4)), jnp.zeros((2, 4))
    logsnr = jnp.array([-3.0, 2.0])
    np.testing.assert_allclose(distill.distillation_loss(xs, xt, logsnr), [1.0, np.exp(2.0)], rtol=1e-6)


# ---------------------------------------------------------------- the losses on networks
from flax import nnx  # noqa: E402

from ivlib.diffusion import diffuse, x_from_v  # noqa: E402
from ivlib.guidance import static_clip  # noqa: E402
from ivlib.loop import init_state  # noqa: E402
from ivlib.nn.model_def import ModelDef  # noqa: E402
from ivlib.nn.unet import Level, UNetConfig, VideoUNet  # noqa: E402
from ivlib.stage import Stage  # noqa: E402
from ivlib.train import default_optimizer  # noqa: E402

TINY = Stage("tiny", "base", UNetConfig(4, 8, 8, (Level(8, 1, False, "attention"),), text_dim=8, head_dim=8,
                                        emb_dim=16))


def _teacher():
    """A tiny text model with random parameters (a fresh one outputs zeros: its last conv starts at zero)."""
    model_def, params = ModelDef.split(VideoUNet(TINY.unet, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: jnp.asarray(p + 0.2 * rng.standard_normal(p.shape), jnp.float32), params)
    return model_def, params


def _batch():
    rng = np.random.default_rng(1)
    return {"video": jnp.asarray(rng.uniform(-1, 1, (3, 4, 8, 8, 3)), jnp.float32),
            "text": jnp.asarray(rng.standard_normal((3, 5, 8)), jnp.float32),
            "text_mask": jnp.asarray(np.arange(5)[None] < np.array([[2], [5], [3]]))}


def _teacher_x(teacher, z, logsnr, batch, w):
    """The teacher's guided, clipped x-prediction, from its two passes written out."""
    cond = x_from_v(z, teacher(z, logsnr, batch["text"], batch["text_mask"]), logsnr)
    null = x_from_v(z, teacher(z, logsnr, jnp.zeros_like(batch["text"]), jnp.zeros_like(batch["text_mask"])), logsnr)
    return static_clip((1 + w[:, None, None, None, None]) * cond - w[:, None, None, None, None] * null)


def test_a_new_student_predicts_what_its_teacher_predicts_with_the_prompt():
    teacher_def, teacher_params = _teacher()
    stage, student_def, student_params = distill.student_from_teacher(TINY, teacher_params, jax.random.PRNGKey(1))
    assert stage.unet.guidance_embedding and not TINY.unet.guidance_embedding
    teacher, student = teacher_def.bind(teacher_params), student_def.bind(student_params)
    batch, key = _batch(), jax.random.PRNGKey(2)
    np.testing.assert_allclose(
        student(batch["video"], jnp.zeros(3), batch["text"], batch["text_mask"], guidance=jnp.array([0.0, 2.0, 7.0])),
        teacher(batch["video"], jnp.zeros(3), batch["text"], batch["text_mask"]), atol=1e-5)
    loss = distill.guided_distillation_loss(student, teacher, batch, key, stage, w_range=(0.0, 0.0), x_transform=None)
    assert float(loss) < 1e-8  # at w = 0 the guided target is the conditional prediction, already matched
    clipped = distill.guided_distillation_loss(student, teacher, batch, key, stage, w_range=(0.0, 0.0))
    assert float(clipped) > 1e-3  # ... unless the teacher's sampler clips it: this random teacher leaves [-1, 1]


def test_guided_distillation_loss_matches_its_definition():
    teacher_def, teacher_params = _teacher()
    stage, student_def, student_params = distill.student_from_teacher(TINY, teacher_params, jax.random.PRNGKey(1))
    teacher, student = teacher_def.bind(teacher_params), student_def.bind(student_params)
    batch, key = _batch(), jax.random.PRNGKey(3)
    got = distill.guided_distillation_loss(student, teacher, batch, key, stage, w_range=(1.0, 5.0))
    k_t, k_noise, k_w, _, _ = jax.random.split(key, 5)
    logsnr = cosine_logsnr(jax.random.uniform(k_t, (3,)))
    z = diffuse(batch["video"], logsnr, jax.random.normal(k_noise, batch["video"].shape))
    w = jax.random.uniform(k_w, (3,), minval=1.0, maxval=5.0)
    x_student = x_from_v(z, student(z, logsnr, batch["text"], batch["text_mask"], guidance=w), logsnr)
    err = np.mean(np.square(np.asarray(x_student - _teacher_x(teacher, z, logsnr, batch, w))), axis=(1, 2, 3, 4))
    np.testing.assert_allclose(got, np.mean(np.maximum(np.exp(np.asarray(logsnr)), 1.0) * err), rtol=1e-4)


def test_progressive_distillation_loss_matches_its_definition():
    teacher_def, teacher_params = _teacher()
    stage, student_def, student_params = distill.student_from_teacher(TINY, teacher_params, jax.random.PRNGKey(1))
    teacher, student = teacher_def.bind(teacher_params), student_def.bind(student_params)
    batch, key, n = _batch(), jax.random.PRNGKey(4), 4
    got = distill.progressive_distillation_loss(student, teacher, batch, key, TINY, n, w_range=(2.0, 2.0))
    k_t, k_noise, _, _, _ = jax.random.split(key, 5)
    i = jax.random.randint(k_t, (3,), 0, n)
    lt, lmid, ls = cosine_logsnr((i + 1) / n), cosine_logsnr((i + 0.5) / n), cosine_logsnr(i / n)
    z = diffuse(batch["video"], lt, jax.random.normal(k_noise, batch["video"].shape))
    w = jnp.full((3,), 2.0)
    z_mid = D.ddim_step(z, _teacher_x(teacher, z, lt, batch, w), lt, lmid)
    z_s = D.ddim_step(z_mid, _teacher_x(teacher, z_mid, lmid, batch, w), lmid, ls)
    x_student = x_from_v(z, student(z, lt, batch["text"], batch["text_mask"], guidance=w), lt)
    err = np.mean(np.square(np.asarray(D.ddim_step(z, x_student, lt, ls) - z_s)), axis=(1, 2, 3, 4))
    # in z-space the one-step error is (α_s − σ_s α_t/σ_t)² times the x-space error
    a_t, s_t = alpha_sigma(lt)
    a_s, s_s = alpha_sigma(ls)
    scale = np.asarray(a_s - s_s * a_t / s_t) ** 2
    np.testing.assert_allclose(got, np.mean(np.maximum(np.exp(np.asarray(lt)), 1.0) * err / scale), rtol=2e-3)


def test_distill_step_trains_the_student_and_leaves_the_teacher_alone():
    teacher_def, teacher_params = _teacher()
    stage, student_def, student_params = distill.student_from_teacher(TINY, teacher_params, jax.random.PRNGKey(1))
    tx = default_optimizer(1e-3, 1)
    before = jax.tree.map(np.asarray, teacher_params)
    step = distill.make_distill_step(student_def, teacher_def, teacher_params, tx, stage,
                                     distill.progressive_distillation_loss, num_steps=2, w_range=(0.0, 3.0))
    state = init_state(student_params, tx)
    losses = []
    for k in range(3):
        state, metrics = step(state, _batch(), jax.random.PRNGKey(k))
        losses.append(float(metrics["loss"]))
    assert int(state["step"]) == 3 and all(np.isfinite(losses)) and losses[0] > 0
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(student_params))]
    assert all(moved)  # the guidance embedding included
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(teacher_params)):
        np.testing.assert_array_equal(a, np.asarray(b))
