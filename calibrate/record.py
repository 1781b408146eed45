"""The calibration record ``model.int8.calib.json``.

It holds everything a rebuild needs without the images: the method, the image list hash, the
per-class counts, and the per-tensor ranges. ``edge-convert --from-onnx`` and the drift gate
re-quantize from it; nothing is recalibrated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from edge.errors import EdgeError

RECORD_VERSION = 1


def make_record(method: str, ranges: Dict[str, Tuple[float, float]], calib_summary: Dict[str, Any],
                stats: Optional[Dict[str, Any]] = None, model_sha256: str = "") -> Dict[str, Any]:
    """Assemble the record (a plain dict, JSON-ready)."""
    return {
        "version": RECORD_VERSION,
        "method": method,
        "symmetric": True,
        "model_sha256": model_sha256,
        "images": calib_summary,
        "collection": stats or {},
        "ranges": {k: [float(v[0]), float(v[1])] for k, v in sorted(ranges.items())},
    }


def write_record(path: str | os.PathLike, record: Dict[str, Any]) -> Path:
    """Write the record atomically."""
    from edge.fsutil import write_json

    return write_json(path, record)


def read_record(path: str | os.PathLike) -> Dict[str, Any]:
    """Read and check a record.

    Raises:
        EdgeError: missing file, bad JSON, or fields missing.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"calibration record {path} does not exist")
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EdgeError(f"calibration record {path} is not valid JSON: {e}") from None
    missing = [k for k in ("method", "ranges", "images") if k not in rec]
    if missing or not isinstance(rec.get("ranges"), dict) or not rec["ranges"]:
        raise EdgeError(f"calibration record {path} lacks {', '.join(missing) or 'ranges'}")
    return rec
