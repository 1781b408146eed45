"""The metrics every stage quotes: accuracy, top-1 agreement, probability differences and drift.

One module for the drift gate of ``edge-convert``, ``edge-bench``, ``edge-doctor`` and the regression
suite, so that a figure means the same wherever it is printed. Every function takes keyword-friendly
arguments in one order, labels first as in scikit-learn (``accuracy(labels, probs)``), and accepts
either probabilities (N, K) or top-1 class indices (N,) where only the top-1 class matters.

Drift compares two probability matrices of the same images in the same order: ``ref`` (the FP32
reference) and ``art`` (the converted artifact), both (N, K):

* ``accuracy_delta_pp``: ``100 * (accuracy(art) - accuracy(ref))``; negative = the artifact is worse.
* ``top1_agreement``: fraction of images where both give the same class (0..1).
* ``max_abs_prob_diff`` / ``mean_abs_prob_diff``: over all N x K probabilities.
* ``kl``: mean over images of KL(ref || art) in nats, probabilities clipped at 1e-7 and renormalised.
* ``per_class_f1_delta``: F1(art) - F1(ref) per class name.

To add a metric: a function here (Google docstring, scikit-learn where it has one), a key in
:func:`drift` if the bench report should carry it, and a test in ``tests/edge/test_metrics.py``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

KL_EPS = 1e-7


def top1(probs) -> np.ndarray:
    """Top-1 class per image: the argmax of (N, K) probabilities, or (N,) class indices unchanged."""
    p = np.asarray(probs)
    return p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64, copy=False)


def _check(probs, name: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise EdgeError(f"{name} probabilities must be a non-empty (N, K) array, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise EdgeError(f"{name} probabilities hold NaN or infinite values")
    return p


def accuracy(labels: Sequence[int], probs) -> float:
    """Top-1 accuracy (0..1) against integer labels (scikit-learn).

    Args:
        labels: True class index per image (N,).
        probs: Probabilities (N, K), or the predicted class indices (N,).
    """
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(labels), top1(probs)))


def agreement(ref, art) -> float:
    """Top-1 agreement (0..1): the fraction of images where ``ref`` and ``art`` give the same class.

    Args:
        ref: Reference probabilities (N, K) or class indices (N,).
        art: The compared model's, same images in the same order; 1.0 for no images.

    Raises:
        EdgeError: the two hold different numbers of images.
    """
    a, b = top1(ref), top1(art)
    if a.shape != b.shape:
        raise EdgeError(f"top-1 agreement of {a.shape[0]} and {b.shape[0]} predictions: not the same images")
    return float(np.mean(a == b)) if a.size else 1.0


def prob_diffs(ref: np.ndarray, art: np.ndarray) -> Dict[str, float]:
    """``{"max_abs_prob_diff", "mean_abs_prob_diff"}`` over all N x K probabilities (0 for no images).

    Raises:
        EdgeError: the shapes differ.
    """
    ref, art = np.asarray(ref, np.float64), np.asarray(art, np.float64)
    if ref.shape != art.shape:
        raise EdgeError(f"reference outputs {ref.shape} and artifact outputs {art.shape} differ in shape")
    diff = np.abs(art - ref)
    return {"max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0}


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = KL_EPS) -> np.ndarray:
    """KL(p || q) per row, in nats, with both clipped to ``eps`` and renormalised."""
    p = np.clip(np.asarray(p, np.float64), eps, None)
    q = np.clip(np.asarray(q, np.float64), eps, None)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def drift(labels: Sequence[int], ref: np.ndarray, art: np.ndarray, classes: Sequence[str]) -> Dict[str, Any]:
    """The drift block of ``art`` against ``ref`` (the keys listed in the module docstring).

    Args:
        labels: True class index per image (N,).
        ref: Reference probabilities (N, K).
        art: Artifact probabilities (N, K), same images in the same order.
        classes: The K class names.
    """
    from sklearn.metrics import f1_score

    y = np.asarray(labels, dtype=np.int64)
    ref_top, art_top = top1(ref), top1(art)
    labels_k = list(range(len(classes)))
    f1_ref = f1_score(y, ref_top, labels=labels_k, average=None, zero_division=0)
    f1_art = f1_score(y, art_top, labels=labels_k, average=None, zero_division=0)
    return {
        "accuracy_delta_pp": 100.0 * (accuracy(y, art_top) - accuracy(y, ref_top)),
        "top1_agreement": agreement(ref_top, art_top),
        **prob_diffs(ref, art),
        "kl": float(kl_divergence(ref, art).mean()),
        "per_class_f1_delta": {c: float(f1_art[j] - f1_ref[j]) for j, c in enumerate(classes)},
    }


def compare(labels: Sequence[int], ref: np.ndarray, art: np.ndarray, classes: Sequence[str],
            files: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Accuracy and drift of ``art`` against ``ref`` on the same labelled images.

    Args:
        labels: True class index per image (N,).
        ref: Reference probabilities (N, K).
        art: Artifact probabilities (N, K), same images in the same order.
        classes: The K class names (model output order).
        files: Optional file name per image, for the list of disagreements.

    Returns:
        ``{"accuracy", "reference_accuracy", "drift": {...}, "confusion_matrix", "disagreements"}``;
        ``drift`` is :func:`drift`, ``disagreements`` one entry per image where the top-1 classes
        differ (file, label, reference and artifact class and confidence).

    Raises:
        EdgeError: shapes do not match, or the class count differs from the outputs.
    """
    from sklearn.metrics import confusion_matrix

    ref = _check(ref, "reference")
    art = _check(art, "artifact")
    y = np.asarray(labels, dtype=np.int64)
    if ref.shape != art.shape:
        raise EdgeError(f"reference outputs {ref.shape} and artifact outputs {art.shape} differ in shape")
    if y.shape != (ref.shape[0],):
        raise EdgeError(f"{y.size} labels for {ref.shape[0]} images")
    k = len(classes)
    if ref.shape[1] != k:
        raise EdgeError(f"the model gives {ref.shape[1]} outputs but there are {k} classes")
    if files is not None and len(files) != len(y):
        raise EdgeError(f"{len(files)} file names for {len(y)} images")
    ref_top, art_top = top1(ref), top1(art)
    disagreements: List[Dict[str, Any]] = []
    for i in np.flatnonzero(ref_top != art_top):
        disagreements.append({
            "file": files[i] if files is not None else int(i),
            "label": classes[y[i]],
            "reference": classes[ref_top[i]], "reference_prob": float(ref[i, ref_top[i]]),
            "artifact": classes[art_top[i]], "artifact_prob": float(art[i, art_top[i]]),
        })
    return {
        "accuracy": accuracy(y, art_top),
        "reference_accuracy": accuracy(y, ref_top),
        "drift": drift(y, ref, art, classes),
        "confusion_matrix": confusion_matrix(y, art_top, labels=list(range(k))).tolist(),
        "disagreements": disagreements,
    }


def drop_exceeds(drift: Dict[str, Any], max_drop_pp: float) -> bool:
    """True when the artifact's accuracy is more than ``max_drop_pp`` points below the reference."""
    return -float(drift["accuracy_delta_pp"]) > float(max_drop_pp) + 1e-9


__all__ = ["KL_EPS", "accuracy", "agreement", "compare", "drift", "drop_exceeds", "kl_divergence", "prob_diffs",
           "top1"]
