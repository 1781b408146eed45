"""pycuda memory backend (the alternative: ``--cuda-backend pycuda``).

pycuda needs libcuda and the CUDA headers to build, so it is imported only when chosen.
"""

from __future__ import annotations

from typing import Optional

from edge.cuda.base import (CudaBackend, CudaGraph, DeviceBuffer, DeviceInfo, Event, PinnedBuffer, Stream,
                            host_array)
from edge.cuda.errors import pycuda_error
from edge.errors import EdgeError


def import_pycuda():
    """``pycuda.driver``, initialised (no context is made here: see :class:`PyCudaBackend`)."""
    try:
        import pycuda.driver as drv
    except ImportError:
        raise EdgeError("pycuda is not installed (pip install pycuda; it needs the CUDA toolkit)") from None
    try:
        drv.init()
    except Exception as e:
        raise pycuda_error("cuInit", e) from None
    return drv


def _call(name, fn, *args):
    import pycuda.driver as drv

    try:
        return fn(*args)
    except drv.Error as e:
        raise pycuda_error(name, e) from None


class PcPinned(PinnedBuffer):
    def __init__(self, drv, nbytes: int, mapped: bool = False):
        import numpy as np

        self.nbytes = int(nbytes)
        flags = drv.host_alloc_flags.DEVICEMAP if mapped else 0
        self._mem = _call("cuMemHostAlloc", drv.pagelocked_empty, (self.nbytes,), np.uint8, "C", flags)
        self.ptr = int(self._mem.ctypes.data)
        self.device_ptr = int(self._mem.base.get_device_pointer()) if mapped else None
        self.array = host_array(self.ptr, (self.nbytes,), np.uint8)

    def free(self) -> None:
        if self._mem is not None:
            self.array = None
            self._mem.base.free()
            self._mem = None
            self.ptr = 0


class PcDevice(DeviceBuffer):
    def __init__(self, drv, nbytes: int):
        self.nbytes = int(nbytes)
        self._mem = _call("cuMemAlloc", drv.mem_alloc, self.nbytes)
        self.ptr = int(self._mem)

    def free(self) -> None:
        if self._mem is not None:
            self._mem.free()
            self._mem = None
            self.ptr = 0


class PcStream(Stream):
    def __init__(self, drv):
        self._s = _call("cuStreamCreate", drv.Stream)
        self.handle = int(self._s.handle)

    def synchronize(self) -> None:
        _call("cuStreamSynchronize", self._s.synchronize)

    def wait_event(self, event: "PcEvent") -> None:
        _call("cuStreamWaitEvent", self._s.wait_for_event, event._e)

    def free(self) -> None:
        self._s = None


class PcEvent(Event):
    def __init__(self, drv, timing: bool = False):
        f = drv.event_flags
        self.flags = f.BLOCKING_SYNC | (0 if timing else f.DISABLE_TIMING)
        self._e = _call("cuEventCreate", drv.Event, self.flags)

    def record(self, stream: PcStream) -> None:
        _call("cuEventRecord", self._e.record, stream._s)

    def synchronize(self) -> None:
        _call("cuEventSynchronize", self._e.synchronize)

    def query(self) -> bool:
        return bool(_call("cuEventQuery", self._e.query))

    def elapsed_ms(self, end: "PcEvent") -> float:
        return float(_call("cuEventElapsedTime", end._e.time_since, self._e))

    def free(self) -> None:
        self._e = None


class PyCudaBackend(CudaBackend):
    """Memory backend on pycuda's driver API."""

    name = "pycuda"
    #: pycuda has no stream-capture API (cuStreamBeginCapture): graphs need the cuda-python backend.
    supports_graphs = False

    def __init__(self, device: int = 0):
        """Make a context on ``device`` with host mapping and blocking sync, and make it current.

        ``pycuda.autoinit`` is not used: its context is always on device 0 and has no
        ``MAP_HOST`` flag, so ``get_device_pointer`` of mapped (zero-copy) memory fails there.
        TensorRT (CUDA runtime) runs in whichever context is current: this one.
        """
        self.drv = drv = import_pycuda()
        n = _call("cuDeviceGetCount", drv.Device.count)
        if not 0 <= int(device) < n:
            raise EdgeError(f"no CUDA device {device} (found {n})")
        self.device_index = int(device)
        flags = drv.ctx_flags.MAP_HOST | drv.ctx_flags.SCHED_BLOCKING_SYNC
        self.context = _call("cuCtxCreate", drv.Device(self.device_index).make_context, flags)
        import atexit

        atexit.register(self.close)

    def close(self) -> None:
        """Pop and release the backend's context (idempotent)."""
        ctx, self.context = getattr(self, "context", None), None
        if ctx is not None:
            try:
                ctx.pop()
                ctx.detach()
            except Exception:  # already gone at interpreter exit
                pass

    def device_info(self, index: Optional[int] = None) -> DeviceInfo:
        drv = self.drv
        index = self.device_index if index is None else index
        if index >= drv.Device.count():
            raise EdgeError(f"no CUDA device {index} (found {drv.Device.count()})")
        d = drv.Device(index)
        a = drv.device_attribute
        major, minor = d.compute_capability()
        return DeviceInfo(index, d.name(), f"{major}.{minor}", bool(d.get_attribute(a.INTEGRATED)),
                          bool(d.get_attribute(a.CAN_MAP_HOST_MEMORY)), int(d.total_memory()))

    def pinned(self, nbytes: int, mapped: bool = False) -> PinnedBuffer:
        return PcPinned(self.drv, nbytes, mapped)

    def device(self, nbytes: int) -> DeviceBuffer:
        return PcDevice(self.drv, nbytes)

    def stream(self) -> Stream:
        return PcStream(self.drv)

    def event(self, timing: bool = False) -> Event:
        return PcEvent(self.drv, timing)

    def memcpy_htod_async(self, dst, src, nbytes, stream) -> None:
        # pycuda's memcpy_htod_async takes a buffer; wrap the pinned address without a copy.
        _call("cuMemcpyHtoDAsync", self.drv.memcpy_htod_async, dst, host_array(src, (nbytes,), "uint8"), stream._s)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream) -> None:
        _call("cuMemcpyDtoHAsync", self.drv.memcpy_dtoh_async, host_array(dst, (nbytes,), "uint8"), src, stream._s)

    def memcpy_dtod_async(self, dst, src, nbytes, stream) -> None:
        _call("cuMemcpyDtoDAsync", self.drv.memcpy_dtod_async, dst, src, nbytes, stream._s)

    def begin_capture(self, stream: PcStream) -> None:
        raise EdgeError("CUDA graphs need the cuda-python backend: pycuda has no stream-capture API "
                        "(use --cuda-backend cuda-python, or drop --cuda-graph)")

    def end_capture(self, stream: PcStream) -> CudaGraph:
        raise EdgeError("CUDA graphs need the cuda-python backend: pycuda has no stream-capture API")
