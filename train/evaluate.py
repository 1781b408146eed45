"""``edge-eval``: accuracy, per-class and macro precision/recall/F1, one-vs-rest ROC-AUC, confusion matrix.

Works on any artifact a runner can load (``.keras``, ``.onnx``, engines) and on any dataset layout
:func:`edge.data.load_dataset` reads. ``edge-train`` writes its ``report.json`` with the same
:func:`metrics_report`.

Usage::

    edge-eval runs/compact-s42/model.keras --data data/NEU-CLS --split test --json eval.json --plots eval/

From Python: ``train.evaluate_model(train.EvalConfig(model=..., data=...))``; this command turns its flags
(and ``--config FILE``) into that config.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.errors import EdgeError, cli_entry, param
from edge.log import add_log_flags


def metrics_report(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> Dict:
    """The report.json metrics (scikit-learn).

    Keys: ``accuracy``, ``macro_f1``, ``roc_auc_ovr`` (macro one-vs-rest; None when a class is
    absent from ``y_true``), ``log_loss`` (mean cross-entropy of the true class, no label smoothing),
    ``min_true_prob`` (the lowest probability given to an image's true class: how close the least
    sure image is to a miss, which still tells models apart once accuracy reaches 100 %),
    ``per_class`` {class: {precision, recall, f1, support}}, ``confusion_matrix`` (rows = true class,
    columns = predicted), ``classes``, ``n``.

    Args:
        y_true: True class indices (N,).
        probs: Class probabilities (N, K).
        classes: The K class names.
    """
    from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, log_loss,
                                 precision_recall_fscore_support, roc_auc_score)

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    classes = list(classes)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise EdgeError(f"model outputs {probs.shape[1:] if probs.ndim == 2 else probs.shape} scores, "
                        f"expected {k} (one per class)")
    if len(y_true) != len(probs):
        raise EdgeError(f"{len(y_true)} labels but {len(probs)} predictions")
    if not len(y_true):
        raise EdgeError("no images to evaluate")
    labels = list(range(k))
    y_pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()))
    scores = probs / np.clip(probs.sum(1, keepdims=True), 1e-12, None)  # rows summing to 1
    auc: Optional[float]
    auc_note = None
    if len(present) < k:
        auc = None
        missing = [classes[i] for i in labels if i not in present]
        auc_note = f"undefined: no samples of {', '.join(missing)}"
    else:
        auc = float(roc_auc_score(y_true, scores[:, 1] if k == 2 else scores,
                                  multi_class="ovr", average="macro", labels=labels))
    rep = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc_ovr": auc,
        "log_loss": float(log_loss(y_true, scores, labels=labels)),
        "min_true_prob": float(scores[np.arange(len(y_true)), y_true].min()),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(s[i])} for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": classes,
        "n": int(len(y_true)),
    }
    if auc_note:
        rep["roc_auc_note"] = auc_note
    return rep


def plot_confusion(report: Dict, path: str | os.PathLike, title: str = "") -> Path:
    """Save the confusion matrix of a report as a PNG (matplotlib, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    from edge.fsutil import atomic_path

    cm = np.array(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay(cm, display_labels=report["classes"]).plot(ax=ax, colorbar=False, xticks_rotation=35)
    ax.set_title(title or f"accuracy {report['accuracy']:.2%} (n={report['n']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def evaluate(model: str | os.PathLike, data: str | os.PathLike, which: str = "test",
             split_file: Optional[str | os.PathLike] = None, batch_size: int = 64,
             progress: bool = False, ood: Optional[str | os.PathLike] = None) -> Dict:
    """Evaluate an artifact on one split of a dataset.

    Args:
        model: ``.keras`` / ``.onnx`` / engine with its metadata.
        data: Dataset folder (any layout of :func:`edge.data.load_dataset`).
        which: ``test``, ``val``, ``train`` or ``all``.
        split_file: ``split.csv``; default the one beside the model, else the default seed-42 split.
        batch_size: Images per inference call.
        progress: Show a progress bar.
        ood: Folder of out-of-distribution images (any layout, labels ignored): adds the ``"ood"`` block
            (:func:`ood_report`), DIR's evaluated images being the in-distribution ones.

    Returns:
        The :func:`metrics_report` dict plus ``model``, ``data``, ``split``, ``split_file``, ``backend``
        (and ``ood``).
    """
    from edge.data import load_dataset, load_images, make_split, read_split_csv, resolve_split_file
    from edge.metadata import classes_of, read_meta
    from edge.runtime import load_runner

    model, data = Path(model), Path(data)
    meta = read_meta(model)
    classes = classes_of(meta)
    ds = load_dataset(data, classes=classes)
    sf = resolve_split_file(model, split_file, which)
    if which == "all":
        sel, used = ds, None
    elif sf is not None:
        try:
            split = read_split_csv(sf, ds)
        except EdgeError as e:
            if split_file is None:  # the model's own split.csv does not describe this dataset
                raise EdgeError(f"{e}; to evaluate on other data use {param('split')} all or {param('split_file')} FILE"
                                ) from None
            raise
        sel, used = ds.subset(split, which), str(sf)
    else:
        sel, used = ds.subset(make_split(ds, seed=42), which), "default split (seed 42)"
    images = load_images(sel, progress=progress)
    ood_images = None
    if ood is not None:
        ood_images = load_images(ood_files(ood), progress=progress)
    with load_runner(model, warmup=0) as runner:
        probs, score = _run(runner, images, batch_size, progress)
        backend = runner.backend
        if ood_images is not None:
            probs_out, score_out = _run(runner, ood_images, batch_size, progress)
    rep = metrics_report(sel.labels, probs, classes)
    rep.update({"model": str(model), "data": str(data), "split": which, "split_file": used, "backend": backend})
    if ood_images is not None:
        rep["ood"] = ood_report(meta, probs, score, probs_out, score_out, ood)
    return rep


def _run(runner, images, batch_size: int, progress: bool):
    """Probabilities (N, K) and the in-graph open-set score (N,) or None, as every stage runs images."""
    probs, scores = [], []
    it = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluating", unit="batch", leave=False)
    for i in it:
        probs.append(runner.infer_images(images[i:i + batch_size]))
        if runner.last_score is not None:
            scores.append(runner.last_score)
    score = np.concatenate(scores) if scores and len(scores) == len(probs) else None
    return np.concatenate(probs), score


def ood_files(folder: str | os.PathLike) -> List[Path]:
    """Every image file under ``folder`` (any layout, labels ignored), sorted.

    Raises:
        EdgeError: the folder does not exist or holds no image.
    """
    from edge.data import IMAGE_EXTS

    root = Path(folder)
    if not root.is_dir():
        raise EdgeError(f"{param('ood')} folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise EdgeError(f"{param('ood')} folder {root} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def ood_report(meta: Dict, probs_in, score_in, probs_out, score_out, ood_dir) -> Dict:
    """The ``"ood"`` block: the model's own score and threshold when it has them, else max-softmax.

    Keys: ``auroc``, ``fpr_at_95tpr``, ``threshold``, ``accepted_in``, ``rejected_out``, ``n_in``,
    ``n_out`` (:func:`edge.ood.evaluate`) plus ``score``, ``acceptance`` and ``ood_data``. Without a
    threshold in the metadata (no ``python -m train.ood``), ``threshold``, ``accepted_in`` and
    ``rejected_out`` are None: a threshold is never picked on the evaluated images.
    """
    from edge import ood as O

    block = O.score_of(meta)
    if block is not None and score_in is not None and score_out is not None:
        name, si, so, thr = block["score"], score_in, score_out, block["threshold"]
    else:
        name, si, so, thr = "max_softmax", O.max_softmax(probs_in), O.max_softmax(probs_out), None
    rep = O.evaluate(si, so, thr)
    rep.update({"score": name, "acceptance": block.get("acceptance") if block and thr is not None else None,
                "ood_data": str(ood_dir)})
    return rep


def summary_line(rep: Dict) -> str:
    auc = "n/a" if rep["roc_auc_ovr"] is None else f"{rep['roc_auc_ovr']:.4f}"
    correct = int(np.trace(np.array(rep["confusion_matrix"])))
    return (f"{rep.get('split', 'test')} accuracy {rep['accuracy']:.2%} ({correct}/{rep['n']}), "
            f"macro F1 {rep['macro_f1']:.4f}, ROC-AUC {auc}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="model.keras / model.onnx / engine (with its .json metadata)")
    ap.add_argument("--data", help="dataset folder (NEU-CLS flat, folder per class, NEU-DET)")
    ap.add_argument("--split", choices=["test", "val", "train", "all"], help="default: test")
    ap.add_argument("--split-file", help="split.csv (default: the one beside the model)")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--plots", help="folder for confusion_matrix.png")
    ap.add_argument("--batch", type=int, help="images per inference call (default: 64)")
    ap.add_argument("--ood", metavar="OOD_DIR",
                    help="folder of images of none of the classes (any layout, labels ignored): adds \"ood\" "
                         "(AUROC, FPR at 95 %% TPR, decisions at the model's threshold) to the report")
    ap.add_argument("--config", metavar="FILE",
                    help="TOML (or YAML) file with the same settings (a [eval] table or the top level); "
                         "flags override it")
    return add_log_flags(ap)


def config_from_args(args):
    """:class:`train.EvalConfig`: its defaults, then the ``--config`` file, then the flags given."""
    from edge.configfile import layered
    from train.config import EvalConfig

    cfg = layered(EvalConfig, vars(args), args.config, "eval", EvalConfig.PATHS)
    cfg.progress = sys.stderr.isatty()
    return cfg


@cli_entry("edge-eval", flags={"model": "MODEL"})
def main(argv=None) -> int:
    from train.api import evaluate_model

    cfg = config_from_args(build_parser().parse_args(argv))
    rep = evaluate_model(cfg).report
    print(summary_line(rep) + (f" -> {cfg.json}" if cfg.json else ""))
    if "ood" in rep:
        o = rep["ood"]
        dec = ("" if o["threshold"] is None else f", at threshold {o['threshold']:.4f}: {100 * o['accepted_in']:.1f} % "
               f"of in-distribution accepted, {100 * o['rejected_out']:.1f} % of OOD rejected")
        print(f"open set ({o['score']}): AUROC {o['auroc']:.4f}, FPR at 95 % TPR {100 * o['fpr_at_95tpr']:.1f} % "
              f"({o['n_in']} in / {o['n_out']} out){dec}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
