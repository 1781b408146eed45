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

from typing import Tuple

from edge.cuda.base import (CudaBackend, CudaGraph, DeviceBuffer, DeviceInfo, Event, PinnedBuffer, Stream,
                            host_array)
from edge.cuda.errors import CudaError, check_cuda, cuda_call
from edge.errors import EdgeError

BACKENDS = ("auto", "cuda-python", "pycuda")


def get_backend(name: str = "auto", device: int = 0) -> CudaBackend:
    """Make a memory backend with CUDA device ``device`` current.

    Args:
        name: ``auto`` (cuda-python, else pycuda), ``cuda-python`` or ``pycuda``.
        device: CUDA device index: every buffer, stream and TensorRT context is made on it.

    Raises:
        EdgeError: unknown name, the library is not installed, or (cuda-python) its CUDA runtime
            does not fit the driver; with ``auto``, one line with the reason of each backend.
    """
    if name not in BACKENDS:
        raise EdgeError(f"unknown CUDA backend {name!r} (one of {', '.join(BACKENDS)})")
    first = ""
    if name in ("auto", "cuda-python"):
        try:
            from edge.cuda.cuda_python import CudaPythonBackend

            return CudaPythonBackend(device)
        except EdgeError as e:
            if name == "cuda-python":
                raise
            first = str(e)
    try:
        from edge.cuda.pycuda_backend import PyCudaBackend

        return PyCudaBackend(device)
    except EdgeError as e:
        if name == "pycuda":
            raise
        raise EdgeError(f"no CUDA memory backend: cuda-python: {first}; pycuda: {e}") from None


def gpu_status() -> Tuple[bool, str]:
    """(whether a CUDA device is usable, the one-line reason when not).

    cuda-python first (driver and runtime versions checked: cuda-python 13 on a CUDA 12 driver is
    "not usable", not "no GPU"), then pycuda's device count; no context is made.
    """
    reasons = []
    try:
        from edge.cuda.cuda_python import check_versions, import_cudart

        rt = import_cudart()
        check_versions(rt)
        n = cuda_call(rt.cudaGetDeviceCount)
        if n > 0:
            return True, ""
        reasons.append("cuda-python: no CUDA device")
    except EdgeError as e:
        reasons.append(f"cuda-python: {e}")
    except Exception as e:  # noqa: BLE001  (a broken install must not crash the probe)
        reasons.append(f"cuda-python: {type(e).__name__}: {e}")
    try:
        from edge.cuda.pycuda_backend import import_pycuda

        drv = import_pycuda()
        if drv.Device.count() > 0:
            return True, ""
        reasons.append("pycuda: no CUDA device")
    except EdgeError as e:
        reasons.append(f"pycuda: {e}")
    except Exception as e:  # noqa: BLE001
        reasons.append(f"pycuda: {type(e).__name__}: {e}")
    return False, "; ".join(" ".join(r.split()) for r in reasons)


def gpu_available() -> bool:
    """True when cuda-python (driver and runtime versions fitting) or pycuda sees a CUDA device."""
    return gpu_status()[0]


__all__ = ["BACKENDS", "CudaBackend", "CudaError", "CudaGraph", "DeviceBuffer", "DeviceInfo", "Event",
           "PinnedBuffer", "Stream", "check_cuda", "cuda_call", "get_backend", "gpu_available", "gpu_status", "host_array"]
