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
