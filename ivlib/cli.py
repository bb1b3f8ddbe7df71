"""The `ivlib` command line: `ivlib demo` (and, as the book grows, generate / train / distill / eval)."""

import argparse
import sys


def _demo(args):
    """Noise a few toy videos along the cosine schedule, then sample with the exact denoiser of that data."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ivlib.analytic import dataset_denoiser
    from ivlib.data import make_dataset
    from ivlib.diffusion import diffuse, sample
    from ivlib.schedules import cosine_logsnr
    from ivlib.viz import tile, write_video

    batch = make_dataset("digits", frames=args.frames, height=args.size, width=args.size, seed=args.seed).batch(0, args.videos)
    videos = jnp.asarray(batch["video"])
    t = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
    noise = jax.random.normal(jax.random.PRNGKey(args.seed), (len(t),) + videos.shape[1:])
    noised = diffuse(jnp.broadcast_to(videos[0], noise.shape), cosine_logsnr(t), noise)
    samples = sample(dataset_denoiser(videos), (4,) + videos.shape[1:], jax.random.PRNGKey(args.seed + 1),
                     args.steps, "ddim")
    nearest = np.argmin(np.asarray(jnp.sum((samples[:, None] - videos[None]) ** 2, axis=(2, 3, 4, 5))), axis=1)
    grid = tile(np.concatenate([np.clip(noised, -1, 1), samples[:1] * 0 - 1, samples]), columns=len(t))
    path = write_video(args.out, grid, fps=4, scale=4)
    print(f'toy video "{batch["caption"][0]}" noised at t = {[float(x) for x in t]} (top row)')
    print(f"{args.steps}-step DDIM samples from the exact denoiser of {args.videos} toy videos (bottom row) "
          f"reproduce training videos {nearest.tolist()}: the optimal denoiser of a finite dataset memorises it.")
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ivlib", description="Imagen Video, rebuilt in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write a short video showing the diffusion process on toy data")
    demo.add_argument("--out", default="outputs/demo.mp4")
    demo.add_argument("--frames", type=int, default=8)
    demo.add_argument("--size", type=int, default=32)
    demo.add_argument("--videos", type=int, default=8)
    demo.add_argument("--steps", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
