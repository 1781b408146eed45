"""TensorRT runner: engines deserialized with a version/GPU check, pinned host memory, async copies.

``tensorrt`` and the CUDA libraries are imported only when a runner is activated, so
``import edge.runtime.tensorrt`` works on a machine without them.
"""

from edge.runtime.tensorrt.runner import TensorRTRunner

__all__ = ["TensorRTRunner"]
