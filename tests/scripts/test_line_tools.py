"""scripts/synthline.py and scripts/daemon_throughput.py (tools of the runtime checks) on a tiny
folder-per-class set and the brightness model: the line's labels, scoring, and the check runner."""

import json

import numpy as np
import pytest

from scripts.fixtures.intensity_model import class_level, make_intensity_model

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 images per class; every third one of a class is painted at the next class's level."""
    import cv2

    root = tmp_path_factory.mktemp("steel")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(10):
            level = class_level((c + 1) % 6 if i % 3 == 0 else c)
            img = np.clip(level + rng.normal(0, 3, (40, 40)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{name}_{i}.png"), img)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_intensity_model(tmp_path_factory.mktemp("m") / "m.onnx", 16)


def test_make_line_labels_and_frames(tmp_path, dataset):
    import cv2

    from scripts.synthline import make_line, read_labels

    info = make_line(str(dataset), tmp_path / "line", cols=2, rows=2, tile=40, fmt="both")
    assert info["images"] == 9 and info["frames"] == 3 and info["padded_tiles"] == 3
    labels = read_labels(tmp_path / "line" / "labels.csv")
    assert len(labels) == 12 and sum(r["padded"] == "1" for r in labels.values()) == 3
    # each tile of each frame holds exactly the image its label row names
    frame = cv2.imread(str(tmp_path / "line" / "frames" / "frame_00001.png"), cv2.IMREAD_GRAYSCALE)
    row = labels[(1, 40, 0)]
    src = cv2.imread(str(dataset / row["file"]), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(frame[0:40, 40:80], src) and row["label"] == row["file"].split("/")[0]
    cap = cv2.VideoCapture(str(tmp_path / "line" / "line.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    from edge.errors import EdgeError

    with pytest.raises(EdgeError, match="already exists"):
        make_line(str(dataset), tmp_path / "line", cols=2, rows=2, tile=40)


def test_check_line_accuracy_events_and_sigterm(tmp_path, dataset, model):
    from scripts.synthline import check_line, make_line

    make_line(str(dataset), tmp_path / "line", cols=1, rows=1, tile=40)   # 9 frames of one tile
    res = check_line(str(model), tmp_path / "line", str(dataset), None, workdir=str(tmp_path / "work"))
    sc = res["full_run"]["score"]
    assert sc["events"] == 9 == res["full_run"]["expected_events"] and res["full_run"]["events_equal_frames_x_tiles"]
    assert 0 < sc["accuracy"] < 1                           # the repainted images are misclassified
    assert sc["accuracy"] == pytest.approx(res["artifact_test_accuracy"]["accuracy"])   # lossless video: same pixels
    assert res["accuracy_within_1pp"]
    sig = res["sigterm_run"]
    assert sig["returncode"] == 0 and sig["all_events_present"] and sig["every_frame_complete"]


def test_daemon_throughput_same_batches(tmp_path, dataset, model):
    from scripts.daemon_throughput import measure
    from scripts.synthline import make_line

    make_line(str(dataset), tmp_path / "line", cols=2, rows=2, tile=40)
    res = measure(str(model), str(tmp_path / "line" / "line.avi"), tile=40, batch=3, rounds=2)
    assert res["tiles"] == 12 and res["batches"] == 6             # 3 frames x (3 + 1) tiles per batch split
    assert len(res["bare_tiles_per_s"]) == len(res["daemon_tiles_per_s"]) == 2
    modes = res["bare_modes_tiles_per_s"]            # both bare modes each round; the round's figure is the faster
    assert set(modes) == {"infer", "infer_batches"} and all(len(v) == 2 for v in modes.values())
    assert res["bare_tiles_per_s"] == [max(a, b) for a, b in zip(modes["infer"], modes["infer_batches"])]
    assert all(r["lanes"] == res["runner_lanes"] for r in res["daemon_runs"])
    assert res["ratio"] == pytest.approx(res["daemon_median"] / res["bare_median"], rel=0.05, abs=1e-3)
    assert all(r["events"] == 12 for r in res["daemon_runs"])
    from edge.capture.daemon import STAGES

    assert res["input_form"] == "float" and list(res["profile_ms_per_frame"]) == list(STAGES)
    assert res["profile_ms_per_frame"]["inference"] > 0 and res["daemon_wall_ms_per_frame"] > 0
    run = res["cpu_ms_per_tile_bare"] * 4                      # the video is decoded: a ceiling below 1
    assert res["decode_cpu_ms_per_frame"] > 0
    assert res["decode_ceiling"] == pytest.approx(run / (run + res["decode_cpu_ms_per_frame"]), rel=0.02)   # rounded inputs
    assert res["decode_ceiling"] < 1


def test_decode_ceiling_arithmetic():
    from scripts.daemon_throughput import decode_ceiling

    assert decode_ceiling(0.4, 16, 0.0) == 1.0                 # nothing to decode (raw): no ceiling
    assert decode_ceiling(0.4, 16, 6.4) == pytest.approx(0.5)  # decoding costs as much CPU as the runner


def test_merge_into_keeps_other_keys(tmp_path):
    from scripts.synthline import merge_into
    from edge.errors import EdgeError

    p = tmp_path / "r.json"
    assert merge_into(p, None, {"a": 1}) == {"a": 1}
    assert merge_into(p, "line", {"a": 1}) == {"line": {"a": 1}}
    p.write_text(json.dumps({"line": {"a": 1}}))
    assert merge_into(p, "throughput", {"b": 2}) == {"line": {"a": 1}, "throughput": {"b": 2}}
    p.write_text("[1]")
    with pytest.raises(EdgeError, match="JSON object"):
        merge_into(p, "x", {})


def test_daemon_split_ab_runs_the_three_runner_modes(tmp_path, model):
    import json

    from scripts.daemon_split_ab import main

    frames = np.random.default_rng(2).integers(0, 256, (4, 32, 64), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "ab.json"
    assert main(["--model", str(model), "--source", f"raw://{tmp_path / 'frames.npy'}", "--batch", "4",
                 "--rounds", "2", "-o", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["modes"]) == {"intra-op", "split", "lanes"}
    assert all(len(m["tiles_per_s"]) == 2 and min(m["tiles_per_s"]) > 0 for m in res["modes"].values())
    assert len(res["paired_split_over_intra_op"]) == len(res["paired_lanes_over_split"]) == 2
    split, lanes = res["modes"]["split"]["tiles_per_s"], res["modes"]["lanes"]["tiles_per_s"]
    assert res["paired_lanes_over_split"] == [round(c / b, 3) for b, c in zip(split, lanes)]


def test_png_decode_speed_reports_both_paths_bit_identical(tmp_path):
    """scripts/png_decode_speed.py: OpenCV-written textured frames take the numpy path; every frame is checked."""
    pytest.importorskip("PIL")
    pytest.importorskip("isal", reason="isal not installed: decode is OpenCV alone")
    import cv2

    from scripts.png_decode_speed import main, markdown

    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f_{i}.png"), np.clip(128 + rng.normal(0, 25, (40, 160)), 0, 255).astype(np.uint8))
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["--png", str(tmp_path), "--frames", "3", "--repeats", "1", "-o", str(out), "--md", str(md)]) == 0
    res = json.loads(out.read_text())
    assert res["forms"]["as written"]["paths"] == {"numpy": 3}
    assert sum(res["forms"]["pillow"]["paths"].values()) == 3     # Pillow's filters depend on the image
    assert all(r["bit_identical"] and r["opencv_ms"] > 0 and r["edge_ms"] > 0 for r in res["forms"].values())
    assert "| as written | 160x40 |" in md.read_text() and markdown(res) == md.read_text()
