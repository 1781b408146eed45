"""Line capacity: tiles/s a line needs, headroom, the fastest line kept up with, the sentence."""

import pytest

from bench.capacity import best_throughput, line_capacity, required_tiles_per_s, sentence
from edge.errors import EdgeError


def test_the_issue_example():
    # 10 m/s, 1.5 m wide, 0.5 mm/px, 200 px tiles: 3000 px = 15 tiles across, 20000 px/s = 100 rows/s
    cap = line_capacity(3450, 10, 1500, 0.5, 200)
    assert cap["tiles_across"] == 15 and cap["required_tiles_per_s"] == 1500
    assert cap["headroom"] == pytest.approx(2.3) and cap["max_line_speed_m_per_s"] == pytest.approx(23)
    assert cap["verdict"] == "keeps up"
    assert set(cap) >= {"required_tiles_per_s", "measured_tiles_per_s", "headroom", "max_line_speed_m_per_s",
                        "verdict"}
    assert "keeps up at 10 m/s with 2.3x headroom; up to 23 m/s" in sentence(cap)


def test_falls_behind():
    cap = line_capacity(750, 10, 1500, 0.5, 200, artifact="/x/model.int8.onnx", batch=8)
    assert cap["verdict"] == "falls behind" and cap["headroom"] == pytest.approx(0.5)
    assert cap["max_line_speed_m_per_s"] == pytest.approx(5)
    s = sentence(cap)
    assert s.startswith("`model.int8.onnx` falls behind at 10 m/s") and "up to 5 m/s" in s and "batch 8" in s


def test_stride_and_a_width_that_is_no_multiple_of_the_tile():
    r = required_tiles_per_s(1, 1500, 0.5, 200, 100)     # overlap: 29 across, 2000 px/s / 100 px = 20 rows/s
    assert r["tiles_across"] == 29 and r["required_tiles_per_s"] == pytest.approx(580)
    assert required_tiles_per_s(1, 1550, 0.5, 200)["tiles_across"] == 16  # the last tile is shifted to the edge
    assert required_tiles_per_s(1, 100, 1, 100)["tiles_across"] == 1


@pytest.mark.parametrize("args, match", [
    ((0, 1500, 0.5, 200), "line_speed"), ((1, -5, 0.5, 200), "strip_width"), ((1, 1500, 0, 200), "mm_per_px"),
    ((1, 1500, 0.5, 200, 300), "gaps"), ((1, 50, 0.5, 200), "narrower than one 200 px tile"),
    ((float("nan"), 1500, 0.5, 200), "^line_speed")])
def test_bad_figures_are_one_line_errors(args, match):
    with pytest.raises(EdgeError, match=match):
        required_tiles_per_s(*args)


def test_no_throughput():
    with pytest.raises(EdgeError, match="no measured throughput"):
        line_capacity(0, 1, 1500, 0.5, 200)


def test_best_throughput_skips_failed_artifacts():
    res = [{"artifact": "a", "status": "ok", "throughput_ips": {"1": 100.0, "8": 300.0}},
           {"artifact": "b", "status": "failed", "throughput_ips": {"8": 9999.0}},
           {"artifact": "c", "status": "drift", "throughput_ips": {"1": 250.0}}]
    assert best_throughput(res) == {"artifact": "a", "batch": 8, "measured_tiles_per_s": 300.0}
    assert best_throughput([{"artifact": "b", "status": "failed", "throughput_ips": {}}]) is None
