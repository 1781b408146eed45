"""Cutting frames into model-size tiles: tile size, stride and an optional region of interest."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

Box = Tuple[int, int, int, int]  # x, y, w, h


def parse_roi(text: Optional[str | Sequence[int]]) -> Optional[Box]:
    """``"x,y,w,h"`` (or a 4-sequence) → a box; None/empty → None."""
    if text is None or text == "" or text == []:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        x, y, w, h = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise EdgeError(f"ROI must be x,y,w,h (four integers), got {text!r}") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise EdgeError(f"ROI {text!r} needs x, y >= 0 and w, h > 0")
    return (x, y, w, h)


def _positions(start: int, length: int, tile: int, stride: int) -> List[int]:
    return list(range(start, start + length - tile + 1, stride))


def tile_grid(width: int, height: int, tile: int | Tuple[int, int], stride: int | Tuple[int, int] | None = None,
              roi: Optional[Box] = None) -> List[Box]:
    """The tiles of a ``width`` x ``height`` frame, row by row.

    Tiles lie wholly inside the ROI (clipped to the frame); a partial tile at the right/bottom
    edge is not made (the image there is covered when ``stride`` < ``tile``).

    Args:
        width: Frame width.
        height: Frame height.
        tile: Tile size (square) or (w, h).
        stride: Step between tiles (default: the tile size: no overlap, no gap), or (sx, sy).
        roi: (x, y, w, h) region to tile; default the whole frame.

    Raises:
        EdgeError: bad sizes, or the ROI is smaller than one tile.
    """
    tw, th = (tile, tile) if isinstance(tile, int) else tile
    stride = (tw, th) if stride is None else stride
    sx, sy = (stride, stride) if isinstance(stride, int) else stride
    if min(tw, th, sx, sy) <= 0:
        raise EdgeError(f"tile and stride must be positive (tile {tw}x{th}, stride {sx}x{sy})")
    x0, y0, rw, rh = roi if roi is not None else (0, 0, width, height)
    if x0 >= width or y0 >= height:
        raise EdgeError(f"ROI {roi} starts outside the {width}x{height} frame")
    rw, rh = min(rw, width - x0), min(rh, height - y0)
    if rw < tw or rh < th:
        raise EdgeError(f"region {rw}x{rh} at ({x0},{y0}) is smaller than one {tw}x{th} tile")
    return [(x, y, tw, th) for y in _positions(y0, rh, th, sy) for x in _positions(x0, rw, tw, sx)]


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A uint8 grayscale view/copy of a frame (BGR, BGRA, gray, or 16-bit scaled down)."""
    import cv2

    if frame.dtype != np.uint8:
        frame = cv2.convertScaleAbs(frame, alpha=255.0 / max(1, int(frame.max())))
    if frame.ndim == 3:
        if frame.shape[2] == 1:
            return frame[..., 0]
        code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(frame, code)
    return frame


def cut(gray: np.ndarray, boxes: Sequence[Box]) -> List[np.ndarray]:
    """Views of ``gray`` for each box (no copy)."""
    return [gray[y:y + h, x:x + w] for x, y, w, h in boxes]


class Grid:
    """The tiles of one frame size: boxes row by row, and the regular layout they come from.

    :meth:`view` gives all tiles of a frame as one strided numpy view ``(rows, cols, th, tw)``
    (no copy); :meth:`pack` copies them with one numpy call into a uint8 batch ``(N, th, tw, 1)``.

    Args:
        boxes: The boxes of :func:`tile_grid` (row-major, equal size, equal steps).
    """

    def __init__(self, boxes: Sequence[Box]):
        self.boxes = list(boxes)
        if not self.boxes:
            raise EdgeError("a tile grid needs at least one tile")
        xs = sorted({b[0] for b in self.boxes})
        ys = sorted({b[1] for b in self.boxes})
        self.tile_w, self.tile_h = self.boxes[0][2], self.boxes[0][3]
        self.cols, self.rows = len(xs), len(ys)
        self.x0, self.y0 = xs[0], ys[0]
        self.sx = xs[1] - xs[0] if len(xs) > 1 else self.tile_w
        self.sy = ys[1] - ys[0] if len(ys) > 1 else self.tile_h
        expect = [(self.x0 + c * self.sx, self.y0 + r * self.sy, self.tile_w, self.tile_h)
                  for r in range(self.rows) for c in range(self.cols)]
        if expect != [tuple(b) for b in self.boxes]:
            raise EdgeError("tiles are not a regular row-major grid")

    def __len__(self) -> int:
        return len(self.boxes)

    def view(self, gray: np.ndarray) -> np.ndarray:
        """All tiles of ``gray`` as one read-only view (rows, cols, tile_h, tile_w)."""
        if gray.ndim != 2:
            raise EdgeError(f"tiling needs a 2-D gray frame, got shape {gray.shape}")
        need_w = self.x0 + (self.cols - 1) * self.sx + self.tile_w
        need_h = self.y0 + (self.rows - 1) * self.sy + self.tile_h
        if gray.shape[1] < need_w or gray.shape[0] < need_h:
            raise EdgeError(f"frame {gray.shape[1]}x{gray.shape[0]} is smaller than its tile grid ({need_w}x{need_h})")
        rs, cs = gray.strides
        base = gray[self.y0:, self.x0:]
        return np.lib.stride_tricks.as_strided(base, (self.rows, self.cols, self.tile_h, self.tile_w),
                                               (self.sy * rs, self.sx * cs, rs, cs), writeable=False)

    def tiles(self, gray: np.ndarray) -> List[np.ndarray]:
        """The tiles as a list of views, row by row."""
        v = self.view(gray)
        return [v[r, c] for r in range(self.rows) for c in range(self.cols)]

    def pack(self, gray: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """All tiles of a uint8 frame in one uint8 batch (N, tile_h, tile_w, 1): one copy."""
        if out is None:
            out = np.empty((len(self), self.tile_h, self.tile_w, 1), np.uint8)
        np.copyto(out.reshape(self.rows, self.cols, self.tile_h, self.tile_w), self.view(gray))
        return out
