"""The INT8 drift gate: validation accuracy of the Q/DQ model against the FP32 model.

Two criteria, both on the validation split: the accuracy drop (``max_drift_pp``) and the top-1
agreement with the FP32 model (``min_agreement``). Each validation image is measured in ``views``
flipped views (the image, its horizontal, vertical and double flip: orientations the training
augmentation already covers), so that 270 NEU validation images give 1,080 predictions: with the
images alone one image is a large step of the budget, too coarse to tell a model that will lose test
images (docs/results/code-choices.md).

If a criterion fails, the layers most sensitive to quantization are left in float and the model
is re-quantized from the same calibration ranges (no recalibration), then re-measured, until both
hold or nothing is left to exclude.

Sensitivity comes from onnxruntime's ``qdq_loss_debug`` (see :func:`rank_sensitive_nodes`): the
quantized node that loses the most SQNR against the FP32 model on validation images goes first.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from calibrate.reader import ArrayReader
from edge.errors import EdgeError
from edge.metrics import accuracy, agreement

log = logging.getLogger(__name__)


#: Flipped views of each validation image the gate measures by default.
GATE_VIEWS = 4


def flip_views(x: np.ndarray, views: int = GATE_VIEWS) -> np.ndarray:
    """``x`` (N, H, W, C) followed by its horizontal, vertical and double flips (the first ``views`` of the four).

    Returns:
        ``(views * N, H, W, C)``: view-major, so the labels are ``np.tile(y, views)``.
    """
    if views not in (1, 2, 4):
        raise EdgeError(f"gate views must be 1, 2 or 4, got {views}")
    if views > 1 and np.ndim(x) != 4:
        raise EdgeError(f"flipped gate views need NHWC images, got an input of shape {np.shape(x)}")
    all4 = (lambda a: a, lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, :], lambda a: a[:, ::-1, ::-1])
    return np.ascontiguousarray(np.concatenate([f(x) for f in all4[:views]]))


def rank_sensitive_nodes(fp32: str | os.PathLike, qdq: str | os.PathLike, x: np.ndarray,
                         skip: Sequence[str] = ()) -> List[Dict]:
    """Quantized weighted nodes ordered from most to least quantization-sensitive.

    onnxruntime's ``qdq_loss_debug`` records every float tensor of the FP32 and the Q/DQ model on
    the same inputs. For each quantized Conv/Gemm/MatMul, the signal-to-quantization-noise ratio
    (SQNR, dB; onnxruntime's ``compute_signal_to_quantization_noice_ratio``) of the Q/DQ model's
    tensor against the FP32 one is taken at the node's (dequantized) activation input and at its
    output; the sensitivity is the SQNR the node loses (input SQNR − output SQNR): where the
    quantization error appears, rather than where it was inherited. (A plain per-tensor SQNR
    misses the classic failure: one outlier channel sets the int8 step and wipes out every other
    channel while the tensor's global SQNR stays high.)

    Args:
        fp32: The float model.
        qdq: The Q/DQ model.
        x: Validation inputs (a few dozen images are plenty).
        skip: Node names already excluded.

    Returns:
        ``[{"node": name, "op": type, "sqnr_in_db", "sqnr_out_db", "loss_db"}]``, largest loss first.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                         compute_signal_to_quantization_noice_ratio as sqnr,
                                                         modify_model_output_intermediate_tensors)

    from convert.quantize import TRT_OP_TYPES

    name = onnx.load(str(qdq), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edge-gate-") as tmp:
        acts = {}
        for tag, model in (("q", qdq), ("f", fp32)):
            aug = Path(tmp) / f"{tag}_aug.onnx"
            modify_model_output_intermediate_tensors(str(model), str(aug))
            acts[tag] = collect_activations(str(aug), ArrayReader(name, x))
    qa, fa = acts["q"], acts["f"]

    g = onnx.load(str(qdq), load_external_data=False).graph
    producer = {o: n for n in g.node for o in n.output}
    out = []
    for n in g.node:
        if n.op_type not in TRT_OP_TYPES or n.name in skip:
            continue
        dq = producer.get(n.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue  # not quantized (already excluded)
        q = producer.get(dq.input[0])
        orig = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None
        o = n.output[0]
        if orig not in fa or dq.output[0] not in qa or o not in fa or o not in qa:
            continue
        s_in = float(sqnr(fa[orig], qa[dq.output[0]]))
        s_out = float(sqnr(fa[o], qa[o]))
        out.append({"node": n.name, "op": n.op_type, "sqnr_in_db": round(s_in, 2), "sqnr_out_db": round(s_out, 2),
                    "loss_db": round(s_in - s_out, 2)})
    return sorted(out, key=lambda d: -d["loss_db"])


@dataclass
class GateResult:
    """What the gate did.

    Attributes:
        max_drift_pp: Budget (percentage points of validation accuracy).
        fp32_accuracy: FP32 ONNX validation accuracy (over all views).
        val_images: Number of validation images.
        min_agreement: Required top-1 agreement with the FP32 model, percent.
        views: Flipped views per validation image (predictions = views * val_images).
        steps: One entry per measurement: excluded nodes so far, accuracy, drift, agreement.
        excluded: Nodes left in float in the final model.
        passed: Whether the final model meets both criteria.
        ranking: Sensitivity ranking used.
    """

    max_drift_pp: float
    fp32_accuracy: float
    val_images: int
    min_agreement: float = 0.0
    views: int = 1
    steps: List[Dict] = field(default_factory=list)
    excluded: List[str] = field(default_factory=list)
    passed: bool = False
    ranking: List[Dict] = field(default_factory=list)
    total_weighted: Optional[int] = None
    level: str = "basic"

    @property
    def drift_before_pp(self) -> float:
        return self.steps[0]["drift_pp"]

    @property
    def drift_after_pp(self) -> float:
        return self.steps[-1]["drift_pp"]

    @property
    def agreement_before(self) -> Optional[float]:
        return self.steps[0].get("agreement_pct")

    @property
    def agreement_after(self) -> Optional[float]:
        return self.steps[-1].get("agreement_pct")

    def meets(self, step: Dict) -> bool:
        """Both criteria hold for one measurement."""
        return (step["drift_pp"] <= self.max_drift_pp
                and step.get("agreement_pct", 100.0) >= self.min_agreement)

    def summary(self) -> str:
        """One line: drift and agreement before -> after, and the verdict."""
        def agr(v):
            return "?" if v is None else f"{v:.2f} %"
        return (f"val drift {self.drift_before_pp:+.2f} -> {self.drift_after_pp:+.2f} pp (budget {self.max_drift_pp:g}), "
                f"top-1 agreement {agr(self.agreement_before)} -> {agr(self.agreement_after)} "
                f"(at least {self.min_agreement:g} %) on {self.val_images} images x {self.views} views, "
                f"{len(self.excluded)} node(s) left in float by the gate")

    def as_dict(self) -> Dict:
        return {"split": "val", "val_images": self.val_images, "views": self.views,
                "predictions": self.val_images * self.views, "max_drift_pp": self.max_drift_pp,
                "min_agreement_pct": self.min_agreement, "fp32_accuracy": self.fp32_accuracy,
                "drift_before_pp": self.drift_before_pp, "drift_after_pp": self.drift_after_pp,
                "agreement_before_pct": self.agreement_before, "agreement_after_pct": self.agreement_after,
                "excluded_nodes": list(self.excluded), "passed": self.passed,
                "weighted_nodes": self.total_weighted, "ort_graph_optimization_level": self.level,
                "steps": self.steps, "ranking": self.ranking[:20]}


def run_gate(fp32: str | os.PathLike, qdq: str | os.PathLike, quantize: Callable[[Sequence[str], Path], Path],
             x_val: np.ndarray, y_val: np.ndarray, max_drift_pp: float = 0.5, max_rounds: int = 8,
             rank_images: int = 12, max_float_frac: float = 0.5, min_agreement: float = 99.0,
             views: int = GATE_VIEWS, level: str = "basic",
             name: str = "drift gate") -> GateResult:
    """Measure the drift and agreement of ``qdq`` and, if either fails, exclude sensitive nodes and re-quantize.

    Args:
        fp32: FP32 ONNX model.
        qdq: The Q/DQ model made with nothing excluded; replaced in place by the final model.
        quantize: ``quantize(exclude, out_path)`` re-quantizes from the stored ranges.
        x_val: Validation inputs (float32 NHWC), y_val: their labels.
        max_drift_pp: Allowed accuracy drop in percentage points.
        min_agreement: Required top-1 agreement with the FP32 model in percent (0 turns it off).
        views: Flipped views per validation image (1, 2 or 4; see :func:`flip_views`).
        max_rounds: At most this many re-quantizations; each round doubles the number of
            excluded nodes (1, 2, 4, ...), re-ranking on the current model.
        rank_images: Validation images used for the sensitivity ranking (every float tensor of both
            models is kept in memory for them: MobileNetV2 at 224 px is ~60 MB per image and model).
        max_float_frac: At most this fraction of the weighted (Conv/Gemm/MatMul) nodes may be left
            in float. Beyond it INT8 buys little and an "INT8" model that is mostly float would
            pass a gate it did not earn: the gate stops and fails instead (ship FP16).
        level: onnxruntime graph optimization level the INT8 model is measured at: ``basic`` for the
            TensorRT Q/DQ model (the exact Q/DQ arithmetic), ``all`` for the CPU int8 model (the
            fused int8 kernels it is deployed with, saturation included).
        name: How the progress lines call this gate.

    Returns:
        The :class:`GateResult`; ``qdq`` holds the last model measured.
    """
    from convert.export import ort_predict
    from edge.runtime.onnxrt.session import session as ort_session

    if len(x_val) == 0:
        raise EdgeError("the drift gate needs validation images (the val split is empty)")
    n_images = len(x_val)
    rank_x = x_val[:rank_images]
    x_val, y_val = flip_views(x_val, views), np.tile(np.asarray(y_val), views)
    top32 = ort_predict(ort_session(fp32), x_val).argmax(1)
    acc32 = accuracy(labels=y_val, probs=top32)
    res = GateResult(max_drift_pp, acc32, n_images, min_agreement=min_agreement, views=views, level=level)
    qdq = Path(qdq)

    def measure(excluded):
        top = ort_predict(ort_session(qdq, level=level), x_val).argmax(1)
        acc = accuracy(labels=y_val, probs=top)
        step = {"excluded": len(excluded), "accuracy": acc, "drift_pp": round((acc32 - acc) * 100.0, 3),
                "agreement_pct": round(agreement(top32, top) * 100.0, 3)}
        res.steps.append(step)
        return step

    step = measure([])
    log.info(f"{name}: {n_images} val images x {views} views, accuracy fp32 {acc32:.2%}, int8 {step['accuracy']:.2%} "
             f"(drift {step['drift_pp']:+.2f} pp, budget {max_drift_pp:g} pp), top-1 agreement "
             f"{step['agreement_pct']:.2f} % (at least {min_agreement:g} %)")
    excluded, step = _exclude_sensitive(res, step, measure, lambda skip: rank_sensitive_nodes(fp32, qdq, rank_x, skip),
                                        lambda exc: quantize(exc, qdq), max_rounds, max_float_frac, name)
    res.excluded = excluded
    res.passed = res.meets(step)
    return res


def _exclude_sensitive(res: GateResult, step: Dict, measure: Callable, rank: Callable, requantize: Callable,
                       max_rounds: int, max_float_frac: float, name: str):
    """The gate's rounds: leave the most sensitive nodes in float (1, 2, 4, ... per round), re-quantize
    and re-measure until both criteria hold, nothing is left to rank or the float budget is spent.

    Returns:
        (the nodes left in float, the last measurement).
    """
    excluded: List[str] = []
    k = 1
    for _ in range(max_rounds):
        if res.meets(step):
            break
        ranking = rank(excluded)
        if not res.ranking:
            res.ranking = ranking
        if not ranking:
            break
        if res.total_weighted is None:
            res.total_weighted = len(ranking)
        room = int(res.total_weighted * max_float_frac) - len(excluded)
        if room <= 0:
            log.info(f"{name}: stopping: {len(excluded)} of {res.total_weighted} weighted nodes already in float "
                     f"(limit {max_float_frac:.0%})")
            break
        new = [r["node"] for r in ranking[:min(k, room)]]
        excluded += new
        requantize(excluded)
        step = measure(excluded)
        log.info(f"{name}: left {len(excluded)} node(s) in float ({', '.join(new)}): drift {step['drift_pp']:+.2f} pp, "
                 f"agreement {step['agreement_pct']:.2f} %")
        k *= 2
    return excluded, step
