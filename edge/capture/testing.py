"""A tiny ONNX classifier with metadata, for tests and smoke runs of the daemon (no training).

The model's prediction depends only on a tile's mean brightness: class k is the one whose
centre ``k / (K-1)`` is nearest to the mean of the preprocessed tile (unit scale), with
softmax(-sharpness * (mean - centre)^2). So a test can paint tiles of known classes and
confidences. It is an ordinary NHWC float32 → (N, K) softmax ONNX graph that ONNX Runtime runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def make_intensity_model(path: str | Path, size: int = 32, classes: Optional[Sequence[str]] = None,
                         sharpness: float = 400.0, dynamic_batch: bool = True) -> Path:
    """Write ``path`` (.onnx) and ``path.json`` metadata; return ``path``."""
    import onnx
    from onnx import TensorProto, helper

    from edge.metadata import write_meta
    from edge.preprocess import Preprocess

    classes = list(classes or ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"])
    k = len(classes)
    centres = np.linspace(0.0, 1.0, k).astype(np.float32)
    batch = "N" if dynamic_batch else 1
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),       # (N,)
        helper.make_node("Unsqueeze", ["mean", "axis1"], ["mean2"]),                           # (N, 1)
        helper.make_node("Sub", ["mean2", "centres"], ["d"]),                                  # (N, K)
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Mul", ["d2", "negsharp"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("centres", TensorProto.FLOAT, [k], centres.tolist()),
             helper.make_tensor("negsharp", TensorProto.FLOAT, [], [-float(sharpness)])]
    graph = helper.make_graph(
        nodes, "intensity", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, size, size, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="steel-edge-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    prep = Preprocess(size, size, 1, "unit")
    write_meta(path, {"format": "onnx", "backend": "onnxruntime", "precision": "fp32", "classes": classes,
                      "input": {"name": "input", "shape": [-1 if dynamic_batch else 1, size, size, 1],
                                "dtype": "float32", "layout": "NHWC"},
                      "output": {"name": "probs", "shape": [-1 if dynamic_batch else 1, k]},
                      "preprocess": prep.to_dict()})
    return path


def class_level(k: int, n_classes: int = 6) -> int:
    """The uint8 grey level the intensity model classifies as class ``k`` with high confidence."""
    return int(round(255 * k / (n_classes - 1)))
