"""Open-set ("unknown") scores, their threshold and their evaluation.

Convention: a score is **higher for more unusual images**; a tile whose score is above the threshold is
``unknown``. The threshold is calibrated on in-distribution validation images so that a stated share
of them (``acceptance``, default 99 %) is accepted.

Scores:

* ``energy``: ``-logsumexp(logits)`` (Liu et al. 2020) of the pre-softmax logits. Models made by
  :func:`train.models.with_ood_score` compute it inside the graph (a second output named
  :data:`SCORE_OUTPUT`), so Keras, ONNX Runtime and TensorRT all produce it.
* ``max_softmax``: ``-max(probs)`` (Hendrycks & Gimpel 2017), the baseline; computable from the
  probabilities of any model.

Pure numpy + scikit-learn: safe to import on the Jetson.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

#: Name of the score output of a model with an in-graph open-set score.
SCORE_OUTPUT = "ood_score"
SCORES = ("energy", "max_softmax")
#: Default share of in-distribution validation images the threshold accepts.
DEFAULT_ACCEPTANCE = 0.99


def energy(logits: np.ndarray) -> np.ndarray:
    """``-logsumexp(logits)`` per row (N,), computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def max_softmax(probs: np.ndarray) -> np.ndarray:
    """``-max(probs)`` per row (N,): the max-softmax baseline as an unusualness score."""
    return -np.asarray(probs, dtype=np.float64).max(axis=1)


def calibrate(scores_in: Sequence[float], acceptance: float = DEFAULT_ACCEPTANCE) -> float:
    """The threshold that accepts ``acceptance`` of in-distribution scores (score <= threshold).

    The smallest calibration score that accepts at least ``acceptance`` of the calibration images
    (the ``ceil(acceptance * n)``-th smallest score).

    Raises:
        EdgeError: ``acceptance`` outside (0, 1], or no scores.
    """
    s = np.asarray(scores_in, dtype=np.float64).ravel()
    if not 0.0 < acceptance <= 1.0:
        raise EdgeError(f"in-distribution acceptance must be in (0, 1], got {acceptance}")
    if not len(s):
        raise EdgeError("no in-distribution scores to calibrate the threshold on")
    k = int(np.ceil(acceptance * len(s) - 1e-9))
    return float(np.sort(s)[max(k, 1) - 1])


def evaluate(scores_in: Sequence[float], scores_out: Sequence[float], threshold: Optional[float] = None) -> Dict:
    """AUROC and FPR at 95 % TPR (scikit-learn), and the decisions at ``threshold``.

    Out-of-distribution images are the positives (higher score = unknown). ``fpr_at_95tpr`` is the
    share of in-distribution images rejected when 95 % of the unknown images are rejected.

    Returns:
        ``{"auroc", "fpr_at_95tpr", "threshold", "accepted_in", "rejected_out", "n_in", "n_out"}``;
        ``accepted_in`` / ``rejected_out`` are shares (0..1), None without a threshold.

    Raises:
        EdgeError: either set is empty.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    si = np.asarray(scores_in, dtype=np.float64).ravel()
    so = np.asarray(scores_out, dtype=np.float64).ravel()
    if not len(si) or not len(so):
        raise EdgeError(f"open-set evaluation needs images of both kinds ({len(si)} in-distribution, "
                        f"{len(so)} out-of-distribution)")
    y = np.r_[np.zeros(len(si)), np.ones(len(so))]
    s = np.r_[si, so]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": float(roc_auc_score(y, s)),
            "fpr_at_95tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
            "threshold": None if threshold is None else float(threshold),
            "accepted_in": None if threshold is None else float(np.mean(si <= threshold)),
            "rejected_out": None if threshold is None else float(np.mean(so > threshold)),
            "n_in": int(len(si)), "n_out": int(len(so))}


def score_of(meta: Dict) -> Optional[Dict]:
    """The ``ood`` block of an artifact's metadata (``score``, ``threshold``, ``acceptance`` ...), or None."""
    block = (meta or {}).get("ood")
    if not block:
        return None
    if block.get("score") not in SCORES or block.get("threshold") is None:
        raise EdgeError(f"metadata 'ood' block needs a score ({', '.join(SCORES)}) and a threshold, got {block}")
    return block


def is_unknown(score: float, threshold: float) -> bool:
    """True when a tile's score passes the threshold (it is labelled ``unknown``)."""
    return bool(score > threshold)
