"""Format and precision names of an artifact for the bench tables.

The one table of formats (:data:`edge.formats.FORMATS`, Ultralytics style) names every format: a
file whose name matches a row (engine rows are patterns such as ``model.fp16.{tag}.engine``) is
shown as ``ONNX (int8-cpu)`` / ``TensorRT (engine-fp16)``. Files the table does not know are named
from their metadata (``format`` + ``backend``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from edge.formats import row_for_file as table_row

_LABELS = {"keras": "Keras", "onnx": "ONNX", "engine": "TensorRT", "onnxruntime": "ONNX", "tensorrt": "TensorRT"}


def describe(artifact: str | Path, meta: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """``{"format", "precision", "backend", "format_name"}`` of an artifact for the report rows.

    ``format`` is the label shown in the table, ``format_name`` the table's short name
    (``fp32``, ``int8-cpu``, ``engine-fp16`` ...) or None when the table does not know the file.
    The precision comes from the artifact's metadata (what the converter wrote), the table's
    precision only where the metadata has none.
    """
    from edge.runtime import backend_of

    backend = backend_of(artifact, meta)
    artifact = Path(artifact)
    row = table_row(artifact.name)
    label = _LABELS.get(str(meta.get("format")), None) or _LABELS.get(backend, backend)
    precision = meta.get("precision") or (row.precision if row is not None else "fp32")
    return {"format": f"{label} ({row.name})" if row is not None else label,
            "precision": str(precision), "backend": backend,
            "format_name": row.name if row is not None else None}


__all__ = ["describe", "table_row"]
