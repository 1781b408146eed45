"""`edge-convert --from-onnx` on a device install: no TensorFlow is imported on the way.

Runs in the JetPack matrix (`make test-jetpack`, runtime-only venvs without TensorFlow) as well as
in the main suite. Without TensorRT or a GPU the build ends in one line; the point is the import
chain and the message, the TensorRT build itself is a `gpu` test on a device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _artifact(tmp_path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8, 8, 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 64])
    g = helper.make_graph([helper.make_node("Reshape", ["input", "shape"], ["flat"]),
                           helper.make_node("Softmax", ["flat"], ["probs"], axis=1)], "g", [x], [y],
                          initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64])])
    path = tmp_path / "model.int8.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (tmp_path / "model.int8.onnx.json").write_text(json.dumps({
        "format": "onnx", "backend": "onnxruntime", "precision": "int8", "classes": ["a"],
        "preprocess": {"height": 8, "width": 8, "channels": 1, "scale": "unit"}}))
    return path


def test_from_onnx_imports_no_tensorflow_and_fails_in_one_line_without_tensorrt(tmp_path):
    art = _artifact(tmp_path)
    code = ("import sys\n"
            "from convert.cli import main\n"
            f"rc = main(['--from-onnx', {str(art)!r}])\n"
            "print('RC', rc, 'TF', 'tensorflow' in sys.modules, 'KERAS', 'keras' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    last = r.stdout.strip().splitlines()[-1]
    assert "TF False" in last and "KERAS False" in last, r.stdout + r.stderr
    try:
        import tensorrt  # noqa: F401
        from edge.cuda import gpu_available

        if gpu_available():
            pytest.skip("TensorRT and a GPU are here: the build itself is covered by the gpu tests")
    except ImportError:
        pass
    assert "RC 2" in last
    err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("edge-convert: error: ")
    assert "TensorRT is not installed" in err[0] or "no CUDA GPU" in err[0]


def test_runtime_modules_import_without_tensorflow():
    code = ("import sys\n"
            "import edge.runtime, edge.runtime.tensorrt, edge.cuda, convert.tensorrt, convert.cli, edge.capture.daemon\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
