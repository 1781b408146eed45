"""Rewrite a compact model trained with the concatenated avgmax head into the split head (same function).

Usage::

    python -m train.split_head runs/v4/compact-avgmax-s42 runs/compact-s42

The recipe-v4 trial runs (docs/results/recipe-trials.md) were trained with ``Dense(Concatenate([gap,
gmp]))``; :func:`train.models.build_compact` now writes that head as two Dense layers summed, so each
pooling gets its own INT8 scale. This copies the run folder and replaces ``model.keras`` by the split
form with the same weights, after checking on the folder's own validation images that both give the
same probabilities (max abs difference <= 1e-5). ``report.json`` keeps the run's figures (the function
is unchanged) and records where the model came from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from edge.errors import EdgeError, cli_entry

#: Largest probability difference accepted between the concatenated and the split head.
MAX_DIFF = 1e-5


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train.split_head", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="edge-train output folder with the concatenated head")
    ap.add_argument("dst", help="new folder")
    ap.add_argument("--data", help="dataset of the run (default: report.json's data)")
    ap.add_argument("--force", action="store_true", help="replace an existing dst")
    return ap


@cli_entry("train.split_head")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    if not (src / "model.keras").is_file() or not (src / "report.json").is_file():
        raise EdgeError(f"{src} is not an edge-train output folder (needs model.keras and report.json)")
    if dst.exists() and not args.force:
        raise EdgeError(f"{dst} exists (use --force to replace it)")
    from edge.data import load_images, select
    from edge.fsutil import staged_dir, write_json
    from edge.metadata import read_meta, write_meta
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model
    from train.models import split_concat_head

    rep = json.loads((src / "report.json").read_text())
    prep = Preprocess.load(src / "preprocess.json")
    val = select(args.data or rep["data"], "val", split_file=src / "split.csv")
    x = prep(list(load_images(val)))
    old = load_keras_model(src / "model.keras")
    new = split_concat_head(old)
    diff = float(np.abs(old.predict(x, verbose=0) - new.predict(x, verbose=0)).max())
    if not diff <= MAX_DIFF:
        raise EdgeError(f"split head differs from {src}/model.keras by {diff:.2e} (> {MAX_DIFF:g}) on {len(x)} val images")
    with staged_dir(dst, force=args.force) as stage:
        for f in src.iterdir():
            if f.is_file() and f.name not in ("model.keras", "model.keras.json"):
                shutil.copy2(f, stage / f.name)
        new.save(stage / "model.keras")
        write_meta(stage / "model.keras", read_meta(src / "model.keras"))
        rep.update({"model": str(dst / "model.keras"), "split_file": str(dst / "split.csv")})
        rep["training"]["head"] = {"form": "split", "from": str(src / "model.keras"),
                                   "max_abs_prob_diff_val": diff, "val_images": len(x)}
        write_json(stage / "report.json", rep)
    print(f"train.split_head: {src} -> {dst}: max abs prob diff {diff:.2e} on {len(x)} val images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
