"""Annotated frames (tile grid, class colours, uncertain / unknown, confidence) and the strip defect map."""

import numpy as np
import pytest

from edge.capture.annotate import (UNCERTAIN_RGB, UNKNOWN_RGB, TileResult, annotate_frame, class_colors, defect_map,
                                   tile_style, tiles_from_events)
from edge.errors import EdgeError

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
T = 100


def _bgr(rgb):
    return np.array(rgb[::-1])


def test_each_tile_outlined_in_its_colour_with_a_legend():
    frame = np.full((2 * T, 3 * T), 128, np.uint8)
    tiles = [TileResult((0, 0, T, T), "crazing", 0.98), TileResult((T, 0, T, T), "scratches", 0.91),
             TileResult((2 * T, 0, T, T), "patches", 0.41, uncertain=True), TileResult((0, T, T, T), None),
             TileResult((T, T, T, T), "no_such_class", 0.9)]
    img = annotate_frame(frame, tiles, CLASSES, title="frame 7")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[1] == 3 * T and img.shape[0] > 2 * T  # + legend
    colors = class_colors(CLASSES)
    # a pixel of each tile's outline, on the left edge half-way down (away from the label box)
    expect = {(0, 0): colors["crazing"], (T, 0): colors["scratches"], (2 * T, 0): UNCERTAIN_RGB,
              (0, T): UNKNOWN_RGB, (T, T): UNKNOWN_RGB}
    for (x, y), rgb in expect.items():
        assert np.abs(img[y + T // 2, x + 2].astype(int) - _bgr(rgb)).max() <= 2, (x, y)
    # a tile without a result is left unfilled; a classified one is tinted towards its colour
    assert np.abs(img[T + T // 2, T // 2].astype(int) - 128).max() <= 1
    assert not np.array_equal(img[T // 2, T // 2], np.array([128, 128, 128]))
    assert frame.max() == frame.min() == 128                      # the input is not drawn on


def test_labels_say_class_confidence_and_state():
    colors = class_colors(CLASSES)
    assert tile_style(TileResult((0, 0, 1, 1), "pitted_surface", 0.934), colors) == \
        ("class", colors["pitted_surface"], "PS 0.93")
    assert tile_style(TileResult((0, 0, 1, 1), "patches", 0.41, True), colors)[::2] == ("uncertain", "? Pa 0.41")
    assert tile_style(TileResult((0, 0, 1, 1), None), colors)[::2] == ("unknown", "unknown")
    assert tile_style(TileResult((0, 0, 1, 1), "unknown", 0.8), colors)[::2] == ("unknown", "unknown")
    assert tile_style(TileResult((0, 0, 1, 1), "rust", 0.8), colors)[::2] == ("unknown", "rust?")
    assert len(set(colors.values())) == 6


def test_bgr_frames_and_bad_input():
    bgr = np.zeros((T, T, 3), np.uint8)
    assert annotate_frame(bgr, [TileResult((0, 0, T, T), "inclusion", 0.7)], CLASSES, legend=False).shape == (T, T, 3)
    with pytest.raises(EdgeError):
        annotate_frame(np.zeros((0,), np.uint8), [], CLASSES)


def test_tiles_from_events_groups_by_frame():
    ev = [{"frame": 1, "tile": [0, 0, 10, 10], "label": "crazing", "confidence": 0.9, "uncertain": False},
          {"frame": 0, "tile": [10, 0, 10, 10], "label": "patches", "confidence": 0.3, "uncertain": True},
          {"frame": 1, "tile": [10, 0, 10, 10], "label": "scratches", "confidence": 0.8}]
    by = tiles_from_events(ev)
    assert sorted(by) == [0, 1] and len(by[1]) == 2
    assert by[0][0] == TileResult((10, 0, 10, 10), "patches", 0.3, True)


def test_defect_map_places_events_along_and_across(tmp_path, monkeypatch):
    import matplotlib.axes

    seen = []
    orig = matplotlib.axes.Axes.scatter

    def spy(self, x, y, *a, **kw):
        seen.append((kw.get("label"), list(np.asarray(x)), list(np.asarray(y))))
        return orig(self, x, y, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    ev = [{"frame": 0, "tile": [0, 0, 200, 200], "label": "crazing", "uncertain": False},
          {"frame": 2, "tile": [400, 200, 200, 200], "label": "crazing", "uncertain": False},
          {"frame": 1, "tile": [200, 0, 200, 200], "label": "scratches", "uncertain": True},
          {"frame": 1, "tile": [0, 200, 200, 200], "label": "no_defect", "uncertain": False}]
    out = defect_map(ev, CLASSES + ["no_defect"], 400, tmp_path / "map.png", mm_per_px=0.5, strip_width_px=800,
                     ok_classes=["no_defect"])
    import cv2

    assert cv2.imread(str(out)).shape[1] > 400
    by = {lab.split(" (")[0]: (x, y) for lab, x, y in seen}
    # along = (frame * 400 + y + 100) * 0.5 mm, across = (x + 100) * 0.5 mm
    assert by["Cr crazing"] == ([50.0, 550.0], [50.0, 250.0])
    assert by["Sc scratches"] == ([250.0], [150.0])
    assert not any("no_defect" in lab for lab, _, _ in seen)  # not a defect: not drawn
    assert any("uncertain" in lab for lab, _, _ in seen)


def test_defect_map_errors(tmp_path):
    with pytest.raises(EdgeError, match="no defect event"):
        defect_map([], CLASSES, 100, tmp_path / "m.png")
    with pytest.raises(EdgeError, match="advance"):
        defect_map([{"frame": 0, "tile": [0, 0, 1, 1], "label": "crazing"}], CLASSES, 0, tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
