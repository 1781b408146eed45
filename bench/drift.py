"""Accuracy drift of an artifact against the FP32 reference on the same files (scikit-learn metrics).

Every figure compares two probability matrices of the same images in the same order:
``ref`` (the Keras FP32 model) and ``art`` (the converted artifact), both (N, K).

* ``accuracy_delta_pp``: ``100 * (accuracy(art) - accuracy(ref))``; negative = the artifact is worse.
* ``top1_agreement``: fraction of images where both give the same class (0..1).
* ``max_abs_prob_diff`` / ``mean_abs_prob_diff``: over all N x K probabilities.
* ``kl``: mean over images of KL(ref || art) in nats, probabilities clipped at 1e-7 and renormalised.
* ``per_class_f1_delta``: F1(art) - F1(ref) per class name.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

KL_EPS = 1e-7


def _check(probs: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise EdgeError(f"{name} probabilities must be a non-empty (N, K) array, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise EdgeError(f"{name} probabilities hold NaN or infinite values")
    return p


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = KL_EPS) -> np.ndarray:
    """KL(p || q) per row, in nats, with both clipped to ``eps`` and renormalised."""
    p = np.clip(np.asarray(p, np.float64), eps, None)
    q = np.clip(np.asarray(q, np.float64), eps, None)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def accuracy(labels: Sequence[int], probs: np.ndarray) -> float:
    """Top-1 accuracy (0..1) of probabilities against integer labels."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(labels), np.asarray(probs).argmax(axis=1)))


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
        ``drift`` holds the keys of the report schema, ``disagreements`` one entry per image
        where the top-1 classes differ (file, label, reference and artifact class and confidence).

    Raises:
        EdgeError: shapes do not match, or the class count differs from the outputs.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

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
    ref_top, art_top = ref.argmax(1), art.argmax(1)
    labels_k = list(range(k))
    acc_ref = float(accuracy_score(y, ref_top))
    acc_art = float(accuracy_score(y, art_top))
    f1_ref = f1_score(y, ref_top, labels=labels_k, average=None, zero_division=0)
    f1_art = f1_score(y, art_top, labels=labels_k, average=None, zero_division=0)
    diff = np.abs(art - ref)
    dis = np.flatnonzero(ref_top != art_top)
    disagreements: List[Dict[str, Any]] = []
    for i in dis:
        disagreements.append({
            "file": files[i] if files is not None else int(i),
            "label": classes[y[i]],
            "reference": classes[ref_top[i]], "reference_prob": float(ref[i, ref_top[i]]),
            "artifact": classes[art_top[i]], "artifact_prob": float(art[i, art_top[i]]),
        })
    return {
        "accuracy": acc_art,
        "reference_accuracy": acc_ref,
        "drift": {
            "accuracy_delta_pp": 100.0 * (acc_art - acc_ref),
            "top1_agreement": float(np.mean(ref_top == art_top)),
            "max_abs_prob_diff": float(diff.max()),
            "mean_abs_prob_diff": float(diff.mean()),
            "kl": float(kl_divergence(ref, art).mean()),
            "per_class_f1_delta": {c: float(f1_art[j] - f1_ref[j]) for j, c in enumerate(classes)},
        },
        "confusion_matrix": confusion_matrix(y, art_top, labels=labels_k).tolist(),
        "disagreements": disagreements,
    }


def drop_exceeds(drift: Dict[str, Any], max_drop_pp: float) -> bool:
    """True when the artifact's accuracy is more than ``max_drop_pp`` points below the reference."""
    return -float(drift["accuracy_delta_pp"]) > float(max_drop_pp) + 1e-9
