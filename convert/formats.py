"""The one table of export formats (Ultralytics style): it drives both export and the bench.

Each row: name, the ``edge-convert`` flag that makes it, the file name in OUTDIR, the precision
and backend written to its metadata, and the file's format.

Example:
    >>> from convert.formats import FORMATS, by_name
    >>> [f.file for f in FORMATS if f.backend == "onnxruntime"]
    ['model.onnx', 'model.fp16.onnx', 'model.int8.onnx', 'model.int8cpu.onnx']
"""

from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Optional

from edge.errors import EdgeError


class Format(NamedTuple):
    """One export format.

    Attributes:
        name: Short name (``fp32``, ``fp16``, ``int8``, ``int8-cpu``, ``engine-fp32`` ...).
        flag: The ``edge-convert`` flag that makes it (``None``: always made).
        file: File name in OUTDIR (engines: a pattern, see :func:`convert.tensorrt.engine_name`).
        precision: Metadata precision.
        backend: Metadata backend.
        fmt: Metadata format (``onnx`` / ``engine``).
        target: Where it is meant to run.
    """

    name: str
    flag: Optional[str]
    file: str
    precision: str
    backend: str
    fmt: str
    target: str


FORMATS: List[Format] = [
    Format("fp32", None, "model.onnx", "fp32", "onnxruntime", "onnx", "any (reference ONNX)"),
    Format("fp16", "--fp16", "model.fp16.onnx", "fp16", "onnxruntime", "onnx", "GPU / TensorRT 11 strongly typed"),
    Format("int8", "--int8", "model.int8.onnx", "int8", "onnxruntime", "onnx", "TensorRT (explicit Q/DQ)"),
    Format("int8-cpu", "--int8-cpu", "model.int8cpu.onnx", "int8-cpu", "onnxruntime", "onnx", "x86 CPU (onnxruntime)"),
    Format("engine-fp32", "--engine", "model.fp32.{tag}.engine", "fp32", "tensorrt", "engine", "TensorRT"),
    Format("engine-fp16", "--engine", "model.fp16.{tag}.engine", "fp16", "tensorrt", "engine", "TensorRT"),
    Format("engine-int8", "--engine", "model.int8.{tag}.engine", "int8", "tensorrt", "engine", "TensorRT"),
]

#: Calibration record written beside the INT8 model.
CALIB_RECORD = "model.int8.calib.json"


def by_name(name: str) -> Format:
    """The format called ``name``.

    Raises:
        EdgeError: unknown name.
    """
    for f in FORMATS:
        if f.name == name:
            return f
    raise EdgeError(f"unknown format {name!r} (one of {', '.join(f.name for f in FORMATS)})")


def onnx_formats() -> List[Format]:
    """The ONNX rows, in the order they are made."""
    return [f for f in FORMATS if f.fmt == "onnx"]
