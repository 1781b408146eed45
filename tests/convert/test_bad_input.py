"""Every bad input of issue 3: one-line error, exit code 2, nothing written in OUTDIR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

from convert.cli import main  # noqa: E402


def _folder(tmp: Path, tiny_model: Path, name: str, model=None) -> Path:
    d = tmp / name
    d.mkdir()
    for f in ("preprocess.json", "classes.json", "split.csv"):
        shutil.copy(tiny_model.parent / f, d / f)
    if model is not None:
        model.save(d / "model.keras")
    return d / "model.keras"


def _head(x, units=6, activation="softmax"):
    h = keras.layers.Conv2D(2, 3)(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.layers.Dense(units, activation=activation)(h)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("bad_models")
    inp = keras.Input((64, 64, 1))
    out = {}
    lam = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out["lambda"] = _folder(tmp, tiny_model, "lambda", keras.Model(inp, _head(lam)))

    class Doubler(keras.layers.Layer):  # not registered: a custom object
        def call(self, t):
            return t * 2.0

    out["custom"] = _folder(tmp, tiny_model, "custom", keras.Model(inp, _head(Doubler()(inp))))
    out["linear"] = _folder(tmp, tiny_model, "linear", keras.Model(inp, _head(inp, activation=None)))
    out["classes"] = _folder(tmp, tiny_model, "classes", keras.Model(inp, _head(inp, units=4)))
    d = _folder(tmp, tiny_model, "notkeras")
    d.write_bytes(b"not a zip archive")
    out["notkeras"] = d
    h5 = tmp / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    out["h5"] = h5
    return out


def _run(argv, capsys, out: Path, expect: str):
    rc = main([str(a) for a in argv] + ["-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("edge-convert: error:"), err
    assert expect.lower() in err.lower(), err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging left
    return err


def test_missing_model(tmp_path, capsys):
    _run([tmp_path / "nope.keras"], capsys, tmp_path / "o", "does not exist")


def test_not_a_keras_file(models, tmp_path, capsys):
    _run([models["notkeras"]], capsys, tmp_path / "o", "not a Keras model file")
    _run([models["h5"]], capsys, tmp_path / "o", "not a Keras model file")
    _run([tmp_path], capsys, tmp_path / "o", "is a folder")


def test_lambda_layer_refused(models, tmp_path, capsys):
    _run([models["lambda"]], capsys, tmp_path / "o", "Lambda")


def test_custom_object_refused(models, tmp_path, capsys):
    _run([models["custom"]], capsys, tmp_path / "o", "custom objects")


def test_output_not_softmax(models, tmp_path, capsys):
    _run([models["linear"]], capsys, tmp_path / "o", "not a softmax")


def test_output_not_over_the_classes(models, tmp_path, capsys):
    _run([models["classes"]], capsys, tmp_path / "o", "not (N, 6)")


def test_int8_without_calib_data(tiny_model, tmp_path, capsys):
    _run([tiny_model, "--int8"], capsys, tmp_path / "o", "--calib-data")
    _run([tiny_model, "--int8-cpu"], capsys, tmp_path / "o", "--calib-data")


def test_calib_folder_empty(tiny_model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _run([tiny_model, "--int8", "--calib-data", empty], capsys, tmp_path / "o", "empty")


def test_calib_size_larger_than_train_split(tiny_model, sample_dir, tmp_path, capsys):
    _run([tiny_model, "--int8", "--calib-data", sample_dir, "--calib-size", "500"], capsys, tmp_path / "o",
         "larger than the train split")


def test_calib_split_other_than_train(tiny_model, sample_dir, tmp_path, capsys):
    _run([tiny_model, "--int8", "--calib-data", sample_dir, "--calib-split", "test", "--calib-size", "5"], capsys,
         tmp_path / "o", "only use the training split")


def test_unreadable_calibration_image(tiny_model, sample_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(sample_dir, data)
    # corrupt every train image so the stratified draw surely meets one
    import csv

    with open(tiny_model.parent / "split.csv", newline="") as f:
        train = [r["file"] for r in csv.DictReader(f) if r["split"] == "train"]
    for name in train:
        (data / name).write_bytes(b"BM garbage")
    _run([tiny_model, "--int8", "--calib-data", data, "--calib-size", "12"], capsys, tmp_path / "o", "cannot decode image")


def test_class_names_not_matching(tiny_model, tmp_path, capsys):
    data = tmp_path / "other"
    for c in ("cats", "dogs"):
        (data / c).mkdir(parents=True)
    src = sorted((Path(__file__).resolve().parents[2] / "data" / "neu-sample").glob("*.bmp"))[:4]
    for i, p in enumerate(src):
        shutil.copy(p, data / ("cats" if i % 2 else "dogs") / p.name)
    _run([tiny_model, "--int8", "--calib-data", data, "--calib-size", "2", "--split-file",
          tiny_model.parent / "split.csv"], capsys, tmp_path / "o", "not among the model's classes")


def test_outdir_exists_without_force(tiny_model, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main([str(tiny_model), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and "--force" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_outdir_not_writable(tiny_model, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    rc = main([str(tiny_model), "-o", str(blocker / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not writable" in err and len(err.strip().splitlines()) == 1


def test_bad_numbers(tiny_model, sample_dir, tmp_path, capsys):
    _run([tiny_model, "--max-drift", "-1"], capsys, tmp_path / "o", "--max-drift")
    _run([tiny_model, "--batch", "8"], capsys, tmp_path / "o", "--batch must be 1 or dynamic")
    _run([tiny_model, "--int8", "--calib-data", sample_dir, "--calib-size", "0"], capsys, tmp_path / "o", "at least 1")


def test_force_replaces_only_when_complete(tiny_model, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    # a failing run with --force leaves the old folder untouched
    assert main([str(tiny_model), "--int8", "--force", "-o", str(out)]) == 2
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert main([str(tiny_model), "--force", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_gate_failure_exits_1_and_keeps_artifacts(tiny_model, sample_dir, tmp_path, capsys, monkeypatch):
    """Wiring only (the gate itself is tested on a real model in test_qdq_and_gate.py): a failed
    gate keeps the artifacts, marks the metadata, and exits 1 with the figures."""
    import convert.gate as gate

    def failing(fp32, qdq, quantize, x, y, max_drift_pp=0.5, **kw):
        r = gate.GateResult(max_drift_pp, 0.9, len(x), steps=[{"excluded": 0, "accuracy": 0.5, "drift_pp": 40.0, "agreement_pct": 60.0}])
        return r

    monkeypatch.setattr(gate, "run_gate", failing)
    out = tmp_path / "o"
    rc = main([str(tiny_model), "--int8", "--calib-data", str(sample_dir), "--calib-size", "12",
               "--calib-method", "minmax", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "gate failed" in err and "+40.00 pp (budget 0.5)" in err and "60.00 %" in err
    import json

    meta = json.loads((out / "model.int8.onnx.json").read_text())
    assert meta["drift_gate"]["passed"] is False and (out / "model.int8.onnx").is_file()


def test_cpu_gate_failure_exits_1_and_says_which_gate(tiny_model, sample_dir, tmp_path, capsys, monkeypatch):
    """Wiring only: the Q/DQ gate passes, the CPU int8 gate (measured at level all) fails: exit 1,
    the message names the CPU gate and its metadata file, both artifacts kept."""
    import json

    import convert.gate as gate

    levels = []

    def by_level(fp32, qdq, quantize, x, y, max_drift_pp=0.5, level="basic", **kw):
        levels.append(level)
        bad = level == "all"
        return gate.GateResult(max_drift_pp, 0.9, len(x), passed=not bad, level=level,
                               steps=[{"excluded": 0, "accuracy": 0.5 if bad else 0.9,
                                       "drift_pp": 40.0 if bad else 0.0, "agreement_pct": 60.0 if bad else 100.0}])

    monkeypatch.setattr(gate, "run_gate", by_level)
    out = tmp_path / "o"
    rc = main([str(tiny_model), "--int8", "--int8-cpu", "--calib-data", str(sample_dir), "--calib-size", "12",
               "--calib-method", "minmax", "-o", str(out)])
    err = capsys.readouterr().err
    assert levels == ["basic", "all"]
    assert rc == 1 and "CPU int8 drift gate failed" in err and "model.int8cpu.onnx.json marks the gate failed" in err
    assert "INT8 drift gate failed" not in err
    cmeta = json.loads((out / "model.int8cpu.onnx.json").read_text())
    assert cmeta["drift_gate"]["passed"] is False and cmeta["drift"]["drift_pp"] == 40.0
    assert json.loads((out / "model.int8.onnx.json").read_text())["drift_gate"]["passed"] is True
    assert (out / "model.int8.onnx").is_file() and (out / "model.int8cpu.onnx").is_file()
