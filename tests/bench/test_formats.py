"""Format names come from the one table of formats (edge/formats.py) where it knows the file."""

from bench.formats import describe, table_row
from edge.formats import onnx_formats


def test_known_onnx_files_use_the_table():
    for f in onnx_formats():
        d = describe(f.file, {"format": "onnx", "backend": "onnxruntime", "precision": f.precision})
        assert d["format"] == f"ONNX ({f.name})" and d["precision"] == f.precision
        assert d["format_name"] == f.name and d["backend"] == "onnxruntime"


def test_engine_pattern_and_unknown_files():
    row = table_row("model.fp16.orin-trt10.3.engine")
    assert row is not None and row.backend == "tensorrt" and row.precision == "fp16"
    d = describe("other.onnx", {"format": "onnx", "backend": "onnxruntime", "precision": "fp16"})
    assert d == {"format": "ONNX", "precision": "fp16", "backend": "onnxruntime", "format_name": None}


def test_metadata_precision_wins_over_the_table():
    d = describe("model.onnx", {"format": "onnx", "backend": "onnxruntime", "precision": "fp16"})
    assert d["precision"] == "fp16"
