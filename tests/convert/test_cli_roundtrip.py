"""edge-convert end to end on the tiny model: every precision, metadata, round trips through runners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

from convert.cli import main  # noqa: E402
from convert.export import compare, ort_predict, ort_session  # noqa: E402
from edge.formats import CALIB_RECORD, FORMATS, onnx_formats  # noqa: E402
from edge.data import load_images, select  # noqa: E402
from edge.metadata import read_meta  # noqa: E402
from edge.runtime import load_runner  # noqa: E402


@pytest.fixture(scope="module")
def converted(tiny_model, sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "out"
    rc = main([str(tiny_model), "--fp16", "--int8", "--int8-cpu", "--calib-data", str(sample_dir),
               "--calib-size", "24", "--calib-method", "percentile", "--calib-chunk", "8", "--max-drift", "100", "--min-agreement", "0",
               "-o", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def val_images(tiny_model, sample_dir):
    ds = select(sample_dir, "val", split_file=tiny_model.parent / "split.csv")
    return load_images(ds)


def test_writes_every_onnx_format_with_metadata(converted, tiny_model):
    for f in onnx_formats():
        art = converted / f.file
        assert art.is_file(), f.file
        meta = read_meta(art)
        assert meta["precision"] == f.precision and meta["backend"] == f.backend == "onnxruntime"
        assert meta["classes"] == json.loads((tiny_model.parent / "classes.json").read_text())
        assert meta["input"]["shape"][0] == -1 and meta["input"]["layout"] == "NHWC"
        assert meta["preprocess"]["height"] == 64
        assert len(meta["source_model"]["sha256"]) == 64
        assert "onnxruntime" in meta["tools"]
    assert (converted / CALIB_RECORD).is_file()
    # nothing but artifacts, their metadata and the record; no staging leftovers beside OUTDIR
    names = {p.name for p in converted.iterdir()}
    assert names == {f.file for f in onnx_formats()} | {f.file + ".json" for f in onnx_formats()} | {CALIB_RECORD}
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]


def test_formats_table_drives_file_names():
    assert [f.file for f in onnx_formats()] == ["model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8cpu.onnx"]
    assert {f.precision for f in FORMATS} == {"fp32", "fp16", "int8", "int8-cpu"}


def test_fp32_matches_keras_through_runners(converted, tiny_model, val_images):
    with load_runner(tiny_model) as k, load_runner(converted / "model.onnx") as o:
        ref, got = k.infer_images(val_images), o.infer_images(val_images)
    c = compare(ref, got)
    assert c["max_abs_diff"] <= 1e-4 and c["top1_agreement"] == 1.0
    meta = read_meta(converted / "model.onnx")
    assert meta["checks"]["vs_keras"]["max_abs_diff"] <= 1e-4
    assert "val images" in meta["checks"]["vs_keras"]["images_from"]


def test_fp16_round_trip(converted, val_images):
    import onnx

    m = onnx.load(str(converted / "model.fp16.onnx"))
    # no FP16 input: uint8 tiles (the preprocessing is folded in by default)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)  # FP16 weights
    with load_runner(converted / "model.onnx") as a, load_runner(converted / "model.fp16.onnx") as b:
        c = compare(a.infer_images(val_images), b.infer_images(val_images))
    assert c["max_abs_diff"] <= 5e-3
    f = read_meta(converted / "model.fp16.onnx")["fp16"]
    assert f["passed"] and f["max_abs_diff"] <= f["tolerance"] == 5e-3 and "val images" in f["images_from"]


def test_int8_round_trips(converted, val_images):
    with load_runner(converted / "model.onnx") as a:
        assert a.input_form == "float"          # the FP32 reference keeps float input
        ref = a.infer(a.preprocess(val_images))
    # The Q/DQ model at the basic level (exact Q/DQ arithmetic, what TensorRT computes); by default
    # the deployable artifacts take the uint8 tiles as they are (preprocessing in the graph)
    assert read_meta(converted / "model.int8.onnx")["input"]["form"] == "uint8_tiles"
    q = ort_predict(ort_session(converted / "model.int8.onnx", level="basic"), val_images[..., None])
    c = compare(ref, q)
    assert np.allclose(q.sum(1), 1, atol=1e-3)
    assert c["max_abs_diff"] < 0.05, c
    with load_runner(converted / "model.int8cpu.onnx") as r:
        assert r.input_form == "uint8_tiles" and r.tile == val_images.shape[1:3]
        cpu = r.infer(r.host_input(val_images))
    assert compare(ref, cpu)["max_abs_diff"] < 0.05
    meta = read_meta(converted / "model.int8.onnx")
    assert meta["calibration"]["split"] == "train" and meta["calibration"]["size"] == 24
    assert meta["drift_gate"]["passed"] is True and meta["drift_gate"]["split"] == "val"
    assert meta["drift_gate"]["ort_graph_optimization_level"] == "basic"
    # the stem convolution in float by default (as in the CPU int8 default), said in the metadata
    from convert.quantize import stem_nodes
    stem = stem_nodes(converted / "model.onnx")
    assert stem and meta["quantization"]["float_stem"] == stem
    assert set(stem) <= set(meta["quantization"]["float_nodes"]) and meta["quantization"]["quantized_nodes"] > 0
    assert meta["quantization"]["excluded_by_gate"] == meta["drift_gate"]["excluded_nodes"]
    # the CPU model has its own gate, measured as it runs (level all), on the same val views
    cmeta = read_meta(converted / "model.int8cpu.onnx")
    cg = cmeta["drift_gate"]
    assert cg["passed"] is True and cg["split"] == "val" and cg["ort_graph_optimization_level"] == "all"
    assert cg["predictions"] == meta["drift_gate"]["predictions"] and cg["steps"][0]["excluded"] == 0
    assert cmeta["quantization"]["excluded_nodes"][:len(meta["drift_gate"]["excluded_nodes"])] == meta["drift_gate"]["excluded_nodes"]
    assert cmeta["drift"]["views"] == cg["views"] and cmeta["drift"]["drift_pp"] == cg["steps"][-1]["drift_pp"]


def test_calibration_record(converted, tiny_model):
    rec = json.loads((converted / CALIB_RECORD).read_text())
    assert rec["method"] == "percentile" and rec["symmetric"] is True
    assert rec["images"]["size"] == 24 and sum(rec["images"]["per_class"].values()) == 24
    assert len(rec["images"]["image_list_sha256"]) == 64
    assert rec["ranges"] and all(lo <= hi for lo, hi in rec["ranges"].values())
    # every activation that carries a Q/DQ pair in the INT8 model has a stored range
    import onnx

    g = onnx.load(str(converted / "model.int8.onnx")).graph
    inits = {i.name for i in g.initializer}
    q_inputs = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert q_inputs and q_inputs <= set(rec["ranges"])
    assert rec["collection"]["peak_rss_mb"] > 0


def test_int8_requantized_from_record_is_identical(converted, tmp_path):
    """The record alone (no images) reproduces the Q/DQ model: what a rebuild on the Jetson needs."""
    from calibrate.record import read_record
    from convert.quantize import to_qdq_int8

    rec = read_record(converted / CALIB_RECORD)
    excluded = read_meta(converted / "model.int8.onnx")["drift_gate"]["excluded_nodes"]
    out = to_qdq_int8(converted / "model.onnx", tmp_path / "again.onnx", rec["method"], rec["ranges"], exclude=excluded)
    import onnx

    from convert.fold import fold_preprocess

    tile = read_meta(converted / "model.int8.onnx")["input"]["tile"]    # folded as edge-convert does by default
    fold_preprocess(out, out, tile, meta=read_meta(converted / "model.onnx"))

    a, b = onnx.load(str(converted / "model.int8.onnx")), onnx.load(str(out))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    ia = {i.name: onnx.numpy_helper.to_array(i) for i in a.graph.initializer}
    ib = {i.name: onnx.numpy_helper.to_array(i) for i in b.graph.initializer}
    assert ia.keys() == ib.keys() and all(np.array_equal(ia[k], ib[k]) for k in ia)


def test_engine_auto_without_tensorrt_says_how_to_build(tiny_model, sample_dir, tmp_path, capsys):
    from convert.tensorrt import tensorrt_installed

    if tensorrt_installed():
        pytest.skip("TensorRT is installed here")
    out = tmp_path / "o"
    assert main([str(tiny_model), "-o", str(out), "--calib-data", str(sample_dir)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "no TensorRT engine" in ln]
    assert len(lines) == 1 and f"edge-convert --from-onnx {out}/model.int8.onnx" in lines[0]
    assert not list(out.glob("*.engine"))
    assert main([str(tiny_model), "-o", str(tmp_path / "o2"), "--engine", "always"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_fixed_batch_one(tiny_model, tmp_path):
    out = tmp_path / "b1"
    assert main([str(tiny_model), "--batch", "1", "-o", str(out)]) == 0
    meta = read_meta(out / "model.onnx")
    assert meta["input"]["shape"][0] == 1
    with load_runner(out / "model.onnx") as r:
        assert r.max_batch == 1
        assert r.infer(np.zeros((3, 64, 64, 1), np.float32)).shape == (3, 6)  # chunked by the runner
