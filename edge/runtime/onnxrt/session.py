"""The one ONNX Runtime session factory (the runner, the converter's checks, the drift gate, fold checks).

The graph optimization level rule, written once: an artifact runs at the level its metadata names
(``"onnxruntime": {"graph_optimization_level": ...}``), else at ONNX Runtime's default (``all``).
The converter writes ``basic`` for the TensorRT Q/DQ INT8 model because at ``all`` ONNX Runtime fuses
Q/DQ into its own int8 CPU kernels, whose s8s8 path on AVX2 CPUs without VNNI saturates 16-bit
intermediate sums (measured: top-1 agreement collapses), while ``basic`` runs the exact
quantize/dequantize arithmetic that TensorRT implements with int32 accumulation.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from edge.errors import EdgeError

#: The levels accepted, in ONNX Runtime's order.
LEVELS = ("disable", "basic", "extended", "layout", "all")


def level_of(meta: Optional[Dict[str, Any]]) -> Optional[str]:
    """The graph optimization level an artifact's metadata asks for (None: ONNX Runtime's default)."""
    return ((meta or {}).get("onnxruntime") or {}).get("graph_optimization_level")


def check_level(level: Optional[str]) -> Optional[str]:
    """``level`` lower-cased, or None.

    Raises:
        EdgeError: not one of :data:`LEVELS`.
    """
    if level is None:
        return None
    if str(level).lower() not in LEVELS:
        raise EdgeError(f"unknown onnxruntime graph_optimization_level {level!r} (one of {', '.join(LEVELS)})")
    return str(level).lower()


def session(path: str | os.PathLike, level: Optional[str] = None, threads: int = 0,
            providers: Optional[Sequence[str]] = None, wrap_errors: bool = False,
            config: Optional[Dict[str, str]] = None):
    """A quiet ``onnxruntime.InferenceSession``.

    Args:
        path: ONNX file.
        level: Graph optimization level (:data:`LEVELS`; None: ONNX Runtime's default, ``all``).
        threads: Intra-op threads (0: ONNX Runtime's default, one per core).
        providers: Execution providers (default: CPU).
        wrap_errors: Turn ONNX Runtime's own load errors into a one-line EdgeError.
        config: Session config entries (``SessionOptions.add_session_config_entry``), e.g.
            ``{"session.force_spinning_stop": "1"}``.
    """
    import onnxruntime as ort

    level = check_level(level)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, str(value))
    if level:
        lv = ort.GraphOptimizationLevel
        so.graph_optimization_level = {
            "disable": lv.ORT_DISABLE_ALL, "basic": lv.ORT_ENABLE_BASIC, "extended": lv.ORT_ENABLE_EXTENDED,
            "layout": getattr(lv, "ORT_ENABLE_LAYOUT", lv.ORT_ENABLE_EXTENDED), "all": lv.ORT_ENABLE_ALL,
        }[level]
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # onnxruntime raises its own exception types
        if not wrap_errors:
            raise
        raise EdgeError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
