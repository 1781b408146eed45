"""cuda-python memory backend (the default).

Imports ``cuda.bindings.runtime`` (cuda-python >= 12.6, the only layout of 13.x) and falls back
to the older ``from cuda import cudart`` layout (cuda-python 11.x/12.x), lazily.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from edge.cuda.base import (CudaBackend, CudaGraph, DeviceBuffer, DeviceInfo, Event, PinnedBuffer, Stream,
                            host_array)
from edge.cuda.errors import check_cuda, cuda_call
from edge.errors import EdgeError


def import_cudart():
    """The cuda-python runtime API module, whichever package layout is installed."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 / 13.x
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 11.x / early 12.x
        except ImportError:
            raise EdgeError("cuda-python is not installed (pip install cuda-python)") from None
    return cudart


def import_driver():
    """The cuda-python driver API module, whichever package layout is installed."""
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver
        except ImportError:
            raise EdgeError("cuda-python is not installed (pip install cuda-python)") from None
    return driver


def _cuda_version(v: int) -> str:
    """CUDA's integer version (12020) as text (12.2); 0 is "none"."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"


def version_problem(driver: int, runtime: int) -> Optional[str]:
    """Why cuda-python's runtime cannot run on this driver (None: it can).

    CUDA's minor-version compatibility lets a runtime run on any driver of the same major, so the
    major decides: cuda-python 13 (CUDA 13 runtime) needs a CUDA 13 driver (>= 580) and answers
    every call with cudaErrorInsufficientDriver on JetPack 5 (CUDA 11.4) or 6 (12.2 / 12.6).

    Args:
        driver: ``cudaDriverGetVersion`` (0: no driver).
        runtime: ``cudaRuntimeGetVersion`` of the installed cuda-python.
    """
    if driver <= 0:
        return (f"no NVIDIA driver (cudaDriverGetVersion = 0; cuda-python's CUDA runtime is "
                f"{_cuda_version(runtime)})")
    if driver // 1000 < runtime // 1000:
        return (f"cuda-python's CUDA runtime {_cuda_version(runtime)} needs a CUDA {runtime // 1000}.x driver, "
                f"this driver supports CUDA {_cuda_version(driver)}: install cuda-python "
                f"{driver // 1000}.x (pip install -c jetson/constraints-*.txt)")
    return None


def check_versions(rt) -> Tuple[int, int]:
    """(driver, runtime) versions, or a one-line EdgeError naming both when they do not fit.

    cuda-python 11.x raises RuntimeError where it cannot load libcuda; 12.x/13.x report driver 0.
    """
    try:
        runtime = int(cuda_call(rt.cudaRuntimeGetVersion))
    except EdgeError as e:
        raise EdgeError(f"cuda-python cannot report its CUDA runtime version ({e})") from None
    try:
        driver = int(cuda_call(rt.cudaDriverGetVersion))
    except EdgeError:
        driver = 0
    why = version_problem(driver, runtime)
    if why:
        raise EdgeError(f"cuda-python unusable: {why}")
    return driver, runtime


class CpPinned(PinnedBuffer):
    def __init__(self, cudart, nbytes: int, mapped: bool = False):
        self._rt = cudart
        self.nbytes = int(nbytes)
        self.device_ptr = None
        if mapped:
            self.ptr = int(cuda_call(cudart.cudaHostAlloc, self.nbytes, cudart.cudaHostAllocMapped))
            self.device_ptr = int(cuda_call(cudart.cudaHostGetDevicePointer, self.ptr, 0))
        else:
            self.ptr = int(cuda_call(cudart.cudaMallocHost, self.nbytes))
        self.array = host_array(self.ptr, (self.nbytes,), np.uint8)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            cuda_call(self._rt.cudaFreeHost, self.ptr)
            self.ptr = 0


class CpDevice(DeviceBuffer):
    def __init__(self, cudart, nbytes: int):
        self._rt = cudart
        self.nbytes = int(nbytes)
        self.ptr = int(cuda_call(cudart.cudaMalloc, self.nbytes))

    def free(self) -> None:
        if self.ptr:
            cuda_call(self._rt.cudaFree, self.ptr)
            self.ptr = 0


class CpStream(Stream):
    def __init__(self, cudart):
        self._rt = cudart
        self._s = cuda_call(cudart.cudaStreamCreateWithFlags, cudart.cudaStreamNonBlocking)
        self.handle = int(self._s)

    def synchronize(self) -> None:
        cuda_call(self._rt.cudaStreamSynchronize, self._s)

    def wait_event(self, event: "CpEvent") -> None:
        cuda_call(self._rt.cudaStreamWaitEvent, self._s, event._e, 0)

    def free(self) -> None:
        if self._s is not None:
            cuda_call(self._rt.cudaStreamDestroy, self._s)
            self._s = None


class CpEvent(Event):
    def __init__(self, cudart, timing: bool = False):
        self._rt = cudart
        flags = int(cudart.cudaEventBlockingSync) | (0 if timing else int(cudart.cudaEventDisableTiming))
        self.flags = flags
        self._e = cuda_call(cudart.cudaEventCreateWithFlags, flags)

    def record(self, stream: CpStream) -> None:
        cuda_call(self._rt.cudaEventRecord, self._e, stream._s)

    def synchronize(self) -> None:
        cuda_call(self._rt.cudaEventSynchronize, self._e)

    def query(self) -> bool:
        err = self._rt.cudaEventQuery(self._e)
        err = err[0] if isinstance(err, tuple) else err
        if err == self._rt.cudaError_t.cudaErrorNotReady:
            return False
        check_cuda("cudaEventQuery", (err,))
        return True

    def elapsed_ms(self, end: "CpEvent") -> float:
        return float(cuda_call(self._rt.cudaEventElapsedTime, self._e, end._e))

    def free(self) -> None:
        if self._e is not None:
            cuda_call(self._rt.cudaEventDestroy, self._e)
            self._e = None


class CpGraph(CudaGraph):
    def __init__(self, cudart, graph):
        self._rt = cudart
        self._graph = graph
        self._exec = cuda_call(cudart.cudaGraphInstantiate, graph, 0)

    def launch(self, stream: CpStream) -> None:
        cuda_call(self._rt.cudaGraphLaunch, self._exec, stream._s)

    def free(self) -> None:
        if self._exec is not None:
            cuda_call(self._rt.cudaGraphExecDestroy, self._exec)
            cuda_call(self._rt.cudaGraphDestroy, self._graph)
            self._exec = None


class CudaPythonBackend(CudaBackend):
    """Memory backend on cuda-python's runtime API."""

    name = "cuda-python"

    def __init__(self, device: int = 0, rt=None):
        """Import cuda-python, check driver against runtime, and make ``device`` current.

        Raises:
            EdgeError: cuda-python missing, its CUDA runtime newer than the driver (one line
                naming both), no such device.
        """
        self.rt = rt if rt is not None else import_cudart()
        self.driver_version, self.runtime_version = check_versions(self.rt)
        count = cuda_call(self.rt.cudaGetDeviceCount)
        if not 0 <= int(device) < count:
            raise EdgeError(f"no CUDA device {device} (found {count})")
        # Blocking sync: a host thread waiting for the GPU sleeps instead of spinning a CPU core
        # (decode and tiling need the cores on a Jetson); map host memory for zero copy. Refused
        # (cudaErrorSetOnActiveProcess) once the device's context exists: then it stays as it is.
        cuda_call(self.rt.cudaSetDevice, int(device))
        flags = int(self.rt.cudaDeviceScheduleBlockingSync) | int(self.rt.cudaDeviceMapHost)
        err = self.rt.cudaSetDeviceFlags(flags)
        err = err[0] if isinstance(err, tuple) else err
        if int(err) not in (0, int(self.rt.cudaError_t.cudaErrorSetOnActiveProcess)):
            check_cuda("cudaSetDeviceFlags", (err,))
        self.device_index = int(device)

    def device_info(self, index: Optional[int] = None) -> DeviceInfo:
        rt = self.rt
        index = self.device_index if index is None else index
        count = cuda_call(rt.cudaGetDeviceCount)
        if index >= count:
            raise EdgeError(f"no CUDA device {index} (found {count})")
        p = cuda_call(rt.cudaGetDeviceProperties, index)
        name = p.name.split(b"\0", 1)[0].decode() if isinstance(p.name, bytes) else str(p.name)
        return DeviceInfo(index, name, f"{p.major}.{p.minor}", bool(p.integrated), bool(p.canMapHostMemory),
                          int(p.totalGlobalMem))

    def pinned(self, nbytes: int, mapped: bool = False) -> PinnedBuffer:
        return CpPinned(self.rt, nbytes, mapped)

    def device(self, nbytes: int) -> DeviceBuffer:
        return CpDevice(self.rt, nbytes)

    def stream(self) -> Stream:
        return CpStream(self.rt)

    def event(self, timing: bool = False) -> Event:
        return CpEvent(self.rt, timing)

    def _copy(self, dst: int, src: int, nbytes: int, kind, stream: CpStream) -> None:
        cuda_call(self.rt.cudaMemcpyAsync, dst, src, nbytes, kind, stream._s)

    def memcpy_htod_async(self, dst, src, nbytes, stream) -> None:
        self._copy(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream) -> None:
        self._copy(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def memcpy_dtod_async(self, dst, src, nbytes, stream) -> None:
        self._copy(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream)

    def begin_capture(self, stream: CpStream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(self.rt.cudaStreamBeginCapture, stream._s, mode)

    def end_capture(self, stream: CpStream) -> CudaGraph:
        graph = cuda_call(self.rt.cudaStreamEndCapture, stream._s)
        return CpGraph(self.rt, graph)
