"""Showing videos and drawings in a notebook with mediapy and matplotlib (all chapters).

Writing video files, and the ffmpeg that mediapy needs, is `ivlib.media`'s.
"""

import numpy as np

from ivlib.media import ensure_ffmpeg, to_uint8, upscale


def tile(videos, columns=None, pad=1):
    """Arrange a batch of videos (B, F, H, W, C) into one video (F, H', W', C) on a grid with padding."""
    videos = np.asarray(videos)
    if videos.ndim != 5:
        raise ValueError(f"videos must have shape (batch, frames, height, width, channels), got {videos.shape}")
    b, f, h, w, c = videos.shape
    columns = columns or b
    rows = -(-b // columns)
    canvas = np.full((f, rows * (h + pad) + pad, columns * (w + pad) + pad, c), videos.max(), videos.dtype)
    for i in range(b):
        r, col = divmod(i, columns)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = videos[i]
    return canvas


def show_videos(videos, titles=None, fps=8, scale=4, **kwargs):
    """Show a batch of videos (B, F, H, W, C) in [-1, 1] side by side in a notebook (mediapy)."""
    import mediapy

    ensure_ffmpeg()
    frames = [to_uint8(upscale(v, scale)) for v in np.asarray(videos)]
    return mediapy.show_videos(frames, titles=titles, fps=fps, codec="gif", **kwargs)


def show_stages(videos, names, size=128, **kwargs):
    """Show one video per cascade stage (a list of (F, H, W, C), sizes may differ) at about the same
    on-screen size, each titled with its name and frames x height x width (chapters 05–06)."""
    import mediapy

    ensure_ffmpeg()
    frames, titles = [], []
    for video, name in zip(videos, names):
        video = np.asarray(video)
        frames.append(to_uint8(upscale(video, max(1, size // video.shape[1]))))
        titles.append(f"{name} {'x'.join(map(str, video.shape[:3]))}")
    return mediapy.show_videos(frames, titles=titles, codec="gif", **kwargs)


def draw_cascade(stages, ax=None, title=None):
    """Draw a cascade as a row of boxes, one per stage, with its kind, output frames x width x height
    (as the paper writes them) and frame rate, and arrows for the video flowing on (chapter 05)."""
    import matplotlib.pyplot as plt

    colors = {"base": "#fde2a8", "tsr": "#c9e4f6", "ssr": "#d7f0c8"}
    if ax is None:
        _, ax = plt.subplots(figsize=(1.9 * len(stages) + 0.6, 1.7))
    for i, s in enumerate(stages):
        ax.add_patch(plt.Rectangle((i * 1.9, 0), 1.5, 1.0, facecolor=colors[s.kind], edgecolor="black"))
        ax.text(i * 1.9 + 0.75, 0.5, f"{s.name}\n{s.kind.upper()}\n{s.frames}x{s.width}x{s.height}\n{s.fps:g} fps",
                ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(i * 1.9, 0.5), xytext=(i * 1.9 - 0.4, 0.5), arrowprops={"arrowstyle": "->"})
    ax.text(-0.2, 0.5, "text", ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.9, len(stages) * 1.9 - 0.3)
    ax.set_ylim(-0.1, 1.1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
