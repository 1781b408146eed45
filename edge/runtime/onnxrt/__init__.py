from edge.runtime.onnxrt.runner import OnnxRuntimeRunner

__all__ = ["OnnxRuntimeRunner"]
