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
* ``mahalanobis``: the smallest squared Mahalanobis distance of the penultimate features to the class
  means, with one covariance shared by the classes (Lee et al. 2018); ``cosine``: ``-max`` cosine
  similarity of the penultimate features to the class means. Their class statistics come from the
  training split (:func:`fit_feature_stats`) and are stored in the graph as constants
  (:func:`train.models.with_ood_score`); the functions here are the numpy reference.
* ``logit_cosine``: ``-max`` cosine similarity of the logits to the class means of the training
  split's logits, both centred on the mean of the class means (chosen by round 2 of the
  leave-one-class-out rule, on short-recipe fold models; the default until round 3).
* ``knn``: ``-max`` cosine similarity of the penultimate features to the training split's own
  (l2-normalised) penultimate features: the nearest-neighbour score of Sun et al. 2022 with k = 1
  (:func:`knn`; :func:`fit_knn_bank` makes the stored bank). Chosen by round 3 of the leave-one-class-out
  validation rule (docs/results/open-set-loco.md); the default of ``python -m train.ood`` until round 4.
* ``relative_mahalanobis``: the relative Mahalanobis distance (Ren et al. 2021): ``mahalanobis`` minus the
  squared Mahalanobis distance to one Gaussian fitted on all training features (:func:`fit_relative_stats`,
  :func:`relative_mahalanobis`); ``relative_mahalanobis_l2``: the same on the l2-normalised features,
  chosen by round 4 of the leave-one-class-out validation rule: the default of ``python -m train.ood``.

Pure numpy + scikit-learn: safe to import on the Jetson.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

#: Name of the score output of a model with an in-graph open-set score.
SCORE_OUTPUT = "ood_score"
SCORES = ("energy", "max_softmax", "mahalanobis", "cosine", "logit_cosine", "knn", "relative_mahalanobis",
          "relative_mahalanobis_l2")
#: Scores computed with statistics of the training split (stored in the graph as constants).
FEATURE_SCORES = ("mahalanobis", "cosine", "logit_cosine", "knn", "relative_mahalanobis", "relative_mahalanobis_l2")
#: The relative Mahalanobis scores and whether each works on the l2-normalised penultimate features.
RELATIVE_SCORES = {"relative_mahalanobis": False, "relative_mahalanobis_l2": True}
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


def fit_feature_stats(features: np.ndarray, labels: Sequence[int], num_classes: int) -> Dict[str, np.ndarray]:
    """Class means and the shared precision of penultimate features (the training split's).

    The covariance is the Ledoit-Wolf shrinkage estimate (scikit-learn) of the class-centred features,
    so it is invertible with fewer images than feature dimensions.

    Returns:
        ``{"means": (K, D), "precision": (D, D), "center": (D,)}`` in float64; ``center`` is the mean of
        the class means (the in-graph form subtracts it first, for FP16's sake).

    Raises:
        EdgeError: a class without a feature vector, or labels that do not match the features.
    """
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if f.ndim != 2 or len(f) != len(y):
        raise EdgeError(f"features {f.shape} and labels ({len(y)}) do not match")
    missing = [k for k in range(num_classes) if not np.any(y == k)]
    if missing:
        raise EdgeError(f"no training features for class(es) {missing}: cannot fit the class statistics")
    means = np.stack([f[y == k].mean(axis=0) for k in range(num_classes)])
    cov = LedoitWolf(assume_centered=True).fit(f - means[y]).covariance_
    return {"means": means, "precision": np.linalg.inv(cov), "center": means.mean(axis=0)}


def mahalanobis(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``min_k (f - mu_k)^T P (f - mu_k)`` per row (N,): the distance to the nearest class mean."""
    f = np.asarray(features, dtype=np.float64)
    d = f[:, None, :] - np.asarray(means, dtype=np.float64)[None]
    return np.einsum("nkd,de,nke->nk", d, np.asarray(precision, dtype=np.float64), d).min(axis=1)


def fit_relative_stats(features: np.ndarray, labels: Sequence[int], num_classes: int) -> Dict[str, np.ndarray]:
    """:func:`fit_feature_stats` plus one Gaussian fitted on all the features (the relative Mahalanobis score's
    background): ``"mean0"`` (D,) and ``"precision0"`` (D, D), the inverse of scikit-learn's Ledoit-Wolf
    covariance of the uncentred features.

    Raises:
        EdgeError: as :func:`fit_feature_stats`.
    """
    from sklearn.covariance import LedoitWolf

    stats = fit_feature_stats(features, labels, num_classes)
    f = np.asarray(features, dtype=np.float64)
    lw = LedoitWolf().fit(f)
    return {**stats, "mean0": lw.location_.astype(np.float64), "precision0": np.linalg.inv(lw.covariance_)}


def relative_mahalanobis(features: np.ndarray, stats: Dict[str, np.ndarray]) -> np.ndarray:
    """``min_k (f - mu_k)^T P (f - mu_k) - (f - mu_0)^T P_0 (f - mu_0)`` per row (N,), with
    :func:`fit_relative_stats`'s statistics (Ren et al. 2021's relative Mahalanobis distance)."""
    f = np.asarray(features, dtype=np.float64)
    d0 = f - np.asarray(stats["mean0"], np.float64)
    background = np.einsum("nd,de,ne->n", d0, np.asarray(stats["precision0"], np.float64), d0)
    return mahalanobis(f, stats["means"], stats["precision"]) - background


def cosine(features: np.ndarray, means: np.ndarray, center: Optional[np.ndarray] = None) -> np.ndarray:
    """``-max_k cos(f - c, mu_k - c)`` per row (N,); ``c`` = ``center`` (default: no centring).

    ``logit_cosine`` is this function on the logits, centred on the mean of their class means."""
    f = np.asarray(features, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    if center is not None:
        f, m = f - np.asarray(center, np.float64), m - np.asarray(center, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return -(f @ m.T).max(axis=1)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_knn_bank(features: np.ndarray) -> Dict[str, np.ndarray]:
    """The bank of the ``knn`` score: the training split's penultimate features, l2-normalised.

    Raises:
        EdgeError: no features, or not a 2-D array.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or not len(f):
        raise EdgeError(f"the knn score needs a (N, D) array of training features, got shape {f.shape}")
    return {"bank": l2_normalise(f)}


def knn(features: np.ndarray, bank: np.ndarray, k: int = 1) -> np.ndarray:
    """``-`` the k-th largest cosine similarity of each row to the rows of ``bank`` (N,).

    On l2-normalised vectors the k-th largest similarity is the k-th smallest Euclidean distance
    (``d^2 = 2 - 2 cos``): Sun et al. 2022's k-th nearest-neighbour score, same order. The in-graph form
    (:func:`train.models.with_ood_score`) is k = 1.

    Raises:
        EdgeError: ``k`` outside [1, len(bank)].
    """
    b = l2_normalise(bank)
    if not 1 <= k <= len(b):
        raise EdgeError(f"knn: k must be in [1, {len(b)}], got {k}")
    sim = l2_normalise(features) @ b.T
    return -np.partition(sim, len(b) - k, axis=1)[:, len(b) - k]


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


def is_unknown(score, threshold: float):
    """Whether a tile's score passes the threshold (it is labelled ``unknown``): the one rule, for a score
    (bool) or an array of scores (bool array)."""
    return score > threshold
