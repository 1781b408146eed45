"""The one table of artifact formats: one row per kind of file the converter writes.

Each row says the file name, the precision and backend written to its metadata, the
:class:`convert.ConvertConfig` parameter that asks for it, how it is exported and the tolerance it
is held to against the FP32 Keras model. The table drives export (:func:`convert.convert_model`
writes the rows it was asked for, under the row's file name), the metadata (format, backend,
precision), the TensorRT engine names, the bench rows (:func:`bench.formats.describe`) and the
regression tolerances (``tests/regression``). It lives in ``edge/`` (the layer every stage uses) so
that the bench and the device runtime read it without the converter installed.

To add a format: add a row here, make it in :func:`convert.api.convert_model` (the ``export`` column
names the function), and the bench, the file names and the regression test follow.

Example:
    >>> from edge.formats import FORMATS, by_name
    >>> [f.file for f in FORMATS if f.fmt == "onnx"]
    ['model.onnx', 'model.fp16.onnx', 'model.int8.onnx', 'model.int8cpu.onnx']
    >>> by_name("engine-int8").engine_alias
    'model.int8.engine'
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, List, Optional

from edge.errors import EdgeError

#: Tolerances against the FP32 Keras model, per precision: the FP32 ONNX check of the converter
#: (``max_abs``), the FP16 default budget (``fp16_tolerance``) and the regression suite.
TOLERANCES: Dict[str, Dict[str, float]] = {
    "fp32": {"max_abs": 1e-4, "top1_agreement": 1.0},
    "fp16": {"max_abs": 5e-3},
    "int8": {"top1_agreement": 0.98, "drop_pp": 1.0},
}


@dataclass(frozen=True)
class Format:
    """One artifact kind.

    Attributes:
        name: Short name (``fp32``, ``fp16``, ``int8``, ``int8-cpu``, ``engine-fp32`` ...).
        option: The :class:`convert.ConvertConfig` parameter that makes it (None: always made;
            engines: ``engine``).
        flag: The ``edge-convert`` flag of that parameter.
        file: File name in the output folder (engines: a pattern with ``{tag}``, see
            :func:`convert.tensorrt.engine_name`).
        precision: Metadata precision.
        backend: Metadata backend.
        fmt: Metadata format (``onnx`` / ``engine``).
        target: Where it is meant to run.
        export: How it is made (the function of ``convert/``).
        tolerance: Key of :data:`TOLERANCES` it is held to.
        ort_level: ONNX Runtime graph optimization level it must be run at (None: the default, all),
            see :func:`edge.runtime.onnxrt.session`.
    """

    name: str
    option: Optional[str]
    flag: Optional[str]
    file: str
    precision: str
    backend: str
    fmt: str
    target: str
    export: str
    tolerance: str
    ort_level: Optional[str] = None

    @property
    def tolerances(self) -> Dict[str, float]:
        """The tolerance figures of this row (:data:`TOLERANCES`)."""
        return dict(TOLERANCES[self.tolerance])

    @property
    def engine_alias(self) -> str:
        """Engines: the stable link ``model.<precision>.engine`` to the latest versioned build."""
        if self.fmt != "engine":
            raise EdgeError(f"{self.name} is not an engine format")
        return f"model.{self.precision}.engine"

    def matches(self, file_name: str) -> bool:
        """Whether ``file_name`` is this row's file (engines: the versioned file name pattern)."""
        return file_name == self.file or fnmatch.fnmatchcase(file_name, self.file.replace("{tag}", "*"))


FORMATS: List[Format] = [
    Format("fp32", None, None, "model.onnx", "fp32", "onnxruntime", "onnx", "any (reference ONNX)",
           "convert.export.keras_to_onnx (tf2onnx)", "fp32"),
    Format("fp16", "fp16", "--fp16", "model.fp16.onnx", "fp16", "onnxruntime", "onnx",
           "GPU / TensorRT 11 strongly typed", "convert.quantize.fp16_with_tolerance (onnxconverter-common)", "fp16"),
    Format("int8", "int8", "--int8", "model.int8.onnx", "int8", "onnxruntime", "onnx", "TensorRT (explicit Q/DQ)",
           "convert.quantize.to_qdq_int8 + convert.gate.run_gate", "int8", ort_level="basic"),
    Format("int8-cpu", "int8_cpu", "--int8-cpu", "model.int8cpu.onnx", "int8-cpu", "onnxruntime", "onnx",
           "x86 CPU (onnxruntime)", "convert.quantize.to_cpu_int8 + convert.gate.run_gate", "int8"),
    Format("engine-fp32", "engine", "--engine", "model.fp32.{tag}.engine", "fp32", "tensorrt", "engine", "TensorRT",
           "convert.tensorrt.build_engine", "fp32"),
    Format("engine-fp16", "engine", "--engine", "model.fp16.{tag}.engine", "fp16", "tensorrt", "engine", "TensorRT",
           "convert.tensorrt.build_engine", "fp16"),
    Format("engine-int8", "engine", "--engine", "model.int8.{tag}.engine", "int8", "tensorrt", "engine", "TensorRT",
           "convert.tensorrt.build_engine", "int8"),
]

#: Calibration record written beside the INT8 models.
CALIB_RECORD = "model.int8.calib.json"

#: Why the Q/DQ INT8 model runs at ONNX Runtime's ``basic`` level (written into its metadata).
BASIC_LEVEL_WHY = "at level all onnxruntime's AVX2 s8s8 kernels saturate; basic runs the exact Q/DQ arithmetic"


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


def onnx_for(precision: str) -> Format:
    """The ONNX row of a precision (``fp32``, ``fp16``, ``int8``, ``int8-cpu``)."""
    for f in onnx_formats():
        if f.precision == precision:
            return f
    raise EdgeError(f"no ONNX format of precision {precision!r}")


def engine_for(precision: str) -> Format:
    """The engine row of a precision (``fp32``, ``fp16``, ``int8``)."""
    for f in FORMATS:
        if f.fmt == "engine" and f.precision == precision:
            return f
    raise EdgeError(f"no TensorRT engine of precision {precision!r} (fp32, fp16 or int8)")


def row_for_file(file_name: str) -> Optional[Format]:
    """The row whose file (engines: the versioned name pattern) is ``file_name``, else None."""
    for row in FORMATS:
        if row.matches(file_name):
            return row
    return None
