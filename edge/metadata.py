"""Artifact metadata: ``<artifact>.json`` beside every model, ONNX file and engine.

Schema (keys every stage relies on)::

    {
      "artifact": "model.int8.onnx",         # file name
      "format": "keras" | "onnx" | "engine",
      "backend": "keras" | "onnxruntime" | "tensorrt",
      "precision": "fp32" | "fp16" | "int8" | "int8-cpu",
      "classes": ["crazing", ...],
      "input": {"name": "input", "shape": [-1, H, W, C], "dtype": "float32", "layout": "NHWC"},
                                             # uint8-tile artifacts: "shape": [-1, th, tw, 1], "dtype": "uint8",
                                             # "form": "uint8_tiles", "tile": [th, tw] (see input_form)
      "output": {"name": "probs", "shape": [-1, K]},
      "preprocess": {... edge.preprocess.Preprocess.to_dict() ...},
      "source_model": {"path": "...", "sha256": "..."},
      "calibration": {...} | null,
      "drift_gate": {...} | null,
      "tools": {"tensorflow": "...", "onnx": "...", ...},
      "tensorrt": {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}   # engines only
    }

A Keras model folder made by ``edge-train`` also has ``preprocess.json`` and ``classes.json``;
:func:`read_meta` falls back to them for a ``.keras`` file without its own JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

from edge.errors import EdgeError
from edge.preprocess import Preprocess


def meta_path(artifact: str | os.PathLike) -> Path:
    """The metadata file of an artifact: ``model.int8.onnx`` → ``model.int8.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_meta(artifact: str | os.PathLike, meta: Dict[str, Any]) -> Path:
    """Write the metadata of ``artifact`` atomically."""
    from edge.fsutil import write_json

    meta = dict(meta)
    meta.setdefault("artifact", Path(artifact).name)
    return write_json(meta_path(artifact), meta)


def read_meta(artifact: str | os.PathLike) -> Dict[str, Any]:
    """Read the metadata of ``artifact``.

    Raises:
        EdgeError: the artifact or its metadata is missing or unreadable.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise EdgeError(f"{artifact} does not exist")
    mp = meta_path(artifact)
    if mp.is_file():
        try:
            return json.loads(mp.read_text())
        except json.JSONDecodeError as e:
            raise EdgeError(f"metadata {mp} is not valid JSON: {e}") from None
    # A Keras model folder from edge-train: preprocess.json + classes.json beside it.
    pp, cl = artifact.parent / "preprocess.json", artifact.parent / "classes.json"
    if pp.is_file() and cl.is_file():
        prep = Preprocess.load(pp)
        fmt = "keras" if artifact.suffix == ".keras" else artifact.suffix.lstrip(".")
        return {"artifact": artifact.name, "format": fmt, "backend": fmt, "precision": "fp32",
                "classes": json.loads(cl.read_text()), "preprocess": prep.to_dict(),
                "input": {"shape": [-1, *prep.input_shape], "dtype": "float32", "layout": "NHWC"}}
    raise EdgeError(f"{artifact} has no metadata ({mp.name}, or preprocess.json + classes.json beside it)")


def preprocess_of(meta: Dict[str, Any]) -> Preprocess:
    """The :class:`Preprocess` stored in an artifact's metadata."""
    if "preprocess" not in meta:
        raise EdgeError(f"metadata of {meta.get('artifact', '?')} has no preprocessing")
    return Preprocess.from_dict(meta["preprocess"])


def input_form(meta: Dict[str, Any]) -> tuple:
    """``("float", None)`` or ``("uint8_tiles", (tile_h, tile_w))``: what an artifact's input takes.

    ``"input": {"form": "uint8_tiles", "tile": [h, w], "dtype": "uint8", ...}`` marks an artifact
    whose graph does the preprocessing (``edge-convert --uint8-tiles``); anything else is float.
    """
    inp = meta.get("input") or {}
    form = inp.get("form", "float") if isinstance(inp, dict) else "float"
    if form == "float":
        return "float", None
    if form != "uint8_tiles":
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: unknown input form {form!r} (float or uint8_tiles)")
    tile = inp.get("tile")
    if not (isinstance(tile, (list, tuple)) and len(tile) == 2 and all(isinstance(v, int) and v > 0 for v in tile)):
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: uint8_tiles input needs \"tile\": [height, width], got {tile!r}")
    return "uint8_tiles", (int(tile[0]), int(tile[1]))


def classes_of(meta: Dict[str, Any]) -> List[str]:
    """The class names stored in an artifact's metadata."""
    if not meta.get("classes"):
        raise EdgeError(f"metadata of {meta.get('artifact', '?')} has no class names")
    return list(meta["classes"])


def tool_versions() -> Dict[str, str]:
    """Versions of the tools that made an artifact (those installed)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime",
                 "onnxruntime-gpu", "numpy", "opencv-python-headless", "tensorrt", "cuda-python"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    from edge import __version__

    out["steel-edge"] = __version__
    return out
