"""CUDA memory backends behind one interface (pinned/mapped host memory, device memory, streams,
events, async copies, CUDA graphs).

``get_backend("auto")`` tries cuda-python (``cuda.bindings``, or the older ``cuda.cudart``
layout) first and pycuda second. Nothing here is imported by ``import edge``; the libraries are
imported only when a backend is made.

Example:
    >>> be = get_backend("auto")
    >>> host, dev, s = be.pinned(4096), be.device(4096), be.stream()
    >>> be.memcpy_htod_async(dev.ptr, host.ptr, 4096, s); s.synchronize()
"""

from __future__ import annotations

from edge.cuda.base import (CudaBackend, CudaGraph, DeviceBuffer, DeviceInfo, Event, PinnedBuffer, Stream,
                            host_array)
from edge.cuda.errors import CudaError, check_cuda, cuda_call
from edge.errors import EdgeError

BACKENDS = ("auto", "cuda-python", "pycuda")


def get_backend(name: str = "auto") -> CudaBackend:
    """Make a memory backend.

    Args:
        name: ``auto`` (cuda-python, else pycuda), ``cuda-python`` or ``pycuda``.

    Raises:
        EdgeError: unknown name, or the library is not installed.
    """
    if name not in BACKENDS:
        raise EdgeError(f"unknown CUDA backend {name!r} (one of {', '.join(BACKENDS)})")
    if name in ("auto", "cuda-python"):
        try:
            from edge.cuda.cuda_python import CudaPythonBackend

            return CudaPythonBackend()
        except EdgeError:
            if name == "cuda-python":
                raise
    try:
        from edge.cuda.pycuda_backend import PyCudaBackend

        return PyCudaBackend()
    except EdgeError as e:
        if name == "pycuda":
            raise
        raise EdgeError(f"no CUDA memory backend: neither cuda-python nor pycuda is usable ({e})") from None


def gpu_available() -> bool:
    """True when cuda-python sees at least one CUDA device (False without driver or GPU)."""
    try:
        from edge.cuda.cuda_python import import_cudart

        rt = import_cudart()
        err, n = rt.cudaGetDeviceCount()
        return int(err) == 0 and n > 0
    except Exception:
        return False


__all__ = ["BACKENDS", "CudaBackend", "CudaError", "CudaGraph", "DeviceBuffer", "DeviceInfo", "Event",
           "PinnedBuffer", "Stream", "check_cuda", "cuda_call", "get_backend", "gpu_available", "host_array"]
