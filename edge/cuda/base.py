"""The memory-backend interface: pinned/mapped host buffers, device buffers, streams, events.

Every backend (:mod:`edge.cuda.cuda_python`, :mod:`edge.cuda.pycuda_backend`) implements the
same small classes, in the spirit of TensorRT's ``samples/python/common_runtime.py``. Pointers
and stream handles are plain ``int`` so TensorRT's ``set_tensor_address`` /
``execute_async_v3`` take them whatever the backend.
"""

from __future__ import annotations

import abc
import ctypes
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class DeviceInfo:
    """What the runtime needs to know of the GPU."""

    index: int
    name: str
    compute_capability: str
    integrated: bool
    can_map_host_memory: bool
    total_memory: int = 0


def host_array(ptr: int, shape: Tuple[int, ...], dtype) -> np.ndarray:
    """A NumPy view of ``prod(shape)`` elements of host memory at ``ptr`` (no copy)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) if shape else 1
    buf = (ctypes.c_byte * (n * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)


class PinnedBuffer(abc.ABC):
    """Page-locked host memory with a NumPy view (``.array``).

    Attributes:
        nbytes: Size in bytes.
        ptr: Host address.
        device_ptr: Device address of the same memory when allocated ``mapped`` (zero copy on an
            integrated GPU), else None.
    """

    nbytes: int
    ptr: int
    device_ptr: Optional[int] = None
    array: np.ndarray

    @property
    def mapped(self) -> bool:
        return self.device_ptr is not None

    @abc.abstractmethod
    def free(self) -> None: ...

    def view(self, shape: Tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """The first ``prod(shape)`` elements as an array of ``shape`` (a view, no copy)."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"view of {n} bytes exceeds the {self.nbytes}-byte pinned buffer")
        return self.array[:n].view(dtype).reshape(shape)


class DeviceBuffer(abc.ABC):
    """Device memory: ``ptr`` (int) and ``nbytes``."""

    nbytes: int
    ptr: int

    @abc.abstractmethod
    def free(self) -> None: ...


class Stream(abc.ABC):
    """A CUDA stream; ``handle`` is the int TensorRT's ``execute_async_v3`` takes."""

    handle: int

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    @abc.abstractmethod
    def wait_event(self, event: "Event") -> None:
        """Make later work on this stream wait for ``event``."""

    @abc.abstractmethod
    def free(self) -> None: ...


class Event(abc.ABC):
    """A CUDA event: blocking-sync (``synchronize`` sleeps instead of spinning a core that decode
    and tiling need), timing disabled unless made with ``timing=True``."""

    @abc.abstractmethod
    def record(self, stream: Stream) -> None: ...

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    @abc.abstractmethod
    def query(self) -> bool:
        """True once the work before the record has completed."""

    @abc.abstractmethod
    def elapsed_ms(self, end: "Event") -> float:
        """Milliseconds from this event to ``end`` (both recorded, completed and made with ``timing=True``)."""

    @abc.abstractmethod
    def free(self) -> None: ...


class CudaGraph(abc.ABC):
    """An instantiated CUDA graph captured from a stream."""

    @abc.abstractmethod
    def launch(self, stream: Stream) -> None: ...

    @abc.abstractmethod
    def free(self) -> None: ...


class CudaBackend(abc.ABC):
    """Factory of the objects above for one library (cuda-python or pycuda)."""

    name = "base"
    #: Whether :meth:`begin_capture` / :meth:`end_capture` (CUDA graphs) work with this library.
    supports_graphs = True
    #: The device the backend made current (every allocation, stream and TensorRT context is on it).
    device_index = 0

    @abc.abstractmethod
    def device_info(self, index: int = 0) -> DeviceInfo: ...

    @abc.abstractmethod
    def pinned(self, nbytes: int, mapped: bool = False) -> PinnedBuffer:
        """Allocate page-locked host memory (``mapped``: also mapped into the device space)."""

    @abc.abstractmethod
    def device(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def stream(self) -> Stream: ...

    @abc.abstractmethod
    def event(self, timing: bool = False) -> Event:
        """A blocking-sync event; ``timing`` enables ``elapsed_ms`` (costs a little per record)."""

    @abc.abstractmethod
    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: Stream) -> None: ...

    @abc.abstractmethod
    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: Stream) -> None: ...

    @abc.abstractmethod
    def memcpy_dtod_async(self, dst: int, src: int, nbytes: int, stream: Stream) -> None: ...

    @abc.abstractmethod
    def begin_capture(self, stream: Stream) -> None:
        """Start capturing the work enqueued on ``stream`` into a CUDA graph."""

    @abc.abstractmethod
    def end_capture(self, stream: Stream) -> CudaGraph:
        """Stop capturing and instantiate the graph."""
