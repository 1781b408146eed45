"""Pictures of what the daemon saw: annotated frames and the strip defect map.

* :func:`annotate_frame`: the tile grid drawn on a frame, each tile filled and outlined in its
  class colour (``uncertain`` tiles outlined in amber with a ``?``, ``unknown`` ones — the daemon's
  open-set ``unknown`` label, no result, or a label the model does not have — in grey), with the
  label and confidence, and a legend.
  Used by ``edge-capture --preview`` (:mod:`edge.capture.preview`) and by ``scripts/demo.py``.
* :func:`defect_map`: one marker per defect event over a whole recording, position along the
  strip (frame index x advance per frame + the tile's y) against position across it (the tile's x),
  coloured by class.

Only OpenCV and numpy are needed for frames (they run on the Jetson); the map needs matplotlib.

Example:
    from edge.capture.annotate import TileResult, annotate_frame
    img = annotate_frame(gray, [TileResult((0, 0, 200, 200), "scratches", 0.97)], classes)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

#: Colours (RGB) given to classes in order (matplotlib's tab10 without its grey), then repeated.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (188, 189, 34), (23, 190, 207)]
UNCERTAIN_RGB = (255, 193, 7)
UNKNOWN_RGB = (127, 127, 127)

Box = Tuple[int, int, int, int]


@dataclass
class TileResult:
    """One classified tile: its box, label (None: not classified), top probability and the uncertain flag."""

    box: Box
    label: Optional[str]
    confidence: Optional[float] = None
    uncertain: bool = False


def class_colors(classes: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    """RGB colour of each class (stable: by the class's position in the model's class list)."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}


def short_name(label: str) -> str:
    """NEU prefix (``Cr``, ``PS`` ...) for NEU classes, else the label itself."""
    from edge.data import NEU_PREFIXES

    inv = {v: k for k, v in NEU_PREFIXES.items()}
    return inv.get(label, label)


def _bgr(rgb: Tuple[int, int, int]) -> Tuple[int, int, int]:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def tile_style(t: TileResult, colors: Dict[str, Tuple[int, int, int]]) -> Tuple[str, Tuple[int, int, int], str]:
    """(kind, RGB colour, text) of a tile; kind is ``class``, ``uncertain`` or ``unknown``."""
    conf = "" if t.confidence is None else f" {t.confidence:.2f}"
    if t.label is None or t.label not in colors:  # no result, the daemon's open-set "unknown", or a foreign label
        return "unknown", UNKNOWN_RGB, "unknown" if t.label in (None, "unknown") else f"{t.label}?"
    if t.uncertain:
        return "uncertain", UNCERTAIN_RGB, f"? {short_name(t.label)}{conf}"
    return "class", colors[t.label], f"{short_name(t.label)}{conf}"


def annotate_frame(image: np.ndarray, tiles: Iterable[TileResult], classes: Sequence[str],
                   legend: bool = True, alpha: float = 0.22, title: Optional[str] = None) -> np.ndarray:
    """Draw the tile grid with each tile's class, confidence and state on a copy of ``image``.

    Args:
        image: The frame (gray or BGR, uint8).
        tiles: The tiles' results.
        classes: The model's classes (fixes the colours).
        legend: Add a legend band under the frame.
        alpha: Opacity of the tile fill.
        title: Text in the top-left corner (e.g. "frame 12").

    Returns:
        A BGR uint8 image (taller than ``image`` when ``legend``).
    """
    import cv2

    if image is None or image.ndim not in (2, 3) or image.size == 0:
        raise EdgeError("annotate_frame needs a gray or BGR image")
    img = image if image.dtype == np.uint8 else cv2.convertScaleAbs(image)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., :3].copy()
    colors = class_colors(classes)
    tiles = list(tiles)
    fill = bgr.copy()
    styles = [tile_style(t, colors) for t in tiles]
    for t, (kind, rgb, _) in zip(tiles, styles):
        x, y, w, h = t.box
        if kind != "unknown":
            cv2.rectangle(fill, (x, y), (x + w - 1, y + h - 1), _bgr(rgb), -1)
    cv2.addWeighted(fill, alpha, bgr, 1 - alpha, 0, dst=bgr)
    size = min((t.box[2] for t in tiles), default=200)
    scale = max(0.35, min(1.0, size / 260))
    thick = max(1, round(size / 100))
    for t, (kind, rgb, text) in zip(tiles, styles):
        x, y, w, h = t.box
        inset = thick  # neighbouring tiles keep separate outlines
        cv2.rectangle(bgr, (x + inset, y + inset), (x + w - 1 - inset, y + h - 1 - inset), _bgr(rgb), thick + 1)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        tx, ty = x + inset + 3, y + inset + 3
        cv2.rectangle(bgr, (tx - 2, ty - 2), (tx + tw + 4, ty + th + base + 2), _bgr(rgb), -1)
        ink = (0, 0, 0) if kind == "uncertain" or sum(rgb) > 500 else (255, 255, 255)
        cv2.putText(bgr, text, (tx + 1, ty + th), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thick, cv2.LINE_AA)
    if title:
        (tw, th), base = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        H = bgr.shape[0]
        cv2.rectangle(bgr, (0, H - th - base - 8), (tw + 10, H), (0, 0, 0), -1)
        cv2.putText(bgr, title, (5, H - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    if legend:
        bgr = np.vstack([bgr, _legend(bgr.shape[1], tuple(classes), scale, thick)])
    return bgr


@functools.lru_cache(maxsize=16)
def _legend(width: int, classes: Tuple[str, ...], scale: float, thick: int) -> np.ndarray:
    """The legend band under a frame (cached: the same for every frame of a run; do not modify it)."""
    import cv2

    colors = class_colors(classes)

    items = [(f"{short_name(c)} {c}" if short_name(c) != c else c, colors[c]) for c in classes]
    items += [("? uncertain (below threshold)", UNCERTAIN_RGB), ("unknown (none of the classes)", UNKNOWN_RGB)]
    s = scale * 0.85
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, s, thick)
    row_h = th + base + 10
    x, y, rows = 8, 0, [[]]
    for text, rgb in items:  # wrap into rows
        tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s, thick)[0][0] + row_h + 16
        if x + tw > width and rows[-1]:
            rows.append([])
            x = 8
        rows[-1].append((x, text, rgb))
        x += tw
    band = np.full((row_h * len(rows) + 6, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = 3 + r * row_h
        for x, text, rgb in row:
            cv2.rectangle(band, (x, y + 3), (x + row_h - 8, y + row_h - 5), _bgr(rgb), -1)
            cv2.putText(band, text, (x + row_h - 2, y + th + 5), cv2.FONT_HERSHEY_SIMPLEX, s, (30, 30, 30), thick,
                        cv2.LINE_AA)
    return band


def tiles_from_events(events: Iterable[dict]) -> Dict[int, List[TileResult]]:
    """Group daemon events (``--log-all`` JSONL) by frame into :class:`TileResult` lists."""
    out: Dict[int, List[TileResult]] = {}
    for e in events:
        x, y, w, h = (int(v) for v in e["tile"])
        out.setdefault(int(e["frame"]), []).append(
            TileResult((x, y, w, h), e.get("label"), e.get("confidence"), bool(e.get("uncertain", False))))
    return out


def defect_map(events: Iterable[dict], classes: Sequence[str], advance_px: float, out: str | Path,
               mm_per_px: Optional[float] = None, strip_width_px: Optional[float] = None,
               ok_classes: Sequence[str] = (), title: Optional[str] = None) -> Path:
    """Plot every defect event of a recording on the strip and write a PNG.

    Position along the strip = ``frame * advance_px + tile centre y``; across = tile centre x (in
    mm when ``mm_per_px`` is given). One marker per event, coloured by class; uncertain events
    are hollow; events of ``ok_classes`` (no defect) are left out.

    Args:
        events: Daemon events (``frame``, ``tile`` [x, y, w, h], ``label``, ``uncertain``).
        classes: The model's classes (colours, legend order).
        advance_px: How far the strip moves between two frames, in px.
        out: PNG path.
        mm_per_px: Scale of the axes (px when None).
        strip_width_px: Width of the strip (the across axis' extent); default from the tiles.
        ok_classes: Classes that are not defects.
        title: Plot title.

    Raises:
        EdgeError: no advance, or no event has a frame and tile.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.fsutil import atomic_path

    if not advance_px or advance_px <= 0:
        raise EdgeError(f"the strip's advance per frame must be positive, got {advance_px!r}")
    evs = [e for e in events if e.get("label") not in set(ok_classes)]
    if not evs:
        raise EdgeError("no defect event to draw on the strip map")
    k = mm_per_px or 1.0
    unit = "mm" if mm_per_px else "px"
    colors = {c: tuple(v / 255 for v in rgb) for c, rgb in class_colors(classes).items()}
    along = np.array([(e["frame"] * advance_px + e["tile"][1] + e["tile"][3] / 2) * k for e in evs])
    across = np.array([(e["tile"][0] + e["tile"][2] / 2) * k for e in evs])
    width = (strip_width_px * k) if strip_width_px else max((e["tile"][0] + e["tile"][2]) * k for e in evs)
    length = max(along.max(), (max(e["frame"] for e in evs) + 1) * advance_px * k)
    aspect = min(4.0, max(1.5, length / max(width, 1)))
    fig, ax = plt.subplots(figsize=(min(14, 3.2 * aspect + 2), 3.6))
    ax.axhspan(0, width, color="#eceff1", zorder=0)
    labels = [c for c in classes if c not in ok_classes] + sorted({e["label"] for e in evs} - set(classes))
    for c in labels:
        for unc in (False, True):
            sel = np.array([e["label"] == c and bool(e.get("uncertain")) == unc for e in evs])
            if not sel.any():
                continue
            col = colors.get(c, (0.5, 0.5, 0.5))
            n = int(sel.sum())
            ax.scatter(along[sel], across[sel], s=46, marker="o", zorder=3, linewidths=1.4,
                       facecolors="none" if unc else [col], edgecolors=[col],
                       label=f"{short_name(c)} {c} ({n})" + (" uncertain" if unc else ""))
    for f in range(0, int(np.ceil(length / (advance_px * k))) + 1):
        ax.axvline(f * advance_px * k, color="#b0bec5", lw=0.6, zorder=1)
    ax.set_xlim(0, length * 1.01)
    ax.set_ylim(width, 0)  # top of the frame at the top, as the camera sees it
    ax.set_xlabel(f"position along the strip, {unit} (frame index x {advance_px * k:g} {unit} per frame; "
                  f"grey lines: frame boundaries)")
    ax.set_ylabel(f"across, {unit}")
    ax.set_title(title or f"Strip defect map: {len(evs)} defect events")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an image as PNG atomically."""
    import cv2

    from edge.fsutil import atomic_path

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise EdgeError(f"cannot encode {path} as PNG")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())
    return Path(path)
