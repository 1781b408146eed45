"""Keras → ONNX (FP32, FP16, INT8 Q/DQ, CPU int8) → TensorRT engines, with checks and drift gates.

The Python API (``edge-convert`` is a thin command over it)::

    from convert import ConvertConfig, convert_model
    result = convert_model("runs/compact-s42/model.keras",
                           ConvertConfig(out="runs/convert-compact", int8=True, calib_data="data/NEU-CLS"))

The names are imported on first use: ``import convert`` does not import TensorFlow or ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConvertConfig", "ConvertResult", "convert_model", "convert_onnx"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from convert import api

        return getattr(api, name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
