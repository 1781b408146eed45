"""edge.formats (the one table), edge.metadata.ArtifactMeta and the loaders of edge.runtime."""

from __future__ import annotations

import json
import zipfile

import pytest

from edge.errors import EdgeError
from edge.formats import FORMATS, TOLERANCES, by_name, engine_for, onnx_for, onnx_formats, row_for_file
from edge.metadata import ArtifactMeta, read_meta, write_meta


def test_table_rows():
    assert [f.file for f in onnx_formats()] == ["model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8cpu.onnx"]
    assert len({f.name for f in FORMATS}) == len(FORMATS)
    for f in FORMATS:
        assert f.tolerance in TOLERANCES and f.tolerances == TOLERANCES[f.tolerance]
        assert (f.option is None) == (f.flag is None)
        assert f.flag is None or f.flag == "--" + f.option.replace("_", "-")
    assert onnx_for("int8-cpu").name == "int8-cpu" and engine_for("fp16").name == "engine-fp16"
    assert engine_for("int8").engine_alias == "model.int8.engine"
    assert by_name("int8").ort_level == "basic" and by_name("int8-cpu").ort_level is None
    with pytest.raises(EdgeError, match="unknown format"):
        by_name("int4")
    with pytest.raises(EdgeError, match="not an engine format"):
        by_name("fp16").engine_alias


def test_row_for_file():
    assert row_for_file("model.fp16.b1-32.trt10.3.0.30.orin-sm87.engine").name == "engine-fp16"
    assert row_for_file("model.int8cpu.onnx").name == "int8-cpu"
    assert row_for_file("model.int8.engine") is None and row_for_file("other.onnx") is None


def test_engine_name_follows_the_table():
    from convert.tensorrt import engine_name

    name = engine_name("int8", None, 32, "10.3.0.30", "Orin", "8.7")
    assert name == "model.int8.b1-32.trt10.3.0.30.orin-sm87.engine" and row_for_file(name).name == "engine-int8"


def test_artifact_meta_from_the_table_and_derived(tmp_path):
    m = ArtifactMeta.for_format(by_name("int8"), classes=["a", "b"], preprocess={"height": 8},
                                input={"shape": [-1, 8, 8, 1]}, calibration=None, drift_gate={"passed": True},
                                checks={"vs_fp32_onnx": {}})
    d = m.to_dict()
    assert list(d)[:3] == ["format", "backend", "precision"] and d["precision"] == "int8"
    assert d["calibration"] is None and d["drift_gate"] == {"passed": True} and "output" not in d
    art = tmp_path / "model.int8.onnx"
    art.write_bytes(b"x")
    write_meta(art, d)
    back = ArtifactMeta.from_dict(read_meta(art))
    assert back.to_dict() == d                        # "artifact" is write_meta's, not a section
    e = back.derive(engine_for("int8"), keep=("drift_gate", "ood"), tensorrt={"version": "10.3"}).to_dict()
    assert (e["format"], e["backend"], e["precision"]) == ("engine", "tensorrt", "int8")
    assert e["drift_gate"] == {"passed": True} and "checks" not in e and "ood" not in e and "calibration" not in e


def test_keras_metadata_fallback(tmp_path):
    from edge.preprocess import Preprocess

    prep = Preprocess(height=32, width=32, channels=1)
    (tmp_path / "preprocess.json").write_text(json.dumps(prep.to_dict()))
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "model.keras").write_bytes(b"x")
    meta = read_meta(tmp_path / "model.keras")
    assert meta["artifact"] == "model.keras" and (meta["format"], meta["backend"], meta["precision"]) == \
        ("keras", "keras", "fp32")
    assert meta["input"]["shape"] == [-1, 32, 32, 1] and meta["classes"] == ["a", "b"]


def test_onnxruntime_session_level_rule(tmp_path):
    pytest.importorskip("onnxruntime")
    from edge.runtime.onnxrt.session import check_level, level_of, session

    assert level_of({"onnxruntime": {"graph_optimization_level": "basic"}}) == "basic"
    assert level_of({}) is None and level_of(None) is None
    assert check_level("BASIC") == "basic"
    with pytest.raises(EdgeError, match="unknown onnxruntime graph_optimization_level"):
        check_level("max")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EdgeError, match="onnxruntime cannot load"):
        session(bad, wrap_errors=True)
    with pytest.raises(Exception) as e:
        session(bad)
    assert not isinstance(e.value, EdgeError)


def test_one_keras_loader_refuses_before_importing_keras(tmp_path):
    from edge.runtime.keras import load_keras_model
    from edge.runtime.keras.runner import load_keras_model as runner_loader

    assert runner_loader is load_keras_model   # the runner and the converter share it
    with pytest.raises(EdgeError, match="does not exist"):
        load_keras_model(tmp_path / "none.keras")
    with pytest.raises(EdgeError, match="is a folder"):
        load_keras_model(tmp_path)
    h5 = tmp_path / "m.h5"
    h5.write_bytes(b"\x89HDF")
    with pytest.raises(EdgeError, match="not a Keras model file"):
        load_keras_model(h5)
    z = tmp_path / "m.keras"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("weights.h5", b"")
    with pytest.raises(EdgeError, match="no config.json"):
        load_keras_model(z)
