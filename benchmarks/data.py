"""Throughput of the toy data pipeline (chapter 04): can training ever wait on it?

Prints one JSON line: videos per second for batches of 32 at the toy base stage's shape
(8 frames of 16x16) and at an SR target's shape (16 frames of 32x32), for the video sets, the
packed still images (chapter 07) and the re-rendering of a batch's params at the SR shape (what a
cascade stage's data loader does).  A toy training step takes about 1 s per batch of 32 on a
2-core CPU, so anything above ~300 videos/s keeps the data loader out of the way.

    python benchmarks/data.py [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from ivlib.data import make_dataset


def videos_per_second(fn, batch_size: int, batches: int) -> float:
    fn(0)  # warm caches (scikit-learn digits, sprite textures)
    seconds = []
    for index in range(1, batches + 1):
        start = time.perf_counter()
        fn(index)
        seconds.append(time.perf_counter() - start)
    return batch_size / float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    b, n = args.batch_size, args.batches
    result = {"benchmark": "data", "batch_size": b, "machine": platform.machine(), "videos_per_s": {}}
    for name in ("digits", "shapes", "digits+shapes", "images", "joint"):
        for frames, size in ((8, 16), (16, 32)):
            ds = make_dataset(name, frames=frames, height=size, width=size)
            result["videos_per_s"][f"{name} {frames}x{size}x{size}"] = round(
                videos_per_second(lambda i: ds.batch(i, b), b, n), 1)
    base = make_dataset("digits+shapes", frames=8, height=16, width=16)
    result["videos_per_s"]["re-render 8x16x16 params at 16x32x32"] = round(
        videos_per_second(lambda i: base.render(base.batch(i, b)["params"], 16, 32, 32), b, n), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
