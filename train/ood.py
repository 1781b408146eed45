"""Give a trained classifier its open-set score output and calibrate the ``unknown`` threshold on val.

Usage::

    python -m train.ood models/neu-compact/model.keras --data data/NEU-CLS --out runs/neu-compact-ood

Writes a model folder like ``edge-train``'s (``model.keras`` + metadata, ``preprocess.json``,
``classes.json``, ``split.csv``): the same classifier with a second output ``ood_score`` (``--score``, default max_softmax,
:func:`train.models.with_ood_score`) and an ``"ood"`` block in the metadata: the score, its threshold
(the ``--acceptance`` quantile of the validation images' scores, default 99 %), the acceptance and
the number of images it was calibrated on. Only the validation split is used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from edge.errors import EdgeError, cli_entry


def add_score(model_path, data, out, acceptance: float = 0.99, split_file=None, force: bool = False,
              batch: int = 64, score: str = "max_softmax") -> dict:
    """Write the model with its score output and calibrated threshold to ``out``; return the ``ood`` block."""
    from edge.data import load_images, select
    from edge.fsutil import staged_dir
    from edge.metadata import read_meta, write_meta
    from edge.ood import DEFAULT_ACCEPTANCE, SCORE_OUTPUT, calibrate
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model
    from train.models import with_ood_score

    model_path = Path(model_path)
    if not model_path.is_file():
        raise EdgeError(f"model {model_path} does not exist")
    if not 0.0 < acceptance <= 1.0:
        raise EdgeError(f"--acceptance must be in (0, 1], got {acceptance}")
    meta = read_meta(model_path)
    src = model_path.parent
    sf = split_file or (src / "split.csv")
    if not Path(sf).is_file():
        raise EdgeError(f"no split file {sf}: the threshold is calibrated on the validation split only")
    prep = Preprocess.load(src / "preprocess.json") if (src / "preprocess.json").is_file() else None
    if prep is None:
        from edge.metadata import preprocess_of

        prep = preprocess_of(meta)
    ds = select(data, "val", sf, classes=meta["classes"])
    images = load_images(ds)
    model = with_ood_score(load_keras_model(model_path), score)
    x = prep(np.stack([prep.resize(im) for im in images]))
    _, values = model.predict(x, batch_size=batch, verbose=0)
    values = np.asarray(values, np.float64).ravel()
    block = {"score": score, "output": SCORE_OUTPUT, "threshold": calibrate(values, acceptance),
             "acceptance": float(acceptance if acceptance else DEFAULT_ACCEPTANCE), "calibrated_on": "val",
             "n": int(len(values)), "split_file": str(sf),
             "rule": "unknown when score > threshold; higher = more unusual (edge/ood.py)"}
    with staged_dir(out, force=force) as stage:
        model.save(stage / "model.keras")
        for name in ("preprocess.json", "classes.json", "split.csv", "report.json"):
            if (src / name).is_file():
                shutil.copy(src / name, stage / name)
        new = dict(meta)
        new["outputs"] = [dict(meta.get("output") or {"name": "probs"}), {"name": SCORE_OUTPUT, "shape": [-1, 1]}]
        new["ood"] = block
        new["source_model"] = {"path": str(model_path)}
        write_meta(stage / "model.keras", new)
    return block


@cli_entry("edge-ood")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.ood", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model.keras from edge-train (split.csv beside it)")
    ap.add_argument("--data", required=True, help="the dataset the model was trained on")
    ap.add_argument("--split-file", help="split.csv (default: beside the model)")
    ap.add_argument("--acceptance", type=float, default=0.99, help="share of val images accepted (default 0.99)")
    ap.add_argument("--score", default="max_softmax", choices=["max_softmax", "energy"],
                    help="max_softmax (-max probability; chosen on leave-one-class-out val evidence, "
                         "docs/results/open-set.md) or energy (-logsumexp of the logits)")
    ap.add_argument("--out", required=True, help="output model folder")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    if Path(args.out).exists() and not args.force:
        raise EdgeError(f"output folder {args.out} already exists (use --force to replace it)")
    b = add_score(args.model, args.data, args.out, args.acceptance, args.split_file, args.force, score=args.score)
    print(f"edge-ood: {b['score']} score threshold {b['threshold']:.4f} accepts {100 * b['acceptance']:g} % of "
          f"{b['n']} val images -> {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
