"""scripts/demo.py: its inputs are checked (a calibration/gate set with test images is refused) and the
line pictures are drawn from the daemon's events (annotated frames, defect map)."""

import csv
import importlib.util
import json
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(tmp_path, calib):
    return Namespace(model_dir=str(ROOT / "models" / "neu-compact"), sample=str(ROOT / "data" / "neu-sample"),
                     calib=str(calib))


def test_committed_inputs_pass(demo, tmp_path):
    demo._check_inputs(_args(tmp_path, ROOT / "data" / "neu-calib"))


def test_calibration_set_with_a_test_image_is_refused(demo, tmp_path):
    calib = tmp_path / "calib"
    shutil.copytree(ROOT / "data" / "neu-calib", calib)
    rows = list(csv.DictReader(open(calib / "split.csv", newline="")))
    rows[0]["split"] = "test"
    with open(calib / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(EdgeError, match="never see them"):
        demo._check_inputs(_args(tmp_path, calib))


def test_annotate_line_from_events(demo, tmp_path):
    import cv2

    line = tmp_path / "line"
    (line / "frames").mkdir(parents=True)
    for f in range(2):
        cv2.imwrite(str(line / "frames" / f"frame_{f:05d}.png"), np.full((200, 400), 90 + 40 * f, np.uint8))
    (line / "line.json").write_text(json.dumps({"frames": 2, "frames_dir": "frames", "rows": 2, "cols": 4,
                                                "tile": 100}))
    ev = [{"frame": f, "tile": [x, y, 100, 100], "label": "crazing" if x else "patches", "confidence": 0.9,
           "uncertain": f == 1 and x == 100 and y == 0} for f in range(2) for y in (0, 100) for x in (0, 100, 200, 300)]
    (line / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    classes = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    pics = demo.annotate_line(line, line / "events.jsonl", classes, 0.5)
    assert [p.name for p in pics["annotated"]] == ["annotated_00000.png", "annotated_00001.png"]
    assert pics["shown"].name == "annotated_00001.png"         # the frame with the uncertain tile
    assert cv2.imread(str(pics["annotated"][0])).shape[1] == 400 and pics["defect_map"].is_file()
    assert pics["advance_px"] == 200 and pics["events"] == 16


def _artifacts(conv, score_passed=True, int8_passed=True):
    from edge.metadata import write_meta

    conv.mkdir()
    for f in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8cpu.onnx"):
        (conv / f).write_bytes(b"onnx")
        meta = {"ood": {"score": "logit_cosine", "threshold": -0.8}}
        if f != "model.onnx":
            meta["ood"]["drift_gate"] = {"passed": score_passed or f == "model.fp16.onnx", "decision_agreement_pct": 99.5,
                                         "max_abs_diff": 0.2 if f != "model.fp16.onnx" else 0.002,
                                         "max_diff_of_spread": 0.5, "fp32_spread_p1_p99": 0.2}
        if "int8" in f:
            meta["drift_gate"] = {"passed": int8_passed}
        write_meta(conv / f, meta)


def test_convert_gates_go_on_only_for_a_failed_score_gate(demo, tmp_path):
    _artifacts(tmp_path / "ok")
    assert all(g["score_gate"] is None or g["score_gate"]["passed"] for g in demo.convert_gates(tmp_path / "ok", 0).values())
    with pytest.raises(EdgeError, match="no failed gate"):           # exit 1 that no gate explains
        demo.convert_gates(tmp_path / "ok", 1)
    _artifacts(tmp_path / "score", score_passed=False)
    gates = demo.convert_gates(tmp_path / "score", 1)                 # the score gate failed: reported, goes on
    assert [f for f, g in gates.items() if g["score_gate"] and not g["score_gate"]["passed"]] == [
        "model.int8.onnx", "model.int8cpu.onnx"]
    text = "\n".join(demo.score_section(gates, "model.int8cpu.onnx"))
    assert "**FAILED**" in text and "indicative" in text and "| `model.fp16.onnx` | -0.8000 | passed |" in text
    _artifacts(tmp_path / "acc", score_passed=False, int8_passed=False)
    with pytest.raises(EdgeError, match="accuracy drift gate failed for model.int8.onnx"):
        demo.convert_gates(tmp_path / "acc", 1)
