"""edge-doctor: the verdict logic, and a full run on this machine (the ONNX Runtime chain passes,
GPU / TensorRT checks skip with their reason, exit 0). Runs in the JetPack matrix too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge import doctor


def test_compare_applies_the_fp16_and_int8_criteria():
    ref = np.array([[0.9, 0.1], [0.2, 0.8]] * 50, np.float32)
    labels = ref.argmax(1)
    st, why, data = doctor.compare(ref, ref + 4e-3, labels, "fp16")
    assert st == "pass" and data["max_abs_diff"] == pytest.approx(4e-3, abs=1e-6)
    assert doctor.compare(ref, ref + 6e-3, labels, "fp16")[0] == "fail"
    flipped = ref.copy()
    flipped[:3] = flipped[:3, ::-1]                     # 97 % agreement
    st, why, data = doctor.compare(ref, flipped, labels, "int8")
    assert st == "fail" and data["top1_agreement_pct"] == pytest.approx(97.0) and "98" in why
    flipped = ref.copy()
    flipped[:2] = flipped[:2, ::-1]                     # 98 %
    assert doctor.compare(ref, flipped, labels, "int8")[0] == "pass"


@pytest.mark.parametrize("l4t,jp", [("35.4.1", "5.1.2"), ("36.3.0", "6.0"), ("36.4.3", "6.1/6.2"), ("38.2.0", "7.x"),
                                    ("32.7.1", None)])
def test_jetpack_of(l4t, jp):
    got = doctor.jetpack_of(l4t)
    assert (got[0] if got else None) == jp


def test_find_artifacts_in_the_folder_or_its_onnx_subfolder(tmp_path):
    assert doctor.find_artifacts(tmp_path) == {}
    (tmp_path / "onnx").mkdir()
    for f in ("model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json", "model.fp16.onnx"):
        (tmp_path / "onnx" / f).write_text("x")
    found = doctor.find_artifacts(tmp_path)
    assert sorted(found) == ["fp32", "int8"]          # fp16 has no metadata: not an artifact
    assert doctor.find_artifacts(tmp_path / "onnx" / "model.onnx") == found


def test_a_failing_check_is_reported_not_raised():
    d = doctor.Doctor()
    d.run("s", "boom", lambda: 1 / 0)
    d.run("s", "ok", lambda: ("pass", "fine\nsecond line"))
    assert [(c.status, c.reason) for c in d.checks] == [("fail", "ZeroDivisionError: division by zero"),
                                                      ("pass", "fine second line")]
    assert d.summary() == {"pass": 1, "warn": 0, "fail": 1, "skip": 0}


def test_doctor_on_this_machine_runs_the_onnxruntime_chain(tmp_path, sample_dir):
    pytest.importorskip("onnxruntime")
    from scripts.fixtures.intensity_model import make_intensity_model

    model = tmp_path / "model"
    model.mkdir()
    make_intensity_model(model / "model.onnx", size=32)
    out_json, out_md = tmp_path / "d.json", tmp_path / "d.md"
    rc = doctor.main(["--model", str(model), "--data", str(sample_dir), "--json", str(out_json), "--md", str(out_md),
                      "--iterations", "2"])
    report = json.loads(out_json.read_text())
    by = {(c["section"], c["name"]): c for c in report["checks"]}
    assert rc == (1 if report["summary"]["fail"] else 0)
    assert report["summary"]["fail"] == 0, [c for c in report["checks"] if c["status"] == "fail"]
    assert by[("chain", "onnxruntime fp32")]["status"] == "pass"
    assert by[("chain", "onnxruntime int8")]["status"] == "skip"          # the stand-in has no INT8 artifact
    assert by[("chain", "daemon (onnxruntime)")]["status"] == "pass"
    assert by[("chain", "daemon (onnxruntime)")]["data"]["events"] == 4 * 8
    from edge.cuda import gpu_available

    if not gpu_available():
        for name in ("engine fp16", "engine int8", "runner modes"):
            c = by[("tensorrt", name)]
            assert c["status"] == "skip" and c["reason"]
        assert by[("platform", "gpu")]["status"] == "skip"
    assert all(c["reason"] and "\n" not in c["reason"] for c in report["checks"])
    md = out_md.read_text()
    assert "| chain | onnxruntime fp32 | pass |" in md


def test_line_capacity_uses_the_measured_throughput(tmp_path, sample_dir):
    pytest.importorskip("bench.capacity")
    from scripts.fixtures.intensity_model import make_intensity_model

    model = tmp_path / "model"
    model.mkdir()
    make_intensity_model(model / "model.onnx", size=32)
    out = tmp_path / "d.json"
    rc = doctor.main(["--model", str(model), "--data", str(sample_dir), "--json", str(out), "--line-speed", "1",
                      "--strip-width", "1000", "--mm-per-px", "1"])
    cap = {(c["section"], c["name"]): c for c in json.loads(out.read_text())["checks"]}[("line", "capacity")]
    assert rc == 0 and cap["status"] in ("pass", "warn")
    assert cap["data"]["measured_tiles_per_s"] > 0 and cap["data"]["artifact"] == "model.onnx"
    assert ("keeps up" in cap["reason"]) == (cap["status"] == "pass")
    assert doctor.main(["--model", str(model), "--line-speed", "1"]) == 2   # needs all three figures


def test_quick_and_bad_model(tmp_path, capsys):
    assert doctor.main(["--quick"]) in (0, 1)
    assert "chain/all: --quick" in capsys.readouterr().out
    assert doctor.main(["--model", str(tmp_path / "nope")]) == 2


def test_doctor_on_the_committed_model_passes_the_onnxruntime_chain(tmp_path):
    """The committed model's ONNX artifacts (what a Jetson gets) on the embedded sample: FP16 within
    5e-3 of FP32, INT8 >= 98 % top-1 agreement, the daemon right on a generated line; no failure."""
    pytest.importorskip("onnxruntime")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "d.json"
    rc = doctor.main(["--model", str(root / "models" / "neu-compact"), "--json", str(out), "--iterations", "2"])
    report = json.loads(out.read_text())
    by = {(c["section"], c["name"]): c for c in report["checks"]}
    assert rc == 0 and report["summary"]["fail"] == 0
    for name in ("artifacts", "sample", "onnxruntime fp32", "onnxruntime fp16", "onnxruntime int8",
                 "onnxruntime latency", "daemon (onnxruntime)"):
        assert by[("chain", name)]["status"] == "pass", by[("chain", name)]
    assert by[("chain", "onnxruntime fp16")]["data"]["max_abs_diff"] <= 5e-3
    assert by[("chain", "onnxruntime int8")]["data"]["top1_agreement_pct"] >= 98.0


@pytest.mark.parametrize("show,status", [
    ("SOC family:tegra234\nGPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\n", "pass"),
    ("GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000\n", "warn"),
    ("CPU Cluster Switching: Disabled\n", "warn"),
])
def test_clocks_pinned_is_read_from_jetson_clocks_show(monkeypatch, show, status):
    monkeypatch.setattr(doctor, "_run", lambda cmd, timeout=10: show)
    st, reason, *_ = doctor.check_clocks()
    assert st == status and reason


def test_l4t_release_maps_to_jetpack(monkeypatch, tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    real = Path
    monkeypatch.setattr(doctor, "Path", lambda p: f if p == "/etc/nv_tegra_release" else real(p))
    assert doctor.l4t_release() == "35.4.1"
    st, reason, data = doctor.check_l4t()
    assert st == "pass" and "JetPack 5.1.2" in reason and data["l4t"] == "35.4.1"


def test_png_decoding_check_names_the_inflater(monkeypatch):
    import zlib

    from edge.capture import png

    status, text, data = doctor.check_png_decoding()
    assert (status, data["inflater"]) == (("pass", "isal") if png.inflater() == "isal" else ("warn", "zlib"))
    monkeypatch.setattr(png, "_zlib_impl", zlib)
    status, text, data = doctor.check_png_decoding()
    assert status == "warn" and "isal is not installed" in text and data == {"inflater": "zlib"}
