"""The one helper that turns CUDA return codes into exceptions naming the call.

cuda-python returns ``(err, *values)`` tuples instead of raising; pycuda raises its own
``pycuda.driver.Error``. Both become :class:`CudaError` here, whose message names the
call, the error name and number, and CUDA's own description, e.g.::

    cudaMallocHost failed: cudaErrorInsufficientDriver (35): CUDA driver version is
    insufficient for CUDA runtime version
"""

from __future__ import annotations

from typing import Any, Callable

from edge.errors import BackendError


class CudaError(BackendError):
    """A CUDA call failed (a device failure: exit code 3).

    Attributes:
        call: Name of the CUDA function.
        code: Numeric error code (None when the backend gives none).
        error_name: Symbolic name, e.g. ``cudaErrorNoDevice``.
    """

    def __init__(self, call: str, code: int | None, error_name: str, description: str = ""):
        self.call, self.code, self.error_name, self.description = call, code, error_name, description
        num = f" ({code})" if code is not None else ""
        desc = f": {description}" if description else ""
        super().__init__(f"{call} failed: {error_name}{num}{desc}")


def _describe(err: Any) -> tuple:
    """(code, name, description) of a cuda-python error enum (runtime or driver API)."""
    code = int(err)
    name = getattr(err, "name", None) or str(err)
    desc = ""
    try:  # runtime API enum: cudaGetErrorString; driver API: cuGetErrorString
        from edge.cuda.cuda_python import import_cudart, import_driver

        mod_name = type(err).__name__
        if mod_name == "cudaError_t":
            cudart = import_cudart()
            e2, text = cudart.cudaGetErrorString(err)
        else:
            drv = import_driver()
            e2, text = drv.cuGetErrorString(err)
        if int(e2) == 0 and text:
            desc = text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # description is a courtesy; the name and code are what matter
        pass
    return code, name, desc


def check_cuda(call: str, result: Any) -> Any:
    """Check a cuda-python result tuple ``(err, *values)`` and return the value(s).

    Args:
        call: Name of the CUDA function (shown in the error).
        result: What cuda-python returned: ``(err,)``, ``(err, value)`` or ``(err, v1, v2, ...)``.

    Returns:
        None for ``(err,)``, the single value for ``(err, value)``, else the tuple of values.

    Raises:
        CudaError: ``err`` is not success (0).
    """
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        code, name, desc = _describe(err)
        raise CudaError(call, code, name, desc)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def cuda_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a cuda-python function and check its result (see :func:`check_cuda`).

    Example:
        >>> ptr = cuda_call(cudart.cudaMallocHost, 1024)
    """
    call = getattr(fn, "__name__", repr(fn))
    try:
        result = fn(*args)
    except RuntimeError as e:  # cuda-python 11.x raises when it cannot load libcuda (no driver)
        raise CudaError(call, None, "RuntimeError", " ".join(str(e).split())) from None
    return check_cuda(call, result)


def pycuda_error(call: str, exc: Exception) -> CudaError:
    """Wrap a ``pycuda.driver.Error`` as a :class:`CudaError` naming the call."""
    text = " ".join(str(exc).split())
    return CudaError(call, None, type(exc).__name__, text)
