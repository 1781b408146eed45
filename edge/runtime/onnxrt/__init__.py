from edge.runtime.onnxrt.runner import OnnxRuntimeRunner
from edge.runtime.onnxrt.session import session

__all__ = ["OnnxRuntimeRunner", "session"]
