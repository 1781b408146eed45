"""steel-edge: the runtime that goes on the Jetson.

Everything importable here works without TensorRT, pycuda or cuda-python; those are
imported lazily by the modules that need them (``edge.runtime.tensorrt``, ``edge.cuda``).
"""

__version__ = "0.1.0"
