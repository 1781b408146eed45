"""Calibration: train split only, stratified, chunked collection, the record."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from calibrate import reader as reader_mod
from calibrate.reader import calibration_set
from calibrate.record import make_record, read_record, write_record
from edge.data import NEU_CLASSES, load_dataset, make_split, write_split_csv
from edge.errors import EdgeError
from edge.preprocess import Preprocess


@pytest.fixture(scope="module")
def split_csv(sample_dir, tmp_path_factory):
    ds = load_dataset(sample_dir)
    path = tmp_path_factory.mktemp("split") / "split.csv"
    write_split_csv(path, ds, make_split(ds, seed=42))
    return path


def _split_of(path):
    with open(path, newline="") as f:
        return {r["file"]: r["split"] for r in csv.DictReader(f)}


def test_calibration_set_is_stratified_train_only(sample_dir, split_csv):
    cs = calibration_set(sample_dir, NEU_CLASSES, split_csv, size=24)
    split = _split_of(split_csv)
    assert len(cs) == 24 and cs.available == sum(v == "train" for v in split.values())
    assert all(split[f] == "train" for f in cs.files)
    assert set(cs.dataset.counts().values()) == {4}  # 24 over 6 classes, stratified
    s = cs.summary()
    assert s["split"] == "train" and s["size"] == 24 and len(s["image_list_sha256"]) == 64
    # the hash depends on the chosen images
    other = calibration_set(sample_dir, NEU_CLASSES, split_csv, size=24, seed=1)
    assert other.files != cs.files and other.image_list_sha256() != cs.image_list_sha256()


def test_calibration_never_reads_val_or_test_files(sample_dir, split_csv, tiny_onnx, monkeypatch):
    """Record every image file decoded during calibration: none may be outside the train split."""
    pytest.importorskip("onnxruntime")
    from calibrate.ranges import collect_ranges

    import edge.data as data_mod

    read = []
    real = data_mod.read_gray

    def spy(path):
        read.append(Path(path))
        return real(path)

    monkeypatch.setattr(data_mod, "read_gray", spy)
    monkeypatch.setattr(reader_mod, "read_gray", spy)
    onnx_path = tiny_onnx
    cs = calibration_set(sample_dir, NEU_CLASSES, split_csv, size=42)  # the whole train split
    rr = collect_ranges(onnx_path, [s.path for s in cs.dataset.samples], Preprocess(16, 16), "minmax", chunk=10)
    split = _split_of(split_csv)
    rel = {p.resolve().relative_to(Path(sample_dir).resolve()).as_posix() for p in read}
    assert rel and all(split[f] == "train" for f in rel)
    assert rr.images == 42 and rr.chunk == 10


def test_only_train_split_allowed(sample_dir, split_csv):
    for bad in ("test", "val", "all"):
        with pytest.raises(EdgeError, match="only use the training split"):
            calibration_set(sample_dir, NEU_CLASSES, split_csv, size=5, split=bad)


def test_bad_calibration_inputs(sample_dir, split_csv, tmp_path):
    with pytest.raises(EdgeError, match="larger than the train split"):
        calibration_set(sample_dir, NEU_CLASSES, split_csv, size=43)
    with pytest.raises(EdgeError, match="at least 1"):
        calibration_set(sample_dir, NEU_CLASSES, split_csv, size=0)
    with pytest.raises(EdgeError, match="split file .* does not exist"):
        calibration_set(sample_dir, NEU_CLASSES, tmp_path / "nope.csv", size=5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeError, match="empty"):
        calibration_set(empty, NEU_CLASSES, split_csv, size=5)
    with pytest.raises(EdgeError, match="not among the model's classes"):
        calibration_set(sample_dir, ["a", "b", "c", "d", "e", "f"], split_csv, size=5)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 16x16x1 → 6 softmax ONNX graph (no TensorFlow needed)."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = tmp_path_factory.mktemp("calib") / "tiny.onnx"
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (256, 6)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 256], np.int64), "shape")
    g = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16, 16, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 6])], [w, shape])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(out))
    return out


def test_chunked_minmax_equals_one_pass(sample_dir, split_csv, tiny_onnx):
    """Chunks merge: minmax ranges from 4 collect_data calls equal those from one call."""
    pytest.importorskip("onnxruntime")
    from calibrate.ranges import collect_ranges

    onnx_path = tiny_onnx
    paths = [s.path for s in calibration_set(sample_dir, NEU_CLASSES, split_csv, size=36).dataset.samples]
    prep = Preprocess(16, 16)
    one = collect_ranges(onnx_path, paths, prep, "minmax", chunk=36)
    four = collect_ranges(onnx_path, paths, prep, "minmax", chunk=9)
    assert one.ranges.keys() == four.ranges.keys()
    for k in one.ranges:
        assert np.allclose(one.ranges[k], four.ranges[k], rtol=1e-6, atol=1e-7)
    # histogram methods also run chunked and give finite ranges inside the minmax bounds
    pct = collect_ranges(onnx_path, paths, prep, "percentile", chunk=9)
    for k, (lo, hi) in pct.ranges.items():
        mlo, mhi = one.ranges[k]
        m = max(abs(mlo), abs(mhi))
        assert np.isfinite(lo) and np.isfinite(hi) and -m - 1e-5 <= lo <= hi <= m + 1e-5


def test_record_round_trip_and_errors(tmp_path):
    rec = make_record("entropy", {"a": (-1.0, 2.0)}, {"size": 3, "per_class": {"x": 3}}, {"peak_rss_mb": 1.0})
    p = write_record(tmp_path / "model.int8.calib.json", rec)
    back = read_record(p)
    assert back["ranges"] == {"a": [-1.0, 2.0]} and back["method"] == "entropy"
    with pytest.raises(EdgeError, match="does not exist"):
        read_record(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EdgeError, match="not valid JSON"):
        read_record(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"method": "minmax", "images": {}, "ranges": {}}')
    with pytest.raises(EdgeError, match="lacks"):
        read_record(tmp_path / "empty.json")
