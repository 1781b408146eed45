"""The one place where TensorRT versions fork (8.5, 8.6, 10.x, 11.x).

Every version-dependent TensorRT call of the project goes through a function here, each branch with
a comment saying why. ``tensorrt`` is never imported at module level: ``trt`` is passed in, so the
branching can be tested with a stand-in module (which proves only our branching, not TensorRT).

Sections: version parsing (shared), builder (used by ``convert/tensorrt.py``), runtime (used by
``edge/runtime/tensorrt/runner.py``).
"""

from __future__ import annotations

from typing import NamedTuple


class TRTVersion(NamedTuple):
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "TRTVersion":
        parts = [int(p) for p in str(text).split(".")[:3] if p.isdigit()]
        while len(parts) < 3:
            parts.append(0)
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def version_of(trt) -> TRTVersion:
    """The version of an imported ``tensorrt`` module."""
    return TRTVersion.parse(trt.__version__)


# ============================================================================ builder
# (owned by the converter: network flags, precision, memory pool, profiles, timing cache, DLA)


# ============================================================================ runtime
# (owned by the runtime: deserialisation, I/O tensor enumeration, shapes, addresses, execution)

# The TensorRT names each runtime branch calls, as "Class.attribute" (or a module-level name),
# so a test with a real tensorrt wheel can check them: `missing_runtime_api(trt)` lists the absent.
# 8.5 is the first release with the name-based I/O API (num_io_tensors, get_tensor_name/mode/shape/
# dtype, set_input_shape, set_tensor_address, execute_async_v3); its Python profile query is still
# the binding one (get_profile_shape(profile, binding)), so that is the one binding call kept.
_RUNTIME_COMMON = [
    "Logger", "Runtime", "Runtime.deserialize_cuda_engine", "TensorIOMode", "nptype", "volume",
    "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_dtype", "ICudaEngine.create_execution_context",
    "ICudaEngine.num_optimization_profiles",
    "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
    "IExecutionContext.get_tensor_shape", "IExecutionContext.execute_async_v3",
]
RUNTIME_API = {
    "8.5": _RUNTIME_COMMON + ["ICudaEngine.get_profile_shape"],
    "8.6": _RUNTIME_COMMON + ["ICudaEngine.get_tensor_profile_shape"],
    "10": _RUNTIME_COMMON + ["ICudaEngine.get_tensor_profile_shape"],
    "11": _RUNTIME_COMMON + ["ICudaEngine.get_tensor_profile_shape"],
}


def runtime_branch(version) -> str:
    """The key of :data:`RUNTIME_API` for a TensorRT version.

    Raises:
        EdgeError: TensorRT older than 8.5 (no name-based I/O API, not on any supported JetPack).
    """
    from edge.errors import EdgeError

    v = version if isinstance(version, TRTVersion) else TRTVersion.parse(str(version))
    if (v.major, v.minor) < (8, 5):
        raise EdgeError(f"TensorRT {v} is too old: the runtime needs 8.5 or newer (JetPack 5.1+)")
    if v.major == 8:
        return "8.5" if v.minor == 5 else "8.6"
    if v.major == 10:
        return "10"
    return "11"  # 11.x and later: the 10.x runtime calls (weak typing removal touched only the builder)


def missing_runtime_api(trt, branch: str | None = None) -> list:
    """Names of :data:`RUNTIME_API` [branch] that the ``trt`` module lacks (empty: all present)."""
    branch = branch or runtime_branch(version_of(trt))
    missing = []
    for dotted in RUNTIME_API[branch]:
        obj = trt
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(dotted)
                break
    return missing


def deserialize_engine(trt, data: bytes, logger=None):
    """Deserialize an engine; None-result (TensorRT's way of failing) becomes an EdgeError."""
    from edge.errors import EdgeError

    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EdgeError(f"TensorRT {trt.__version__} could not deserialize the engine (see the log above)")
    return runtime, engine


class IOTensor(NamedTuple):
    """One engine input or output as the runner needs it."""

    name: str
    is_input: bool
    shape: tuple            # engine shape, -1 where dynamic
    dtype: str              # numpy dtype name
    profile: tuple | None   # (min, opt, max) shapes of profile 0 for dynamic inputs


def profile_shape(trt, engine, name: str, profile: int = 0) -> tuple:
    """(min, opt, max) shapes of input ``name`` in optimisation ``profile``."""
    branch = runtime_branch(version_of(trt))
    if branch == "8.5":
        # 8.5's Python API has no get_tensor_profile_shape yet: the binding query takes the name.
        shapes = engine.get_profile_shape(profile, name)
    else:
        shapes = engine.get_tensor_profile_shape(name, profile)
    return tuple(tuple(int(d) for d in s) for s in shapes)


def io_tensors(trt, engine) -> list:
    """The engine's I/O tensors by name (8.5+: the name-based API on every branch)."""
    import numpy as np

    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        prof = profile_shape(trt, engine, name) if is_input and any(d < 0 for d in shape) else None
        out.append(IOTensor(name, is_input, shape, dtype, prof))
    return out


def set_input_shape(trt, context, name: str, shape) -> None:
    """Set a dynamic input's shape; TensorRT returns False for a shape outside the profile."""
    from edge.errors import EdgeError

    if context.set_input_shape(name, tuple(int(d) for d in shape)) is False:
        raise EdgeError(f"TensorRT refused shape {tuple(shape)} for input {name!r} (outside the engine's profile)")


def set_tensor_address(context, name: str, ptr: int) -> None:
    """Bind a device address to an I/O tensor (name-based API, 8.5+)."""
    from edge.errors import EdgeError

    if context.set_tensor_address(name, int(ptr)) is False:
        raise EdgeError(f"TensorRT refused the address of tensor {name!r}")


def execute_async(trt, context, stream_handle: int) -> None:
    """Enqueue inference on a stream: ``execute_async_v3`` on every supported branch (8.5+)."""
    from edge.errors import EdgeError

    if not context.execute_async_v3(int(stream_handle)):
        raise EdgeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
