"""Leave-one-class-out open-set protocol on NEU: train on five classes, the sixth is "unknown"; six folds.

For each held-out class, the compact model is trained with ``edge-train`` on the other five classes,
keeping each file's membership of the reference split (``--split-file``, e.g. models/neu-compact/split.csv),
so every fold's validation and test images are the reference model's. Then, per score of :mod:`edge.ood`
(``energy`` from the logits, the ``max_softmax`` baseline, ``mahalanobis`` / ``cosine`` of the
penultimate features to the class means, ``logit_cosine`` of the centred logits to theirs and ``knn``,
the nearest training image's feature, with the statistics of the fold's **training** images):

* selection evidence: AUROC on the **validation** images (five known classes vs the held-out class's
  validation images);
* the threshold: calibrated on the known classes' validation images at ``--acceptance`` (99 %);
* reported figures: AUROC, FPR at 95 % TPR and the decisions at that threshold on the **test** images
  (known classes' test images vs the held-out class's test images).

Training images of the held-out class are never used. The choice among the scores (written before the
runs, docs/results/open-set-loco.md): the highest mean validation AUROC; scores within 0.005 of it tie, and
a tie goes to the first of :data:`PREFERENCE` (the current default, then the fewer stored constants).
Existing fold models are reused (no retraining; their training time is read from their report).
``--epochs``/``--input-size`` give a shorter recipe (default 12 epochs at 64x64, rounds 1-2; round 3
used 30 epochs at 128x128, ~10 min per fold on one loaded core); 0 takes the compact recipe's default
(40 epochs, 160x160). ``--augment`` (default line, recipe v5's) and ``--label-smoothing`` (default: the
recipe's 0.1) are passed to edge-train.

Usage::

    python scripts/loco.py --data data/NEU-CLS --split-file models/neu-compact/split.csv --out runs/loco \\
        --json docs/results/open-set-loco.json --md docs/results/open-set-loco.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.errors import EdgeError  # noqa: E402

#: Tie order of the selection rule of round 4: the default when that rule was written (knn) first (docs/results/open-set-loco.md; round 3
#: had logit_cosine, max_softmax, energy, cosine, mahalanobis, knn; rounds 1-2 max_softmax, energy, cosine,
#: logit_cosine, mahalanobis).
PREFERENCE = ("knn", "max_softmax", "logit_cosine", "energy", "cosine", "mahalanobis", "relative_mahalanobis",
              "relative_mahalanobis_l2")


def _fold_data(data: Path, split_file: Path, held_out: str, out: Path) -> Dict[str, Dict[str, List[str]]]:
    """Folder per class of symlinks to the five known classes' images and their split.csv; returns
    ``{"known": {split: [files]}, "unknown": {split: [files]}}`` (absolute paths).

    A folder per class, not NEU's flat layout: a flat folder of NEU names always gives the six NEU classes
    (the held-out one would be an empty sixth output)."""
    rows = list(csv.DictReader(open(split_file)))
    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    groups: Dict[str, Dict[str, List[str]]] = {"known": {}, "unknown": {}, "class": {}}
    keep = []
    for r in rows:
        src = (data / r["file"]).resolve()
        kind = "unknown" if r["class"] == held_out else "known"
        groups[kind].setdefault(r["split"], []).append(str(src))
        groups["class"][str(src)] = r["class"]
        if kind == "known":
            link = d / r["class"] / Path(r["file"]).name
            link.parent.mkdir(exist_ok=True)
            if not link.exists():
                link.symlink_to(src)
            keep.append(dict(r, file=f"{r['class']}/{Path(r['file']).name}"))
    with open(out / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return groups


def _outputs(model_path: Path, files: List[str]) -> Dict[str, np.ndarray]:
    """Probabilities, logits and penultimate features of the fold model on ``files`` (float64)."""
    import keras

    from edge.data import read_gray
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model
    from train.models import features_of, logits_of

    model = load_keras_model(model_path)
    prep = Preprocess.load(model_path.parent / "preprocess.json")
    both = keras.Model(model.inputs, [model.outputs[0], logits_of(model), features_of(model)])
    x = prep(np.stack([prep.resize(read_gray(f)) for f in files]))
    probs, logits, feats = (np.asarray(a, np.float64) for a in both.predict(x, batch_size=64, verbose=0))
    return {"probs": probs, "logits": logits, "features": feats}


def _scores(out: Dict[str, np.ndarray], stats: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    from edge.ood import cosine, energy, knn, l2_normalise, mahalanobis, max_softmax, relative_mahalanobis

    f, lg = stats["features"], stats["logits"]
    return {"energy": energy(out["logits"]), "max_softmax": max_softmax(out["probs"]),
            "mahalanobis": mahalanobis(out["features"], f["means"], f["precision"]),
            "cosine": cosine(out["features"], f["means"]),
            "logit_cosine": cosine(out["logits"], lg["means"], lg["center"]),
            "knn": knn(out["features"], stats["bank"]["bank"]),
            "relative_mahalanobis": relative_mahalanobis(out["features"], stats["relative"]),
            "relative_mahalanobis_l2": relative_mahalanobis(l2_normalise(out["features"]), stats["relative_l2"]),
            "probs": out["probs"]}


def _fold_outputs(args, held_out: str, groups, model_dir: Path, classes):
    """The fold model's outputs on the known classes' train images, their labels, and the outputs on the
    known / unknown val and test images. With ``--arrays``: read back from a saved ``<held_out>.npz`` of the
    same model when there is one (no inference), otherwise computed and saved there (for
    scripts/loco_variants.py's validation-only comparison)."""
    npz = Path(args.arrays) / f"{held_out}.npz" if args.arrays else None
    keys = [(g, sp) for g in ("known", "unknown") for sp in ("val", "test")]
    if npz is not None and npz.is_file() and npz.stat().st_mtime >= (model_dir / "model.keras").stat().st_mtime:
        z = np.load(npz)
        names = ("probs", "logits", "features")
        return ({k: z[f"known_train_{k}"] for k in names}, z["known_train_y"].tolist(),
                {(g, sp): {k: z[f"{g}_{sp}_{k}"] for k in names} for g, sp in keys})
    train_files = groups["known"]["train"]
    tr = _outputs(model_dir / "model.keras", train_files)
    y_train = [classes.index(groups["class"][f]) for f in train_files]
    outs = {(g, sp): _outputs(model_dir / "model.keras", groups[g][sp]) for g, sp in keys}
    if npz is not None:
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(npz, known_train_y=np.asarray(y_train), **{f"known_train_{k}": v for k, v in tr.items()},
                            **{f"{g}_{sp}_{k}": v for (g, sp), o in outs.items() for k, v in o.items()})
    return tr, y_train, outs


def run_fold(args, held_out: str) -> Dict:
    from edge.ood import SCORES, calibrate, evaluate

    fold = Path(args.out) / f"without-{held_out}"
    groups = _fold_data(Path(args.data), Path(args.split_file), held_out, fold)
    model_dir = fold / "model"
    t0 = time.perf_counter()
    trained = not (model_dir / "model.keras").is_file()   # else the fold model is reused
    if trained:
        from train import cli

        argv = ["--data", str(fold / "data"), "--split-file", str(fold / "split.csv"), "--model", "compact",
                "--seed", str(args.seed), "--out", str(model_dir), "--force"]
        if args.epochs:
            argv += ["--epochs", str(args.epochs)]
        if args.input_size:
            argv += ["--input-size", str(args.input_size)]
        if args.augment:
            argv += ["--augment", args.augment]
        if args.label_smoothing is not None:
            argv += ["--label-smoothing", str(args.label_smoothing)]
        if cli.main(argv) != 0:
            raise EdgeError(f"training without {held_out} failed")
    rep = json.loads((model_dir / "report.json").read_text())
    # a reused model: the training time its report recorded
    train_s = time.perf_counter() - t0 if trained else rep.get("training", {}).get("wall_time_s")
    from edge.ood import fit_feature_stats, fit_knn_bank, fit_relative_stats, l2_normalise

    classes = json.loads((model_dir / "classes.json").read_text())
    classes = classes["classes"] if isinstance(classes, dict) else classes
    tr, y_train, outs = _fold_outputs(args, held_out, groups, model_dir, classes)
    stats = {k: fit_feature_stats(tr[k], y_train, len(classes)) for k in ("features", "logits")}
    stats["bank"] = fit_knn_bank(tr["features"])
    stats["relative"] = fit_relative_stats(tr["features"], y_train, len(classes))
    stats["relative_l2"] = fit_relative_stats(l2_normalise(tr["features"]), y_train, len(classes))
    s = {key: _scores(o, stats) for key, o in outs.items()}
    out = {"held_out": held_out, "known_test_accuracy": rep["accuracy"], "train_seconds": None if train_s is None else round(train_s, 1),
           "n": {f"{g}_{sp}": len(groups[g][sp]) for g in ("known", "unknown") for sp in ("val", "test")}, "scores": {}}
    for name in SCORES:
        thr = calibrate(s[("known", "val")][name], args.acceptance)
        val = evaluate(s[("known", "val")][name], s[("unknown", "val")][name])
        test = evaluate(s[("known", "test")][name], s[("unknown", "test")][name], thr)
        out["scores"][name] = {"val_auroc": val["auroc"], "val_fpr_at_95tpr": val["fpr_at_95tpr"], "test": test}
    # how often the unknown class got a known label above the daemon's 0.5 confidence threshold
    p = s[("unknown", "test")]["probs"]
    out["unknown_test_confident_share"] = float(np.mean(p.max(1) > 0.5))
    return out


def summarize(folds: List[Dict]) -> Dict:
    from edge.ood import SCORES

    summ = {}
    names = [n for n in SCORES if all(n in f["scores"] for f in folds)]   # a first-round JSON has two scores
    for name in names:
        rows = [f["scores"][name] for f in folds]
        summ[name] = {"val_auroc_mean": float(np.mean([r["val_auroc"] for r in rows])),
                      "test_auroc_mean": float(np.mean([r["test"]["auroc"] for r in rows])),
                      "test_fpr_at_95tpr_mean": float(np.mean([r["test"]["fpr_at_95tpr"] for r in rows])),
                      "test_accepted_in_mean": float(np.mean([r["test"]["accepted_in"] for r in rows])),
                      "test_rejected_out_mean": float(np.mean([r["test"]["rejected_out"] for r in rows]))}
    summ["chosen"] = choose({n: summ[n]["val_auroc_mean"] for n in names})
    return summ


def choose(val_auroc: Dict[str, float], tie: float = 0.005) -> str:
    """The pre-registered rule: the highest mean validation AUROC; within ``tie`` of it, the first of
    :data:`PREFERENCE`."""
    best = max(val_auroc.values())
    return next(n for n in PREFERENCE if n in val_auroc and val_auroc[n] >= best - tie)


def markdown(report: Dict) -> str:
    s = report["settings"]
    lines = ["# Open set: leave-one-class-out on NEU", "",
             f"Compact model per fold, seed {s['seed']}, "
             + (f"{s['epochs']} epochs at {s['input_size']}x{s['input_size']}" if s["epochs"]
                else "the compact recipe's epochs and size") + f", augment {s.get('augment') or 'default'}; threshold at {100 * s['acceptance']:g} % acceptance of the known "
             "classes' validation images; figures on the test images (known classes' test images vs the held-out "
             "class's test images). Command: `" + s["command"] + "`.", "",
             f"Machine: {s['cpu']} ({s['cores']} cores, shared with other jobs).", "",
             "| Held out | known test acc. | training s | score | val AUROC | val FPR @ 95 % TPR | test AUROC | "
             "FPR @ 95 % TPR | accepted in | rejected out |", "|---|---|---|---|---|---|---|---|---|---|"]
    for f in report["folds"]:
        for name, r in f["scores"].items():
            t = r["test"]
            lines.append(f"| {f['held_out']} | {100 * f['known_test_accuracy']:.2f}% | {f.get('train_seconds') or '-'} | "
                         f"{name} | {r['val_auroc']:.4f} | {100 * r.get('val_fpr_at_95tpr', float('nan')):.1f}% | "
                         f"{t['auroc']:.4f} | {100 * t['fpr_at_95tpr']:.1f}% | {100 * t['accepted_in']:.1f}% | "
                         f"{100 * t['rejected_out']:.1f}% |")
    lines += ["", "| score | mean val AUROC | mean test AUROC | mean FPR @ 95 % TPR | mean accepted in | mean rejected out |",
              "|---|---|---|---|---|---|"]
    for name, r in report["summary"].items():
        if name == "chosen":
            continue
        lines.append(f"| {name} | {r['val_auroc_mean']:.4f} | {r['test_auroc_mean']:.4f} | "
                     f"{100 * r['test_fpr_at_95tpr_mean']:.1f}% | {100 * r['test_accepted_in_mean']:.1f}% | "
                     f"{100 * r['test_rejected_out_mean']:.1f}% |")
    lines += ["", "Chosen by the validation rule (the highest mean val AUROC; scores within 0.005 of it tie, a tie "
                  f"goes to the first of {', '.join(PREFERENCE)}): **{report['summary']['chosen']}**.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split-file", required=True, help="the reference split.csv (file, class, split)")
    ap.add_argument("--out", required=True, help="work folder (fold data and models; reused when present)")
    ap.add_argument("--epochs", type=int, default=12, help="short recipe: epochs (0: the compact default)")
    ap.add_argument("--input-size", type=int, default=64, help="short recipe: input size (0: the compact default)")
    ap.add_argument("--augment", default="line", help="edge-train --augment preset of the fold models (default line, "
                    "compact recipe v5's)")
    ap.add_argument("--label-smoothing", type=float, default=None, help="edge-train --label-smoothing of the fold "
                    "models (default: the compact recipe's, 0.1; round 5 trained with 0)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--acceptance", type=float, default=0.99)
    ap.add_argument("--folds", default="", help="comma-separated held-out classes (default: all six)")
    ap.add_argument("--arrays", help="save each fold's probabilities, logits and features here (.npz); a saved "
                    "fold newer than its model is read back instead of recomputed")
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge.data import load_dataset
    from edge.fsutil import write_json, write_text

    classes = load_dataset(args.data).classes
    folds = [c for c in args.folds.split(",") if c] or classes
    for c in folds:
        if c not in classes:
            raise SystemExit(f"loco: unknown class {c!r} (one of {', '.join(classes)})")
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    results = []
    for c in folds:
        r = run_fold(args, c)
        print(f"loco: without {c}: known acc {r['known_test_accuracy']:.4f}, "
              + ", ".join(f"{n} test AUROC {x['test']['auroc']:.4f} FPR95 {x['test']['fpr_at_95tpr']:.3f}"
                          for n, x in r["scores"].items()), flush=True)
        results.append(r)
    report = {"settings": {"epochs": args.epochs or None, "input_size": args.input_size or None, "augment": args.augment, "label_smoothing": args.label_smoothing, "seed": args.seed,
                           "acceptance": args.acceptance, "split_file": args.split_file, "cpu": cpu,
                           "cores": os.cpu_count(), "command": "python scripts/loco.py " + " ".join(
                               argv if argv is not None else sys.argv[1:])},
              "folds": results, "summary": summarize(results)}
    if args.json:
        write_json(args.json, report)
    if args.md:
        write_text(args.md, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
