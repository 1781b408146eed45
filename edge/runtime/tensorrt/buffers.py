"""Buffer sizing and the double-buffer schedule of the TensorRT runner (pure logic, no CUDA).

Kept apart from the runner so the maths and the ordering can be tested on a machine without a
GPU; the runner only executes what these functions decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

#: Device allocations are rounded up to this many bytes (cudaMalloc's own alignment).
ALIGN = 256


@dataclass(frozen=True)
class BufferPlan:
    """Shape at the max batch and the bytes to allocate for one I/O tensor."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: str
    nbytes: int

    def batch_shape(self, n: int) -> Tuple[int, ...]:
        """The tensor's shape for a batch of ``n``."""
        return (n, *self.shape[1:])

    def batch_nbytes(self, n: int) -> int:
        return int(np.prod(self.batch_shape(n))) * np.dtype(self.dtype).itemsize


def aligned(nbytes: int, align: int = ALIGN) -> int:
    """``nbytes`` rounded up to a multiple of ``align`` (at least one block)."""
    return max(align, -(-int(nbytes) // align) * align)


def resolve_max_batch(tensors: Sequence, requested: Optional[int] = None) -> int:
    """The max batch the buffers are allocated for.

    Args:
        tensors: ``compat.IOTensor`` s (name, is_input, shape, dtype, profile).
        requested: The user's max batch (None: the engine's own limit).

    Returns:
        The engine's fixed batch, or min(requested, profile max) for a dynamic batch.

    Raises:
        EdgeError: no input, or ``requested`` exceeds what the engine accepts.
    """
    inputs = [t for t in tensors if t.is_input]
    if not inputs:
        raise EdgeError("the engine has no input tensor")
    limits = []
    for t in inputs:
        if t.shape[0] >= 0:
            limits.append(t.shape[0])
        elif t.profile is not None:
            limits.append(int(t.profile[2][0]))
        else:
            raise EdgeError(f"input {t.name!r} has a dynamic batch but no optimisation profile")
    engine_max = min(limits)
    if requested is None:
        return engine_max
    if requested < 1:
        raise EdgeError(f"max batch must be >= 1, got {requested}")
    if requested > engine_max:
        raise EdgeError(f"max batch {requested} exceeds the engine's limit of {engine_max}")
    return int(requested)


def static_batch(t) -> Optional[int]:
    """The one batch size an input accepts, or None for a dynamic batch.

    A fixed batch dimension, or a profile with min = max (DLA engines are built that way: the DLA
    has no dynamic shapes). Smaller batches are padded to it by the runner.
    """
    if t.shape[0] >= 0:
        return int(t.shape[0]) if t.shape[0] > 1 else None
    if t.profile is not None and int(t.profile[0][0]) == int(t.profile[2][0]) and int(t.profile[0][0]) > 1:
        return int(t.profile[0][0])
    return None


def plan_buffers(tensors: Sequence, max_batch: int) -> Dict[str, BufferPlan]:
    """Bytes of every I/O tensor at ``max_batch``: allocated once, reused for every call.

    Dynamic non-batch dimensions of inputs take the profile's max; outputs must have static
    non-batch dimensions (a classifier's (N, K)).
    """
    plans = {}
    for t in tensors:
        dims = list(t.shape)
        if not dims:
            raise EdgeError(f"tensor {t.name!r} is a scalar; the runner takes batched tensors")
        dims[0] = max_batch
        for i, d in enumerate(dims[1:], 1):
            if d < 0:
                if t.is_input and t.profile is not None:
                    dims[i] = int(t.profile[2][i])
                else:
                    raise EdgeError(f"tensor {t.name!r} has a dynamic dimension {i} the runner cannot size")
        nbytes = int(np.prod(dims)) * np.dtype(t.dtype).itemsize
        plans[t.name] = BufferPlan(t.name, t.is_input, tuple(dims), t.dtype, aligned(nbytes))
    return plans


def chunks(n: int, max_batch: int) -> List[Tuple[int, int]]:
    """(start, stop) of the chunks of at most ``max_batch`` covering ``n`` items."""
    if max_batch < 1:
        raise EdgeError(f"max batch must be >= 1, got {max_batch}")
    return [(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]
