"""Format names come from the converter's table where it knows the file."""

import pytest

from bench.formats import describe, table_row


def test_known_onnx_files_use_the_table():
    cf = pytest.importorskip("convert.formats")
    for f in cf.onnx_formats():
        d = describe(f.file, {"format": "onnx", "backend": "onnxruntime", "precision": f.precision})
        assert d["format"] == f"ONNX ({f.name})" and d["precision"] == f.precision
        assert d["format_name"] == f.name and d["backend"] == "onnxruntime"


def test_engine_pattern_and_unknown_files():
    pytest.importorskip("convert.formats")
    row = table_row("model.fp16.orin-trt10.3.engine")
    assert row is not None and row.backend == "tensorrt" and row.precision == "fp16"
    d = describe("other.onnx", {"format": "onnx", "backend": "onnxruntime", "precision": "fp16"})
    assert d == {"format": "ONNX", "precision": "fp16", "backend": "onnxruntime", "format_name": None}


def test_metadata_precision_wins_over_the_table():
    d = describe("model.onnx", {"format": "onnx", "backend": "onnxruntime", "precision": "fp16"})
    assert d["precision"] == "fp16"
