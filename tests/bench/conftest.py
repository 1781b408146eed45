"""Fixtures of the bench tests: a small nearest-class-mean classifier as a Keras model and ONNX twins.

The Keras model (Flatten → Dense softmax, weights computed from the embedded sample, no training)
is the FP32 reference; ``model.onnx`` is the same linear map built with onnx.helper (an exact
artifact) and ``model.rolled.onnx`` has its class columns rolled by one (every top-1 differs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SIZE = 16


def _onnx_linear(path: Path, w: np.ndarray, b: np.ndarray, size: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 1])
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", w.shape[1]])
    inits = [numpy_helper.from_array(np.array([-1, size * size], np.int64), "shape"),
             numpy_helper.from_array(w.astype(np.float32), "W"),
             numpy_helper.from_array(b.astype(np.float32), "B")]
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "B"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(nodes, "linear", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def linear_models(tmp_path_factory, sample_dir):
    """Folder with model.keras (+ preprocess/classes/split), model.onnx and model.rolled.onnx (+ .json).

    ``rolled/model.keras`` is the Keras twin of model.rolled.onnx; each ONNX file's metadata names its
    source model (path and sha256) as edge-convert writes it.
    """
    keras = pytest.importorskip("keras")
    from edge.data import load_dataset, load_images, make_split, write_split_csv
    from edge.fsutil import sha256_file, write_json
    from edge.metadata import write_meta
    from edge.preprocess import Preprocess

    out = tmp_path_factory.mktemp("linear")
    ds = load_dataset(sample_dir)
    prep = Preprocess(SIZE, SIZE, 1, "unit")
    x = prep(load_images(ds)).reshape(len(ds), -1).astype(np.float64)
    y = ds.labels
    mu = np.stack([x[y == k].mean(0) for k in range(len(ds.classes))])  # (K, D)
    scale = 20.0
    w = (scale * mu.T).astype(np.float32)                  # logit_k = s * (x.mu_k - |mu_k|^2 / 2)
    b = (-0.5 * scale * (mu ** 2).sum(1)).astype(np.float32)

    model = keras.Sequential([keras.Input((SIZE, SIZE, 1), name="input"), keras.layers.Flatten(),
                              keras.layers.Dense(len(ds.classes), activation="softmax", name="probs")])
    model.layers[-1].set_weights([w, b])
    model.save(out / "model.keras")
    prep.save(out / "preprocess.json")
    write_json(out / "classes.json", ds.classes)
    write_split_csv(out / "split.csv", ds, make_split(ds, seed=42))

    def meta(name, precision="fp32"):
        return {"format": "onnx", "backend": "onnxruntime", "precision": precision, "classes": ds.classes,
                "preprocess": prep.to_dict(),
                "input": {"name": "input", "shape": [-1, SIZE, SIZE, 1], "dtype": "float32", "layout": "NHWC"},
                "output": {"name": "probs", "shape": [-1, len(ds.classes)]}}

    # A second Keras model, the rolled one, in its own folder (same split): the source of model.rolled.onnx.
    rolled = out / "rolled"
    rolled.mkdir()
    model.layers[-1].set_weights([np.roll(w, 1, axis=1), np.roll(b, 1)])
    model.save(rolled / "model.keras")
    for name in ("preprocess.json", "classes.json", "split.csv"):
        (rolled / name).write_bytes((out / name).read_bytes())

    _onnx_linear(out / "model.onnx", w, b, SIZE)
    write_meta(out / "model.onnx", {**meta("model.onnx"), "source_model": {
        "path": str(out / "model.keras"), "sha256": sha256_file(out / "model.keras")}})
    _onnx_linear(out / "model.rolled.onnx", np.roll(w, 1, axis=1), np.roll(b, 1), SIZE)
    write_meta(out / "model.rolled.onnx", {**meta("model.rolled.onnx"), "source_model": {
        "path": str(rolled / "model.keras"), "sha256": sha256_file(rolled / "model.keras")}})
    (out / "facts.json").write_text(json.dumps({"classes": ds.classes}))
    return out
