"""The INT8 drift gate: validation accuracy of the Q/DQ model against the FP32 model.

If the drop exceeds the budget, the layers most sensitive to quantization are left in float and
the model is re-quantized from the same calibration ranges (no recalibration), then re-measured,
until the drop is within budget or nothing is left to exclude.

Sensitivity comes from onnxruntime's ``qdq_loss_debug``: for every quantized activation, the
signal-to-quantization-noise ratio (SQNR, dB) between the tensor before and after its Q/DQ pair
on validation images. The lowest SQNR is the most damaged tensor; the quantized nodes that
produce or consume it are excluded first.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (scikit-learn)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, probs.argmax(1)))


class _ArrayReader:
    """A CalibrationDataReader over an in-memory batch (for the loss debugger)."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 16):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        b = self.x[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.name: b}


def rank_sensitive_nodes(fp32: str | os.PathLike, qdq: str | os.PathLike, x: np.ndarray,
                         skip: Sequence[str] = ()) -> List[Dict]:
    """Quantized nodes ordered from most to least quantization-sensitive.

    Args:
        fp32: The float model.
        qdq: The Q/DQ model.
        x: Validation inputs (a few dozen images are plenty).
        skip: Node names already excluded.

    Returns:
        ``[{"node": name, "tensor": activation, "sqnr_db": float}]``, lowest SQNR first; a node
        appears once, with its worst tensor.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    name = onnx.load(str(qdq), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edge-gate-") as tmp:
        aug = Path(tmp) / "qdq_aug.onnx"
        modify_model_output_intermediate_tensors(str(qdq), str(aug))
        acts = collect_activations(str(aug), _ArrayReader(name, x))
    errors = compute_activation_error(create_activation_matching(acts))

    g = onnx.load(str(qdq), load_external_data=False).graph
    # activation tensor (pre-Q name) → the weighted nodes that consume it via DQ, or produce it.
    q_of = {n.input[0]: n.output[0] for n in g.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    consumers: Dict[str, List[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    producer = {o: n.name for n in g.node for o in n.output}
    from convert.quantize import TRT_OP_TYPES

    weighted = {n.name for n in g.node if n.op_type in TRT_OP_TYPES}
    best: Dict[str, Dict] = {}
    for tensor, err in errors.items():
        sqnr = float(err["qdq_err"])
        nodes = set()
        q = q_of.get(tensor)
        dq = dq_of.get(q) if q else None
        if dq:
            nodes.update(c for c in consumers.get(dq, []) if c in weighted)
        if producer.get(tensor) in weighted:
            nodes.add(producer[tensor])
        for nd in nodes - set(skip):
            if nd not in best or sqnr < best[nd]["sqnr_db"]:
                best[nd] = {"node": nd, "tensor": tensor, "sqnr_db": round(sqnr, 2)}
    return sorted(best.values(), key=lambda d: d["sqnr_db"])


@dataclass
class GateResult:
    """What the gate did.

    Attributes:
        max_drift_pp: Budget (percentage points of validation accuracy).
        fp32_accuracy: FP32 ONNX validation accuracy.
        steps: One entry per measurement: excluded nodes so far, accuracy, drift.
        excluded: Nodes left in float in the final model.
        passed: Whether the final drift is within budget.
        val_images: Number of validation images.
        ranking: Sensitivity ranking used.
    """

    max_drift_pp: float
    fp32_accuracy: float
    val_images: int
    steps: List[Dict] = field(default_factory=list)
    excluded: List[str] = field(default_factory=list)
    passed: bool = False
    ranking: List[Dict] = field(default_factory=list)

    @property
    def drift_before_pp(self) -> float:
        return self.steps[0]["drift_pp"]

    @property
    def drift_after_pp(self) -> float:
        return self.steps[-1]["drift_pp"]

    def as_dict(self) -> Dict:
        return {"split": "val", "val_images": self.val_images, "max_drift_pp": self.max_drift_pp,
                "fp32_accuracy": self.fp32_accuracy, "drift_before_pp": self.drift_before_pp,
                "drift_after_pp": self.drift_after_pp, "excluded_nodes": list(self.excluded),
                "passed": self.passed, "steps": self.steps, "ranking": self.ranking[:20]}


def run_gate(fp32: str | os.PathLike, qdq: str | os.PathLike, quantize: Callable[[Sequence[str], Path], Path],
             x_val: np.ndarray, y_val: np.ndarray, max_drift_pp: float = 0.5, max_rounds: int = 8,
             rank_images: int = 32, say: Callable[[str], None] = print) -> GateResult:
    """Measure the drift of ``qdq`` and, if over budget, exclude sensitive nodes and re-quantize.

    Args:
        fp32: FP32 ONNX model.
        qdq: The Q/DQ model made with nothing excluded; replaced in place by the final model.
        quantize: ``quantize(exclude, out_path)`` re-quantizes from the stored ranges.
        x_val: Validation inputs (float32 NHWC), y_val: their labels.
        max_drift_pp: Allowed accuracy drop in percentage points.
        max_rounds: At most this many re-quantizations; each round doubles the number of
            excluded nodes (1, 2, 4, ...), re-ranking on the current model.
        rank_images: Validation images used for the sensitivity ranking.
        say: Progress output (one line per round).

    Returns:
        The :class:`GateResult`; ``qdq`` holds the last model measured.
    """
    from convert.export import ort_predict, ort_session

    if len(x_val) == 0:
        raise EdgeError("the drift gate needs validation images (the val split is empty)")
    acc32 = accuracy(ort_predict(ort_session(fp32), x_val), y_val)
    res = GateResult(max_drift_pp, acc32, len(x_val))
    qdq = Path(qdq)

    def measure(excluded):
        acc = accuracy(ort_predict(ort_session(qdq, level="basic"), x_val), y_val)
        drift = round((acc32 - acc) * 100.0, 3)
        res.steps.append({"excluded": len(excluded), "accuracy": acc, "drift_pp": drift})
        return drift

    drift = measure([])
    say(f"drift gate: val accuracy fp32 {acc32:.2%}, int8 {res.steps[-1]['accuracy']:.2%} "
        f"(drift {drift:+.2f} pp, budget {max_drift_pp:g} pp)")
    excluded: List[str] = []
    k = 1
    for _ in range(max_rounds):
        if drift <= max_drift_pp:
            break
        ranking = rank_sensitive_nodes(fp32, qdq, x_val[:rank_images], skip=excluded)
        if not res.ranking:
            res.ranking = ranking
        if not ranking:
            break
        new = [r["node"] for r in ranking[:k]]
        excluded += new
        quantize(excluded, qdq)
        drift = measure(excluded)
        say(f"drift gate: left {len(excluded)} node(s) in float ({', '.join(new)}): drift {drift:+.2f} pp")
        k *= 2
    res.excluded = excluded
    res.passed = drift <= max_drift_pp
    return res
