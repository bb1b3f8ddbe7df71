"""Which way does the toy base move the digit? Motion asked vs drawn on straight-line prompts (chapter 04).

    python benchmarks/which_way.py shipped=ivlib/assets/weights/toy_base.safetensors --guidance 0 1

For each NAME=PATH (a weight file of the toy base) and guidance weight w: 64 held-out captions, 16 moving left,
16 right, 16 up and 16 down (the first of each among `ivlib.listening.straight_line_clips`; the held-out split
alone would give mostly "up"), sampled with 32 ancestral steps and static clipping from the same noise for every file,
and judged by the attribute classifier (`ivlib.attributes`). Three numbers per row: motion accuracy; axis
accuracy (left/right drawn for left/right asked, up/down for up/down); and sign accuracy, among the videos on
the right axis, the share that also go the asked way (0.5 is a coin). Beside them, how symmetric in the frame
offset the file's relative keys are (`key_symmetry`). Rows (one per name and w, replaced when
measured again) go to ivlib/assets/weights/toy_base.which_way.json, which chapter 04 reads; each row names the
`ivlib train` commands that made its weights, so a file that does not ship (`ivlib export --step` of a run's
checkpoint) can be made again.
"""

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ivlib" / "assets" / "weights" / "toy_base.which_way.json"
AXIS = {"left": "horizontal", "right": "horizontal", "up": "vertical", "down": "vertical"}


def which_way(asked, drawn) -> dict:
    """{"motion", "axis", "sign", "on_axis"} from asked and drawn motion names (lists of equal length)."""
    on_axis = [a for a, d in zip(asked, drawn) if AXIS.get(d) == AXIS[a]]
    right = sum(a == d for a, d in zip(asked, drawn))
    return {"motion": right / len(asked), "axis": len(on_axis) / len(asked),
            "sign": right / len(on_axis) if on_axis else float("nan"), "on_axis": len(on_axis)}


def key_symmetry(path) -> dict | None:
    """How symmetric in the frame offset a weight file's relative keys are (None if it has none): the mean over
    temporal attention layers, heads and distances d of |a(+d) + a(-d)| / 2 ("symmetric", a preference for
    near or far frames alike in both directions) and of |a(+d) - a(-d)| / 2 ("antisymmetric", the part that can
    tell earlier frames from later ones), and the largest norm of one key vector."""
    import numpy as np
    from safetensors.numpy import load_file

    tables = [t.astype(np.float32) for name, t in load_file(str(path)).items() if "rel_keys" in name]
    if not tables:
        return None
    sym, anti = [], []
    for t in tables:  # (2 max_distance + 1, heads, head_dim), offset 0 in the middle
        c = t.shape[0] // 2
        ahead, behind = t[c + 1:], t[c - 1::-1]  # a(+d), a(-d) for d = 1 .. max_distance
        sym.append(np.linalg.norm(ahead + behind, axis=-1) / 2)
        anti.append(np.linalg.norm(ahead - behind, axis=-1) / 2)
    return {"symmetric": round(float(np.mean(np.concatenate([s.ravel() for s in sym]))), 4),
            "antisymmetric": round(float(np.mean(np.concatenate([a.ravel() for a in anti]))), 4),
            "max_norm": round(float(max(np.linalg.norm(t, axis=-1).max() for t in tables)), 3)}


def balanced_prompts(num_videos=64) -> list:
    """num_videos held-out captions, a quarter moving each way (left, right, up, down)."""
    from ivlib.data import captions as C
    from ivlib.listening import straight_line_clips

    pool = straight_line_clips(16 * num_videos)[1]
    per_way = num_videos // len(AXIS)
    return [p for way in AXIS for p in [q for q in pool if C.parse_caption(q)[0][0].motion == way][:per_way]]


def measure(name, path, guidances, prompts, seed=0) -> list:
    """One row per guidance weight: the weight file at `path` sampled on `prompts` (`balanced_prompts`)."""
    import jax
    import numpy as np

    from ivlib import attributes
    from ivlib.cascade import Cascade, SamplerSettings
    from ivlib.data import captions as C
    from ivlib.trainer import training_lineage
    from ivlib.weights import read_metadata

    cascade = Cascade.pretrained("toy", stages=["base"], weights={"base": path})
    names, classifier = attributes.classes()["motion"], attributes.load_attribute_classifier()
    asked = [C.parse_caption(p)[0][0].motion for p in prompts]
    meta, keys = read_metadata(path), key_symmetry(path)
    rows = []
    for guidance in guidances:
        start = time.perf_counter()
        settings = {"base": SamplerSettings(num_steps=32, guidance=guidance, threshold="static")}
        videos = cascade.sample_final(prompts, jax.random.PRNGKey(seed), settings, 32)
        predicted = attributes.predict(classifier, np.asarray(videos))["motion"]
        rows.append({"name": name, "weights": str(pathlib.Path(path)), "steps": meta.get("steps"),
                     "trained_by": training_lineage(meta), "guidance": guidance,
                     "relative_keys": cascade.stages[0].unet.relative_keys, "key_symmetry": keys,
                     "num_videos": len(prompts),
                     "asked": {m: asked.count(m) for m in sorted(set(asked))},
                     **which_way(asked, [names[i] for i in predicted]),
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="NAME=PATH of toy base weight files")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0])
    parser.add_argument("--num-videos", type=int, default=64)
    args = parser.parse_args()
    pairs = [f.split("=", 1) for f in args.files]
    bad = [f for f, p in zip(args.files, pairs) if len(p) != 2 or not pathlib.Path(p[1]).is_file()]
    if bad:
        sys.exit(f"which_way.py: expected NAME=PATH of an existing weight file; got {bad}")
    table = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    command = "python benchmarks/which_way.py " + " ".join(sys.argv[1:])
    prompts = balanced_prompts(args.num_videos)
    for name, path in pairs:
        for row in measure(name, path, args.guidance, prompts):
            print(json.dumps(row))
            table["rows"] = [r for r in table["rows"] if (r["name"], r["guidance"]) != (name, row["guidance"])] + [row]
        table["commands"] = [c for c in table.get("commands", []) if c != command] + [command]
        OUT.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
