"""Tiling maths: tile, stride, ROI."""

import numpy as np
import pytest

from edge.capture.tiling import cut, parse_roi, tile_grid, to_gray
from edge.errors import EdgeError


def test_grid_without_overlap_covers_whole_tiles_only():
    g = tile_grid(650, 420, 200)
    assert g == [(x, y, 200, 200) for y in (0, 200) for x in (0, 200, 400)]   # 650 → 3 whole tiles, 420 → 2


def test_grid_with_stride_and_roi():
    g = tile_grid(1000, 600, 200, stride=100, roi=(50, 100, 500, 300))
    xs = sorted({b[0] for b in g})
    ys = sorted({b[1] for b in g})
    assert xs == [50, 150, 250, 350] and ys == [100, 200]                      # last tile ends at 550 <= 50+500
    assert len(g) == 8
    assert all(x >= 50 and y >= 100 and x + w <= 550 and y + h <= 400 for x, y, w, h in g)


def test_roi_is_clipped_to_the_frame_and_rectangular_tiles():
    g = tile_grid(300, 300, (100, 50), stride=(100, 50), roi=(100, 0, 10_000, 120))
    assert g == [(100, 0, 100, 50), (200, 0, 100, 50), (100, 50, 100, 50), (200, 50, 100, 50)]


def test_bad_tiling_is_refused():
    with pytest.raises(EdgeError, match="smaller than one 200x200 tile"):
        tile_grid(640, 480, 200, roi=(0, 0, 150, 480))
    with pytest.raises(EdgeError, match="outside"):
        tile_grid(640, 480, 200, roi=(700, 0, 10, 10))
    with pytest.raises(EdgeError, match="positive"):
        tile_grid(640, 480, 200, stride=0)


def test_parse_roi():
    assert parse_roi("10,20,300,400") == (10, 20, 300, 400)
    assert parse_roi([1, 2, 3, 4]) == (1, 2, 3, 4)
    assert parse_roi(None) is None
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,10"):
        with pytest.raises(EdgeError):
            parse_roi(bad)


def test_cut_and_gray():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[:, 3:] = (0, 0, 255)
    gray = to_gray(frame)
    assert gray.shape == (4, 6)
    tiles = cut(gray, tile_grid(6, 4, 2, stride=3))
    assert len(tiles) == 2 and tiles[0].max() == 0 and tiles[1].min() == gray[0, 3] > 0  # y: only 0 fits (4 px, stride 3)
