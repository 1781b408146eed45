"""The bench opens Q/DQ models at the graph optimisation level their metadata names."""

import json
import shutil

import numpy as np
import pytest

from bench.runners import open_runner
from edge.errors import EdgeError


def test_unknown_level_in_metadata_is_refused(linear_models, tmp_path):
    shutil.copy(linear_models / "model.onnx", tmp_path / "m.onnx")
    meta = json.loads((linear_models / "model.onnx.json").read_text())
    meta["onnxruntime"] = {"graph_optimization_level": "fast"}
    (tmp_path / "m.onnx.json").write_text(json.dumps(meta))
    with pytest.raises(EdgeError, match="graph_optimization_level"):
        open_runner(tmp_path / "m.onnx")


def test_levelled_runner_uses_the_level_and_gives_the_same_outputs(linear_models, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    shutil.copy(linear_models / "model.onnx", tmp_path / "m.onnx")
    meta = json.loads((linear_models / "model.onnx.json").read_text())
    meta["onnxruntime"] = {"graph_optimization_level": "basic"}
    (tmp_path / "m.onnx.json").write_text(json.dumps(meta))
    x = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    with open_runner(tmp_path / "m.onnx", threads=1) as r:
        opts = r.session.get_session_options()
        assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        assert opts.intra_op_num_threads == 1
        levelled = r.infer(x)
    with open_runner(linear_models / "model.onnx") as r:      # no level in the metadata: the plain runner
        assert r.session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        plain = r.infer(x)
    np.testing.assert_allclose(levelled, plain, atol=1e-6)
