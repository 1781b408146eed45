"""The drift gate of the open-set score: an FP16 / INT8 artifact's ``ood_score`` against the FP32 model's.

A model with an in-graph open-set score (``python -m train.ood``, :mod:`edge.ood`) carries the
``unknown`` threshold calibrated on FP32 validation scores, and every artifact ``edge-convert`` makes
inherits it. The gate measures each reduced-precision artifact's score against the FP32 ONNX model's on
the validation split, with the flipped views of the accuracy gate (:func:`convert.gate.flip_views`).
Two criteria, both stated here:

* **decision agreement**: the share of predictions whose ``unknown`` decision (the artifact at its
  threshold) is the same as FP32's (at FP32's threshold), at least ``min_agreement`` percent
  (default 99 %: at a 99 % acceptance each model flags about 1 % of the images);
* **max abs score difference**, at most ``max_diff`` times the spread of the FP32 validation scores
  (their 1st to 99th percentile; default 0.5): a scale-free bound, the scores' units differ
  (a probability for ``max_softmax``, a squared distance for ``mahalanobis``).

An artifact that fails at FP32's threshold gets its own, calibrated the same way on its own validation
scores (an INT8 model's probabilities can be less peaked: at FP32's threshold it would reject more good
tiles), and is measured again at it; the first figures are kept beside them. Nothing is re-quantized: a
failing score fails
``edge-convert`` like the accuracy gate (exit 1), with the artifacts kept and the gate in their metadata
(``ood.drift_gate``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.ood import is_unknown

log = logging.getLogger(__name__)

#: Default minimum agreement (percent) of the unknown decisions with FP32's at the stored threshold.
MIN_DECISION_AGREEMENT = 99.0
#: Default maximum abs score difference, as a fraction of the FP32 val scores' 1-99 percentile spread.
MAX_SCORE_DIFF = 0.5


@dataclass
class ScoreGate:
    """The score gate's measurement of one artifact.

    Attributes:
        artifact: File name of the artifact.
        threshold: FP32's ``unknown`` threshold.
        own_threshold: The artifact's own threshold (calibrated on val with its scores), at which its
            decisions were compared; None: compared at ``threshold``.
        predictions: Number of scored validation inputs (images x views).
        decision_agreement: Percent of predictions with the same unknown decision as FP32.
        max_abs_diff: Largest abs score difference to FP32.
        spread: FP32 val scores' 1st-99th percentile spread.
        unknown_fp32, unknown_artifact: Percent of val predictions labelled unknown at the threshold.
        min_agreement, max_diff: The criteria (``max_diff`` as a fraction of ``spread``).
    """

    artifact: str
    threshold: float
    predictions: int
    decision_agreement: float
    max_abs_diff: float
    spread: float
    unknown_fp32: float
    unknown_artifact: float
    min_agreement: float = MIN_DECISION_AGREEMENT
    max_diff: float = MAX_SCORE_DIFF
    own_threshold: Optional[float] = None
    at_fp32_threshold: Optional[Dict] = None

    @property
    def passed(self) -> bool:
        return (self.decision_agreement >= self.min_agreement
                and self.max_abs_diff <= self.max_diff * self.spread)

    def summary(self) -> str:
        """One line: both criteria and the verdict."""
        at = (f"threshold {self.threshold:.4g}" if self.own_threshold is None else
              f"its threshold {self.own_threshold:.4g} (FP32 {self.threshold:.4g})")
        return (f"ood score vs FP32 on {self.predictions} val predictions: unknown decision agreement "
                f"{self.decision_agreement:.2f} % (at least {self.min_agreement:g} %) at {at}, max abs score diff {self.max_abs_diff:.3g} (at most {self.max_diff:g} x "
                f"spread {self.spread:.3g}), unknown {self.unknown_fp32:.2f} % -> {self.unknown_artifact:.2f} %, "
                f"{'passed' if self.passed else 'FAILED'}")

    def as_dict(self) -> Dict:
        return {"split": "val", "predictions": self.predictions, "threshold": self.threshold,
                "own_threshold": self.own_threshold,
                "decision_agreement_pct": round(self.decision_agreement, 3),
                "min_decision_agreement_pct": self.min_agreement, "max_abs_diff": self.max_abs_diff,
                "fp32_spread_p1_p99": self.spread, "max_diff_of_spread": self.max_diff,
                "unknown_fp32_pct": round(self.unknown_fp32, 3), "unknown_pct": round(self.unknown_artifact, 3),
                "passed": self.passed,
                **({"at_fp32_threshold": self.at_fp32_threshold} if self.at_fp32_threshold else {})}


def ort_scores(path: str | os.PathLike, x: np.ndarray, level: str = "all", batch: int = 32) -> np.ndarray:
    """The ``ood_score`` output of an ONNX model for a float32 batch, (N,), in chunks of ``batch``.

    Raises:
        EdgeError: the model has no ``ood_score`` output.
    """
    from convert.export import ort_predict
    from edge.ood import SCORE_OUTPUT
    from edge.runtime.onnxrt.session import session as ort_session

    sess = ort_session(path, level=level)
    names = [o.name for o in sess.get_outputs()]
    if SCORE_OUTPUT not in names:
        raise EdgeError(f"{os.fspath(path)} has no {SCORE_OUTPUT!r} output (outputs: {', '.join(names)})")
    return ort_predict(sess, x, batch, output=SCORE_OUTPUT).reshape(-1).astype(np.float64)


def measure(ref: np.ndarray, scores: np.ndarray, threshold: float, artifact: str = "",
            min_agreement: float = MIN_DECISION_AGREEMENT, max_diff: float = MAX_SCORE_DIFF,
            own_threshold: Optional[float] = None) -> ScoreGate:
    """Compare an artifact's scores with FP32's (same inputs, same order).

    FP32's decisions are taken at ``threshold``, the artifact's at ``own_threshold`` (default: the same).

    Raises:
        EdgeError: no scores, or arrays of different lengths.
    """
    ref = np.asarray(ref, np.float64).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if not len(ref) or len(ref) != len(s):
        raise EdgeError(f"the score gate needs the same non-empty inputs for both models ({len(ref)} vs {len(s)})")
    u_ref, u = is_unknown(ref, threshold), is_unknown(s, threshold if own_threshold is None else own_threshold)
    p1, p99 = np.percentile(ref, [1, 99])
    return ScoreGate(artifact, float(threshold), len(ref), float(np.mean(u_ref == u) * 100.0),
                     float(np.max(np.abs(ref - s))), float(p99 - p1), float(np.mean(u_ref) * 100.0),
                     float(np.mean(u) * 100.0), min_agreement=min_agreement, max_diff=max_diff,
                     own_threshold=None if own_threshold is None else float(own_threshold))


def gate_scores(fp32: str | os.PathLike, artifacts: Dict[str, str], x_val: np.ndarray, threshold: float,
                views: int = 4, acceptance: Optional[float] = None, min_agreement: float = MIN_DECISION_AGREEMENT,
                max_diff: float = MAX_SCORE_DIFF) -> Dict[str, ScoreGate]:
    """Run the score gate on each artifact.

    Args:
        fp32: The FP32 ONNX model with the score output.
        artifacts: ``{path: onnxruntime graph optimization level}`` of the artifacts to gate (``basic``
            for the TensorRT Q/DQ model, as the accuracy gate measures it).
        x_val: Validation inputs (float32 NHWC, the models' input), one per image.
        threshold: FP32's ``unknown`` threshold.
        views: Flipped views per image (:func:`convert.gate.flip_views`).
        acceptance: When given, an artifact that fails at FP32's threshold gets its own threshold,
            calibrated on ``x_val`` (one view, as FP32's was) with its own scores at this acceptance, and
            is measured again at it (FP32's decisions still at FP32's threshold); the first figures are
            kept in ``at_fp32_threshold``. Without it, the decisions are compared at FP32's threshold only.
    Logs one line per artifact (INFO).

    Returns:
        ``{path: ScoreGate}``.
    """
    from convert.gate import flip_views
    from edge.ood import calibrate

    if len(x_val) == 0:
        raise EdgeError("the score gate needs validation images (the val split is empty)")
    x = flip_views(x_val, views)
    ref = ort_scores(fp32, x)
    out = {}
    for path, level in artifacts.items():
        name = os.path.basename(os.fspath(path))
        s = ort_scores(path, x, level=level)
        g = measure(ref, s, threshold, name, min_agreement=min_agreement, max_diff=max_diff)
        if acceptance is not None and not g.passed:
            own = calibrate(s[:len(x_val)], acceptance)  # the first view is the images themselves
            at_fp32 = g.as_dict()
            g = measure(ref, s, threshold, name, min_agreement=min_agreement, max_diff=max_diff, own_threshold=own)
            g.at_fp32_threshold = at_fp32
        log.info("%s: %s", g.artifact, g.summary())
        out[path] = g
    return out


def gate_artifacts(fp32: str | os.PathLike, artifacts: Sequence[str | os.PathLike], x_val: np.ndarray,
                   views: int = 4) -> Dict[str, ScoreGate]:
    """edge-convert's hook: gate each artifact's score and write its threshold and the gate into its metadata.

    Each artifact is run at the onnxruntime graph optimization level its metadata names (``basic`` for
    the Q/DQ model). Its ``ood`` block keeps FP32's threshold when it passes at it; otherwise it gets the
    threshold calibrated on val with its own scores (``calibrated_with``: its file name). FP32's is kept as
    ``fp32_threshold``, the gate as ``drift_gate``.

    Returns:
        ``{path: ScoreGate}``; empty when the FP32 model has no ``ood`` block.
    """
    from edge.metadata import read_meta, write_meta
    from edge.ood import DEFAULT_ACCEPTANCE, score_of

    block = score_of(read_meta(fp32))
    if block is None or not artifacts:
        return {}
    acc = float(block.get("acceptance", DEFAULT_ACCEPTANCE))
    levels = {os.fspath(p): (read_meta(p).get("onnxruntime") or {}).get("graph_optimization_level") or "all"
              for p in artifacts}
    res = gate_scores(fp32, levels, x_val, float(block["threshold"]), views=views, acceptance=acc)
    for path, g in res.items():
        meta = read_meta(path)
        own = {} if g.own_threshold is None else {"threshold": g.own_threshold, "calibrated_with": g.artifact,
                                                  "n": int(len(x_val))}
        write_meta(path, {**meta, "ood": {**block, **own, "fp32_threshold": g.threshold, "drift_gate": g.as_dict()}})
    return res
