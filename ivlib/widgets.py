"""Figures and interactive demos for the book (chapters 01, 02, 04, 06, 07 and 08).

Every demo is a pure `render_*` function — same inputs, same figure, no global state — that
returns a `matplotlib.figure.Figure`. A chapter first shows it plainly at a default setting (that
is what the static book shows and what CI executes) and then wraps it in an ipywidgets slider
with the matching `*_widget` function, which only works in a live kernel (Jupyter, Colab, Binder).
Figures are built with `matplotlib.figure.Figure`, not `pyplot`, so they are displayed exactly
once: by the notebook when a cell returns one, or by the widget when a slider moves.
"""

import numpy as np

from ivlib.diffusion import diffuse
from ivlib.schedules import alpha_sigma, cosine_logsnr


def _check_t(t):
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1] (0 = data, 1 = noise), got {t!r}")
    return t


def _check_video(video, noise):
    video, noise = np.asarray(video, np.float32), np.asarray(noise, np.float32)
    if video.ndim != 4 or video.shape[-1] not in (1, 3):
        raise ValueError(f"video must have shape (frames, height, width, channels) with 1 or 3 channels, got {video.shape}")
    if noise.shape != video.shape:
        raise ValueError(f"noise must have the video's shape {video.shape}, got {noise.shape}")
    return video, noise


def _as_image(frame):
    """A [-1, 1] frame (H, W, C) -> [0, 1] pixels for imshow, clipped (noisy latents leave [-1, 1])."""
    image = np.clip((frame + 1.0) / 2.0, 0.0, 1.0)
    return image[..., 0] if image.shape[-1] == 1 else image


def render_noising(video, noise, t, logsnr_fn=cosine_logsnr, num_frames=4):
    """Figure of z_t = α_t x + σ_t ε for one video at time t, next to the schedule (chapter 01).

    video, noise: (F, H, W, C) float arrays, video in [-1, 1]; t: float in [0, 1]. Shows the first
    `num_frames` frames of z_t (clipped to [-1, 1] for display) and α, σ over t with t marked.
    """
    from matplotlib.figure import Figure

    t = _check_t(t)
    video, noise = _check_video(video, noise)
    logsnr = float(logsnr_fn(t))
    alpha, sigma = (float(a) for a in alpha_sigma(logsnr))  # for the title
    z = np.asarray(diffuse(video, logsnr, noise))
    num_frames = max(1, min(int(num_frames), video.shape[0]))

    fig = Figure(figsize=(2.0 * num_frames + 3.2, 2.4), layout="constrained")
    axes = fig.subplots(1, num_frames + 1, width_ratios=[1.0] * num_frames + [1.6])
    for i, ax in enumerate(axes[:num_frames]):
        ax.imshow(_as_image(z[i]), cmap="gray" if video.shape[-1] == 1 else None, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(f"frame {i}", fontsize=9)
        ax.set_axis_off()
    grid = np.linspace(0.0, 1.0, 201)
    a_grid, s_grid = (np.asarray(v) for v in alpha_sigma(logsnr_fn(grid)))
    ax = axes[-1]
    ax.plot(grid, a_grid, label="α_t")
    ax.plot(grid, s_grid, label="σ_t")
    ax.axvline(t, color="k", lw=0.8)
    ax.set_xlabel("t")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="center left")
    fig.suptitle(f"t = {t:.2f}:  λ = {round(logsnr, 2) + 0.0:.2f},  α = {alpha:.3f},  σ = {sigma:.3f}", fontsize=10)
    return fig


def noising_widget(video, noise, logsnr_fn=cosine_logsnr, t=0.5):
    """ipywidgets slider over t driving `render_noising` (chapter 01). Returns the widget to display."""
    import ipywidgets

    video, noise = _check_video(video, noise)
    slider = ipywidgets.FloatSlider(value=_check_t(t), min=0.0, max=1.0, step=0.01, description="t",
                                    continuous_update=False)
    return ipywidgets.interactive(lambda t: render_noising(video, noise, t, logsnr_fn), t=slider)


def mixture_density(x, means, stds, weights):
    """Density of a 1-D mixture of Gaussians at points x (chapter 02). means, stds, weights: (K,)."""
    x = np.asarray(x, np.float64)[..., None]
    means, stds, weights = (np.asarray(a, np.float64) for a in (means, stds, weights))
    if not means.shape == stds.shape == weights.shape or means.ndim != 1:
        raise ValueError(f"means, stds and weights must all have shape (K,), got {means.shape}, {stds.shape}, {weights.shape}")
    return np.sum(weights * np.exp(-0.5 * ((x - means) / stds) ** 2) / (stds * np.sqrt(2.0 * np.pi)), axis=-1)


def render_histogram(samples, means, stds, weights, title="", bins=60, limits=(-1.5, 1.5)):
    """Histogram of 1-D samples against the true mixture density (chapter 02).

    samples: any shape (flattened); means, stds, weights: (K,) of the data's mixture of Gaussians.
    """
    from matplotlib.figure import Figure

    samples = np.asarray(samples, np.float64).ravel()
    grid = np.linspace(*limits, 400)
    fig = Figure(figsize=(5.0, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.hist(np.clip(samples, *limits), bins=bins, range=limits, density=True, alpha=0.6, label="samples")
    ax.plot(grid, mixture_density(grid, means, stds, weights), "k", lw=1.2, label="data density")
    ax.set_xlabel("x")
    ax.set_xlim(*limits)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def render_sampler(means, stds, weights, num_steps, sampler="ddim", gamma=0.0, batch=4096, seed=0):
    """Sample 1-D mixture data with its exact denoiser and plot the histogram (chapter 02).

    Deterministic given its arguments: the same seed gives the same figure.
    """
    import jax

    from ivlib.analytic import mixture_denoiser
    from ivlib.diffusion import sample

    denoise_fn = _cached_denoiser(mixture_denoiser, tuple(np.ravel(means)), tuple(np.ravel(stds)), tuple(np.ravel(weights)))
    x = sample(denoise_fn, (int(batch), 1), jax.random.PRNGKey(seed), int(num_steps), sampler, gamma)
    name = "DDIM" if sampler == "ddim" else f"ancestral, γ = {float(gamma):.2f}"
    return render_histogram(x, means, stds, weights, title=f"{name}, {int(num_steps)} steps")


_DENOISERS = {}


def _cached_denoiser(make, means, stds, weights):
    """One denoiser object per mixture, so `sample` (jitted with the function as a static argument) compiles once."""
    key = (make, means, stds, weights)
    if key not in _DENOISERS:
        _DENOISERS[key] = make(np.asarray(means, np.float32)[:, None], np.asarray(stds, np.float32),
                               np.asarray(weights, np.float32))
    return _DENOISERS[key]


def sampler_widget(means, stds, weights, batch=4096, seed=0):
    """Sliders over steps, sampler and γ driving `render_sampler` (chapter 02). Returns the widget."""
    import ipywidgets

    steps = ipywidgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64, 128], value=8, description="steps",
                                       continuous_update=False)
    sampler = ipywidgets.ToggleButtons(options=[("DDIM", "ddim"), ("ancestral", "ancestral")], value="ddim",
                                       description="sampler")
    gamma = ipywidgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.1, description="γ", continuous_update=False)
    return ipywidgets.interactive(
        lambda num_steps, sampler, gamma: render_sampler(means, stds, weights, num_steps, sampler, gamma, batch, seed),
        num_steps=steps, sampler=sampler, gamma=gamma)


def render_prompt(cascade, prompt, seed=0, guidance=None, oscillate=False, threshold="static", num_steps=32,
                  sampler="ancestral", num_videos=1, allow_unknown_words=False):
    """Text -> video with a `Cascade` (chapters 04, 08): returns the final videos (num_videos, F, H, W, C) as numpy.

    Pure: the same arguments give the same video. guidance: the base stage's w (None: the toy's default,
    `ivlib.configs.toy.GUIDANCE`). `oscillate` alternates `guidance` and 1 after a quarter of the steps at
    the high weight (paper §2.6.2) on the base stage. A word the toy text encoder does not know raises a
    ValueError naming it, unless allow_unknown_words (`Cascade.sample`).
    """
    import jax

    from ivlib.cascade import SamplerSettings, stage_settings
    from ivlib.configs import toy

    guidance = toy.GUIDANCE if guidance is None else guidance
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    base = SamplerSettings(num_steps=int(num_steps), sampler=sampler, guidance=float(guidance), threshold=threshold,
                           oscillate=(float(guidance), 1.0, int(num_steps) // 4) if oscillate else None)
    sr = SamplerSettings(num_steps=int(num_steps), sampler=sampler, guidance=1.0, threshold=threshold)
    settings = stage_settings(cascade.stages, base, sr)
    videos = cascade.sample([prompt] * int(num_videos), jax.random.PRNGKey(int(seed)), settings, allow_unknown_words)
    return np.asarray(videos[-1])


def prompt_widget(cascade, prompt="a red 3 moving left", **defaults):
    """Type a prompt, pick a seed and a guidance weight, see the video (chapters 04, 08). Returns the widget.

    A prompt it cannot sample (a word the toy model does not know, an empty prompt) shows the error's
    message instead of a video; `defaults` go to `render_prompt` (e.g. allow_unknown_words=True)."""
    import ipywidgets

    from ivlib.viz import show_videos

    text = ipywidgets.Text(value=prompt, description="prompt", continuous_update=False)
    seed = ipywidgets.IntSlider(value=0, min=0, max=20, description="seed", continuous_update=False)
    from ivlib.configs import toy

    weight = ipywidgets.FloatSlider(value=defaults.pop("guidance", toy.GUIDANCE), min=0.0, max=15.0, step=0.5,
                                    description="guidance w", continuous_update=False)
    threshold = ipywidgets.ToggleButtons(options=["dynamic", "static", "none"], value="static", description="threshold")
    oscillate = ipywidgets.Checkbox(value=False, description="oscillating guidance")

    def show(prompt, seed, guidance, threshold, oscillate):
        try:
            video = render_prompt(cascade, prompt, seed, guidance, oscillate, threshold, **defaults)
        except ValueError as err:
            print(f"error: {err}")
            return
        show_videos(video, titles=[prompt])

    return ipywidgets.interactive(show, prompt=text, seed=seed, guidance=weight, threshold=threshold, oscillate=oscillate)


def render_comparison(cascades, prompt, seed=0, guidance=None, num_steps=32) -> dict:
    """{name: video (F, H, W, C)} of one prompt through each of several cascades (chapter 07).

    Pure, and fair: every cascade starts from the same noise (the same seed), so what differs is what the
    models learnt. cascades: {name: Cascade}; the rest as in `render_prompt`."""
    if not cascades:
        raise ValueError("cascades: expected a dict {name: Cascade} with at least one entry")
    return {name: render_prompt(c, prompt, seed, guidance, num_steps=num_steps)[0] for name, c in cascades.items()}


def comparison_widget(cascades, prompt="an orange 4 moving up", **defaults):
    """Type a prompt, pick a seed, see it through each model side by side (chapter 07). Returns the widget.

    A prompt that cannot be sampled shows the error's message instead; `defaults` go to `render_comparison`."""
    import ipywidgets

    from ivlib.viz import show_videos

    text = ipywidgets.Text(value=prompt, description="prompt", continuous_update=False)
    seed = ipywidgets.IntSlider(value=0, min=0, max=20, description="seed", continuous_update=False)

    def show(prompt, seed):
        try:
            videos = render_comparison(cascades, prompt, seed, **defaults)
        except ValueError as err:
            print(f"error: {err}")
            return
        show_videos(np.stack(list(videos.values())), titles=list(videos))

    return ipywidgets.interactive(show, prompt=text, seed=seed)


def render_distillation(teacher, student, prompt, steps=8, seed=0, guidance=None, sampler="stochastic",
                        teacher_steps=32) -> dict:
    """{label: video (F, H, W, C)}: one prompt through a teacher cascade (`teacher_steps` ancestral steps per
    stage, two passes each with guidance) and through its distilled students (`steps` steps of `sampler`, one
    pass each), from the same seed (chapter 09). Pure; guidance as in `render_prompt`."""
    return {f"teacher: {teacher_steps} steps x 2 passes": render_prompt(teacher, prompt, seed, guidance,
                                                                         num_steps=teacher_steps)[0],
            f"student: {steps} {sampler} steps": render_prompt(student, prompt, seed, guidance, num_steps=steps,
                                                                sampler=sampler)[0]}


def distillation_widget(teacher, student, prompt="the red digit 3 moving left", **defaults):
    """Pick the student's steps and sampler, a seed and w; see teacher and student side by side (chapter 09).
    Returns the widget; a prompt that cannot be sampled shows the error's message instead."""
    import ipywidgets

    from ivlib.configs import toy
    from ivlib.viz import show_videos

    text = ipywidgets.Text(value=prompt, description="prompt", continuous_update=False)
    steps = ipywidgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32], value=8, description="steps",
                                       continuous_update=False)
    sampler = ipywidgets.ToggleButtons(options=["stochastic", "ddim"], description="sampler")
    seed = ipywidgets.IntSlider(value=0, min=0, max=20, description="seed", continuous_update=False)
    weight = ipywidgets.FloatSlider(value=toy.GUIDANCE, min=0.0, max=4.0, step=0.5, description="w",
                                    continuous_update=False)

    def show(prompt, steps, sampler, seed, guidance):
        try:
            videos = render_distillation(teacher, student, prompt, steps, seed, guidance, sampler, **defaults)
        except ValueError as err:
            print(f"error: {err}")
            return
        show_videos(np.stack(list(videos.values())), titles=list(videos))

    return ipywidgets.interactive(show, prompt=text, steps=steps, sampler=sampler, seed=seed, guidance=weight)


AUG_SNRS = (0.3, 1.0, 3.0, 5.0, 10.0, 30.0, 100.0, float("inf"))


def render_augmented_sr(stage, model_def, params, low_res, text, text_mask, aug_snr=5.0, seed=0, num_steps=16,
                        guidance=1.0, num_frames=4):
    """Figure: what an SR stage is given at sampling-time augmentation SNR `aug_snr` and what it makes
    of it (chapter 06). low_res: one video (F, h, w, C) of the previous stage; text, text_mask: its
    embedding (1, L, D), (1, L). Top row: the upsampled conditioning video after augmentation, exactly
    as `sample_stage` noises it; bottom row: the stage's sample. Pure: same arguments, same figure."""
    import jax
    import jax.numpy as jnp
    from matplotlib.figure import Figure

    from ivlib.cascade import sample_stage, sampling_condition

    aug_snr = float(aug_snr)
    if not aug_snr > 0:
        raise ValueError(f"aug_snr must be positive (inf = no augmentation), got {aug_snr!r}")
    low_res = jnp.asarray(low_res, jnp.float32)[None]
    key = jax.random.PRNGKey(int(seed))
    out = sample_stage(stage, model_def, params, key, text=text, text_mask=text_mask, low_res=low_res,
                       num_steps=int(num_steps), guidance=float(guidance), aug_snr=aug_snr)
    cond, _, _ = sampling_condition(stage, low_res, key, aug_snr)  # what sample_stage gave the model
    cond, out = np.asarray(cond[0]), np.asarray(out[0])
    frames = np.linspace(0, out.shape[0] - 1, num_frames).round().astype(int)
    fig = Figure(figsize=(1.6 * num_frames, 3.4))
    axes = fig.subplots(2, num_frames)
    for j, f in enumerate(frames):
        for row, video in enumerate((cond, out)):
            axes[row, j].imshow(_as_image(video[f]), interpolation="nearest")
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
        axes[0, j].set_title(f"frame {f}", fontsize=8)
    axes[0, 0].set_ylabel("input (noised)", fontsize=8)
    axes[1, 0].set_ylabel(f"{stage.name} output", fontsize=8)
    fig.suptitle(f"sampling-time augmentation SNR {aug_snr:g}" + (" (none)" if aug_snr == float("inf") else ""),
                 fontsize=10)
    return fig


def augmentation_widget(stage, model_def, params, low_res, text, text_mask, aug_snr=5.0, **kwargs):
    """ipywidgets slider over the sampling-time augmentation SNR driving `render_augmented_sr` (chapter 06)."""
    import ipywidgets

    slider = ipywidgets.SelectionSlider(options=list(AUG_SNRS), value=aug_snr, description="aug SNR",
                                        continuous_update=False)
    seed = ipywidgets.IntSlider(value=0, min=0, max=20, description="seed", continuous_update=False)
    return ipywidgets.interactive(
        lambda aug_snr, seed: render_augmented_sr(stage, model_def, params, low_res, text, text_mask, aug_snr, seed,
                                                  **kwargs), aug_snr=slider, seed=seed)
