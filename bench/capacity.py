"""Line capacity: will one camera's box keep up with the line?

A strip ``strip_width_mm`` wide moves at ``line_speed_m_per_s`` under a camera that sees
``mm_per_px`` millimetres per pixel. The daemon cuts the strip into ``tile`` px tiles every
``stride`` px (across and along), so it must classify::

    tiles_across   = ceil((width_px - tile) / stride) + 1     (the last tile is shifted to cover the edge)
    rows_per_s     = line_speed_mm_per_s / mm_per_px / stride
    required       = tiles_across * rows_per_s                 tiles per second

and compares that with a measured throughput (tiles/s, e.g. edge-bench's images/s at its best
batch): ``headroom = measured / required`` and the fastest line it keeps up with is
``line_speed * headroom``. :func:`line_capacity` is the one function ``edge-bench`` and
``edge-doctor`` share; :func:`sentence` is its one-line verdict.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from edge.errors import EdgeError, param


def required_tiles_per_s(line_speed_m_per_s: float, strip_width_mm: float, mm_per_px: float, tile: int,
                         stride: Optional[int] = None) -> Dict[str, float]:
    """Tiles per second one camera must classify to cover the whole strip.

    Returns:
        ``{"tiles_across", "rows_per_s", "required_tiles_per_s", "width_px", "speed_px_per_s"}``.

    Raises:
        EdgeError: a non-positive figure, a stride larger than the tile (gaps), or a strip
            narrower than one tile.
    """
    stride = tile if stride is None else stride
    for name, v in (("line_speed", line_speed_m_per_s), ("strip_width", strip_width_mm),
                    ("mm_per_px", mm_per_px), ("tile", tile), ("stride", stride)):
        if v is None or not v > 0 or not math.isfinite(v):
            raise EdgeError(f"{param(name)} must be a positive number, got {v!r}")
    if stride > tile:
        raise EdgeError(f"{param('stride')} {stride} is larger than {param('tile')} {tile}: the strip would have gaps "
                        "between tiles")
    width_px = strip_width_mm / mm_per_px
    if width_px < tile:
        raise EdgeError(f"the strip is {width_px:.0f} px wide at {mm_per_px:g} mm/px, narrower than one {tile} px tile")
    across = math.ceil((width_px - tile) / stride - 1e-9) + 1
    speed_px = line_speed_m_per_s * 1000.0 / mm_per_px
    rows = speed_px / stride
    return {"tiles_across": across, "rows_per_s": rows, "required_tiles_per_s": across * rows,
            "width_px": width_px, "speed_px_per_s": speed_px}


def line_capacity(measured_tiles_per_s: float, line_speed_m_per_s: float, strip_width_mm: float, mm_per_px: float,
                  tile: int, stride: Optional[int] = None, **extra: Any) -> Dict[str, Any]:
    """The line-capacity verdict of one measured throughput.

    Args:
        measured_tiles_per_s: Tiles (images) per second the box classifies (e.g. the best
            batch's throughput of ``edge-bench``).
        line_speed_m_per_s: Strip speed.
        strip_width_mm: Strip width.
        mm_per_px: Camera resolution on the strip.
        tile: Tile size in px (the daemon's ``--tile``).
        stride: Step between tiles in px (default: ``tile``).
        **extra: Added to the result as they are (e.g. ``artifact``, ``batch``).

    Returns:
        ``{"required_tiles_per_s", "measured_tiles_per_s", "headroom", "max_line_speed_m_per_s",
        "verdict", ...inputs and tiles_across}``; ``verdict`` is ``"keeps up"`` when the headroom
        is at least 1, else ``"falls behind"``.
    """
    if measured_tiles_per_s is None or not measured_tiles_per_s > 0:
        raise EdgeError(f"no measured throughput to compare with the line (got {measured_tiles_per_s!r})")
    req = required_tiles_per_s(line_speed_m_per_s, strip_width_mm, mm_per_px, tile, stride)
    headroom = measured_tiles_per_s / req["required_tiles_per_s"]
    return {
        "required_tiles_per_s": round(req["required_tiles_per_s"], 2),
        "measured_tiles_per_s": round(float(measured_tiles_per_s), 2),
        "headroom": round(headroom, 3),
        "max_line_speed_m_per_s": round(line_speed_m_per_s * headroom, 3),
        "verdict": "keeps up" if headroom >= 1.0 else "falls behind",
        "line_speed_m_per_s": line_speed_m_per_s, "strip_width_mm": strip_width_mm, "mm_per_px": mm_per_px,
        "tile": tile, "stride": stride or tile, "tiles_across": req["tiles_across"], **extra,
    }


def best_throughput(results) -> Optional[Dict[str, Any]]:
    """The fastest (artifact, batch, images/s) among edge-bench results that ran; None if none did."""
    best = None
    for r in results:
        if r.get("status") == "failed":
            continue
        for b, v in (r.get("throughput_ips") or {}).items():
            if v and (best is None or v > best["measured_tiles_per_s"]):
                best = {"artifact": r["artifact"], "batch": int(b), "measured_tiles_per_s": float(v)}
    return best


def _num(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def sentence(cap: Dict[str, Any]) -> str:
    """One line: "keeps up at 10 m/s with 2.3x headroom; up to 23 m/s (...)"."""
    who = f"`{cap['artifact'].rsplit('/', 1)[-1]}`" if cap.get("artifact") else "This box"
    at = f" at batch {cap['batch']}" if cap.get("batch") else ""
    detail = (f"{cap['strip_width_mm']:g} mm strip at {cap['mm_per_px']:g} mm/px, {cap['tile']} px tiles every "
              f"{cap['stride']} px: {cap['tiles_across']} across, {_num(cap['required_tiles_per_s'])} tiles/s needed, "
              f"{_num(cap['measured_tiles_per_s'])} measured{at}")
    if cap["verdict"] == "keeps up":
        return (f"{who} keeps up at {cap['line_speed_m_per_s']:g} m/s with {cap['headroom']:.1f}x headroom; "
                f"up to {_num(cap['max_line_speed_m_per_s'])} m/s ({detail}).")
    return (f"{who} falls behind at {cap['line_speed_m_per_s']:g} m/s: it classifies {cap['headroom']:.2f}x of the "
            f"tiles needed; it keeps up to {_num(cap['max_line_speed_m_per_s'])} m/s ({detail}).")
