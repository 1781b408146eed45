"""Give a trained classifier its open-set score output and calibrate the ``unknown`` threshold on val.

Usage::

    python -m train.ood models/neu-compact/model.keras --data data/NEU-CLS --out runs/neu-compact-ood
    edge-convert runs/neu-compact-ood/model.keras --fp16 --int8 --calib-data data/NEU-CLS -o runs/conv-ood
    python -m train.ood runs/conv-ood/model.int8.onnx --data data/NEU-CLS --recalibrate

Writes a model folder like ``edge-train``'s (``model.keras`` + metadata, ``preprocess.json``,
``classes.json``, ``split.csv``): the same classifier with a second output ``ood_score`` (``--score``, default
relative_mahalanobis_l2, :func:`train.models.with_ood_score`) and an ``"ood"`` block in the metadata: the score, its
threshold (the ``--acceptance`` quantile of the validation images' scores, default 99 %), the acceptance and
the number of images it was calibrated on. The threshold uses the validation split only; the class
statistics of the feature scores (relative_mahalanobis_l2, relative_mahalanobis, logit_cosine, cosine,
mahalanobis) and knn's bank of features the training split only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from edge.errors import EdgeError, cli_entry
from edge.ood import SCORES


def add_score(model_path, data, out, acceptance: float = 0.99, split_file=None, force: bool = False,
              batch: int = 64, score: str = "relative_mahalanobis_l2") -> dict:
    """Write the model with its score output and calibrated threshold to ``out``; return the ``ood`` block."""
    from edge.data import load_images, resolve_split_file, select
    from edge.fsutil import staged_dir
    from edge.metadata import read_meta, write_meta
    from edge.ood import DEFAULT_ACCEPTANCE, FEATURE_SCORES, SCORE_OUTPUT, calibrate
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
    sf = resolve_split_file(model_path, split_file, "val", fallback=False)
    if not Path(sf).is_file():
        raise EdgeError(f"no split file {sf}: the threshold is calibrated on the validation split only")
    prep = Preprocess.load(src / "preprocess.json") if (src / "preprocess.json").is_file() else None
    if prep is None:
        from edge.metadata import preprocess_of

        prep = preprocess_of(meta)
    base = load_keras_model(model_path)
    stats, fit = None, None
    if score in FEATURE_SCORES:  # class statistics of the training split, stored in the graph as constants
        stats, fit = _train_stats(base, data, sf, meta["classes"], prep, batch, score)
    model = with_ood_score(base, score, stats)
    ds = select(data, "val", sf, classes=meta["classes"])
    images = load_images(ds)
    x = prep(np.stack([prep.resize(im) for im in images]))
    _, values = model.predict(x, batch_size=batch, verbose=0)
    values = np.asarray(values, np.float64).ravel()
    block = {"score": score, "output": SCORE_OUTPUT, "threshold": calibrate(values, acceptance),
             "acceptance": float(acceptance if acceptance else DEFAULT_ACCEPTANCE), "calibrated_on": "val",
             "n": int(len(values)), "split_file": str(sf),
             "rule": "unknown when score > threshold; higher = more unusual (edge/ood.py)"}
    if fit:
        block["class_stats"] = fit
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


def _train_stats(model, data, split_file, classes, prep, batch: int, score: str):
    """The constants of a feature score from the training split: class means and shared precision of the
    model's penultimate features (of its logits for logit_cosine; plus one Gaussian of all features for the
    relative scores, of the l2-normalised ones for relative_mahalanobis_l2); for knn, the l2-normalised features
    themselves."""
    import keras

    from edge.data import load_images, select
    from edge.ood import RELATIVE_SCORES, fit_feature_stats, fit_knn_bank, fit_relative_stats, l2_normalise
    from train.models import features_of, logits_of

    logits = score == "logit_cosine"
    ds = select(data, "train", split_file, classes=classes)
    feats = keras.Model(model.inputs, logits_of(model) if logits else features_of(model))
    x = prep(np.stack([prep.resize(im) for im in load_images(ds)]))
    f = np.asarray(feats.predict(x, batch_size=batch, verbose=0), np.float64)
    if score == "knn":
        stats = fit_knn_bank(f)
    elif score in RELATIVE_SCORES:
        stats = fit_relative_stats(l2_normalise(f) if RELATIVE_SCORES[score] else f, ds.labels, len(classes))
    else:
        stats = fit_feature_stats(f, ds.labels, len(classes))
    of = "logits" if logits else ("l2-normalised " if RELATIVE_SCORES.get(score) else "") + "penultimate features"
    return stats, {"fit_on": "train", "n": int(len(f)), "dims": int(f.shape[1]), "of": of}


def recalibrate(artifact, data, split_file=None, acceptance=None, batch: int = 64) -> dict:
    """Re-calibrate an artifact's threshold on the validation split with its own scores (metadata rewritten).

    An FP16 or INT8 artifact computes slightly different probabilities, so its score quantile on val moves:
    each artifact gets the threshold that accepts the stated share of val images *as it scores them*.

    Raises:
        EdgeError: the artifact has no score output / ood block, or no split file.
    """
    from edge.data import load_images, select
    from edge.metadata import read_meta, write_meta
    from edge.ood import calibrate, score_of
    from edge.runtime import load_runner

    artifact = Path(artifact)
    meta = read_meta(artifact)
    block = score_of(meta)
    if block is None:
        raise EdgeError(f"{artifact} has no 'ood' block in its metadata (make the model with python -m train.ood)")
    sf = Path(split_file or block.get("split_file") or "")
    if not sf.is_file():
        raise EdgeError(f"no split file {sf}: the threshold is calibrated on the validation split only")
    acc = float(acceptance if acceptance is not None else block.get("acceptance", 0.99))
    ds = select(data, "val", sf, classes=meta["classes"])
    images = load_images(ds)
    scores = []
    with load_runner(artifact, warmup=0) as r:
        for i in range(0, len(images), batch):
            r.infer_images(images[i:i + batch])
            if r.last_score is None:
                raise EdgeError(f"{artifact} gives no ood_score output")
            scores.append(r.last_score)
    new = dict(block, threshold=calibrate(np.concatenate(scores), acc), acceptance=acc, n=len(images),
               calibrated_on="val", calibrated_with=artifact.name)
    write_meta(artifact, {**meta, "ood": new})
    return new


@cli_entry("edge-ood")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.ood", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model.keras from edge-train (split.csv beside it)")
    ap.add_argument("--data", required=True, help="the dataset the model was trained on")
    ap.add_argument("--split-file", help="split.csv (default: beside the model)")
    ap.add_argument("--acceptance", type=float, default=0.99, help="share of val images accepted (default 0.99)")
    ap.add_argument("--score", default="relative_mahalanobis_l2", choices=list(SCORES),
                    help="relative_mahalanobis_l2 (default: the smallest squared Mahalanobis distance of the "
                         "l2-normalised penultimate features to the training split's class means, minus their "
                         "distance to one Gaussian of all training features; chosen on leave-one-class-out val "
                         "evidence, round 4 of docs/results/open-set-loco.md), relative_mahalanobis (the same on the "
                         "features themselves), knn (-max cosine of the penultimate features to the training images' "
                         "own, k = 1; the default until round 4), logit_cosine (-max cosine of the centred logits to "
                         "the training split's class means), max_softmax (-max probability), energy (-logsumexp of "
                         "the logits), mahalanobis / cosine (penultimate features to the class means)")
    ap.add_argument("--out", help="output model folder")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--recalibrate", action="store_true",
                    help="MODEL is an artifact with a score output (e.g. model.int8.onnx): re-calibrate its threshold "
                         "on val with its own scores and rewrite its metadata")
    args = ap.parse_args(argv)
    if args.recalibrate:
        b = recalibrate(args.model, args.data, args.split_file, None if args.acceptance == 0.99 else args.acceptance)
        print(f"edge-ood: {args.model}: {b['score']} threshold {b['threshold']:.4f} accepts "
              f"{100 * b['acceptance']:g} % of {b['n']} val images as this artifact scores them")
        return 0
    if not args.out:
        raise EdgeError("--out is required (or --recalibrate ARTIFACT)")
    if Path(args.out).exists() and not args.force:
        raise EdgeError(f"output folder {args.out} already exists (use --force to replace it)")
    b = add_score(args.model, args.data, args.out, args.acceptance, args.split_file, args.force, score=args.score)
    print(f"edge-ood: {b['score']} score threshold {b['threshold']:.4f} accepts {100 * b['acceptance']:g} % of "
          f"{b['n']} val images -> {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
