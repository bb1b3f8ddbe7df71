"""Noise conditioning augmentation, ablated on the toy SSR stage (chapter 06; paper §2.5).

Two SSR stages trained by the same command except `--aug-max-t` (0.6: augmentation, the shipped
`toy_ssr`; 0: none, `toy_ssr_noaug`) get the same 16x16x16 inputs of held-out prompts:

- "ground truth": the true low-resolution clips (what both saw in training);
- "base+tsr":     the toy cascade's own base and TSR samples for the same prompts (the domain gap);
- "ground truth + grain s": the true clips plus Gaussian grain of standard deviation s (GRAINS), a
                  controlled domain gap of the kind §2.5 says augmentation removes ("artifacts in the
                  samples"); here the augmented stage is sampled at SNR 5 and without augmentation only.

The augmented stage is sampled at several fixed augmentation SNRs (inf = none), the other at none
(it never saw noise). Every row gets, against an independent draw of ground-truth 16x32x32 test
videos, the toy evaluator's FVD and CLIP score (`ivlib.metrics`; the evaluator looks at 8x16x16) and
the full-resolution `metrics.patch_fd`; rows fed the true clips also get the PSNR to the true 16x32x32
videos. One command makes the file chapter 06 reads (it records the command, settings and time):

    python benchmarks/augmentation_ablation.py

(--num-videos / --steps / --sr-steps / --seed / --out change the defaults.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time

import jax
import numpy as np

from ivlib import metrics
from ivlib.cascade import Cascade, SamplerSettings, sample_stage, stage_settings
from ivlib.data import make_dataset
from ivlib.pretrained import load_stage, trained_text_encoder
from ivlib.text import EmbeddingCache, text_encoder
from ivlib.weights import WEIGHTS_DIR, read_metadata, shipped_weights_path

OUT = WEIGHTS_DIR / "toy_ssr.augmentation.json"
DATASET, DATASET_OPTIONS = "digits", {"max_objects": 1}  # what every toy stage trained on
AUG_SNRS = (1.0, 3.0, 5.0, 10.0, float("inf"))
GRAINS = (0.1, 0.2, 0.3)  # our choice: from about what a short-trained stage leaves on a black background, up


def super_resolve(stage, model_def, params, low, text, mask, aug_snr, sr: SamplerSettings, batch_size, seed):
    """SSR samples for inputs `low`, batch by batch with keys fold_in(PRNGKey(seed), i): every row of the
    ablation sees the same noise."""
    key, out = jax.random.PRNGKey(seed), []
    for i in range(0, len(low), batch_size):
        s = slice(i, i + batch_size)
        out.append(np.asarray(sample_stage(stage, model_def, params, jax.random.fold_in(key, i), text=text[s],
                                           text_mask=mask[s], low_res=low[s],
                                           **dataclasses.replace(sr, aug_snr=aug_snr).sample_kwargs())))
    return np.concatenate(out)


def run(num_videos, steps, sr_steps, batch_size, seed):
    ssr = load_stage("toy", "ssr")
    ssr_noaug = load_stage("toy", "ssr", path=shipped_weights_path("toy", "ssr_noaug"))
    cascade = Cascade.pretrained("toy", stages=["base", "tsr"])
    settings = stage_settings(cascade.stages, SamplerSettings(num_steps=steps, guidance=3.0),
                              SamplerSettings(num_steps=sr_steps, guidance=1.0))
    sr = settings["tsr"]
    out_stage = ssr[0]
    draw = lambda s: make_dataset(DATASET, frames=out_stage.frames, height=out_stage.height, width=out_stage.width,
                                  split="test", seed=s, **DATASET_OPTIONS)
    test = draw(seed)
    truth = test.batch(0, num_videos)
    reference = draw(seed + 1).batch(0, num_videos)["video"]
    prompts = truth["caption"]
    inputs = {"ground truth": test.render(truth["params"], out_stage.in_frames, out_stage.in_height,
                                          out_stage.in_width)}
    names = {trained_text_encoder("toy", "ssr"), trained_text_encoder("toy", "ssr", shipped_weights_path("toy", "ssr_noaug"))}
    if len(names) != 1:
        raise ValueError(f"the two SSR stages were trained on different text encoders {sorted(names)}; retrain one")
    text, mask = EmbeddingCache(text_encoder(names.pop())).get(list(prompts))  # what the SSR stages learnt to read
    start = time.perf_counter()
    inputs["base+tsr"] = cascade.sample_final(prompts, jax.random.PRNGKey(seed + 7), settings, batch_size)
    grain = np.random.default_rng(seed).standard_normal(inputs["ground truth"].shape).astype(np.float32)
    for g in GRAINS:
        inputs[f"ground truth + grain {g:g}"] = inputs["ground truth"] + g * grain
    evaluator = metrics.load_evaluator()

    def row(videos, source):
        r = {"fvd": metrics.fvd(evaluator, videos, reference), "clip_score": metrics.clip_score(evaluator, videos, prompts),
             "patch_fd": metrics.patch_fd(videos, reference, seed=seed)}
        if source.startswith("ground truth"):
            r["psnr"] = metrics.psnr(videos, truth["video"])
        return r

    rows = [{"model": "ground truth", "input": "-", "aug_snr": None, **row(truth["video"], "-")}]
    for source, low in inputs.items():
        levels = AUG_SNRS if source in ("ground truth", "base+tsr") else (5.0, float("inf"))
        for model, (stage, model_def, params), snrs in (("with augmentation", ssr, levels),
                                                         ("without augmentation", ssr_noaug, (float("inf"),))):
            for aug_snr in snrs:
                t = time.perf_counter()
                videos = super_resolve(stage, model_def, params, low, text, mask, aug_snr, sr, batch_size, seed)
                r = {"model": model, "input": source, "aug_snr": None if aug_snr == float("inf") else aug_snr,
                     **row(videos, source), "seconds": round(time.perf_counter() - t, 1)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    return rows, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-videos", type=int, default=32)
    parser.add_argument("--steps", type=int, default=32, help="base-stage steps")
    parser.add_argument("--sr-steps", type=int, default=16, help="TSR and SSR steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    rows, seconds = run(args.num_videos, args.steps, args.sr_steps, args.batch_size, args.seed)
    meta = {name: (lambda m: m.get("total_steps", m["steps"]))(read_metadata(shipped_weights_path("toy", name)))
            for name in ("base", "tsr", "ssr", "ssr_noaug")}  # total_steps: a run resumed from another file (chapter 04)
    result = {"command": "python benchmarks/augmentation_ablation.py " + " ".join(sys.argv[1:]), "rows": rows,
              "num_videos": args.num_videos, "steps": args.steps, "sr_steps": args.sr_steps, "seed": args.seed,
              "weights_steps": meta, "seconds": round(seconds, 1), "machine": platform.machine(),
              "dataset": DATASET, "dataset_options": DATASET_OPTIONS}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{seconds:.0f} s in all; wrote {args.out}")


if __name__ == "__main__":
    main()
