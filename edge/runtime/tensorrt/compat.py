"""The one place where TensorRT versions fork (8.5, 8.6, 10.x, 11.x).

Every version-dependent TensorRT call of the project goes through a function here, each branch with
a comment saying why. ``tensorrt`` is never imported at module level: ``trt`` is passed in, so the
branching can be tested with a stand-in module (which proves only our branching, not TensorRT).

Sections: version parsing (shared), builder (used by ``convert/tensorrt.py``), runtime (used by
``edge/runtime/tensorrt/runner.py``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

log = logging.getLogger(__name__)


class TRTVersion(NamedTuple):
    """major.minor.patch.build (``tensorrt.__version__`` is e.g. ``8.5.2.2`` or ``10.3.0.30``).

    ``build`` is -1 where the text has no fourth part (metadata of older converters).
    """

    major: int
    minor: int
    patch: int = 0
    build: int = -1

    @classmethod
    def parse(cls, text: str) -> "TRTVersion":
        import re

        parts = []
        for p in str(text).split(".")[:4]:
            m = re.match(r"\d+", p)  # "0+cuda12", "1rc" style suffixes end the version
            if not m:
                break
            parts.append(int(m.group()))
            if m.end() != len(p):
                break
        while len(parts) < 3:
            parts.append(0)
        return cls(*parts)

    def same_build(self, other: "TRTVersion") -> bool:
        """Equal up to the build number (compared only where both know it)."""
        if self[:3] != other[:3]:
            return False
        return self.build < 0 or other.build < 0 or self.build == other.build

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base if self.build < 0 else f"{base}.{self.build}"


def version_of(trt) -> TRTVersion:
    """The version of an imported ``tensorrt`` module."""
    return TRTVersion.parse(trt.__version__)


def branch_of(version, purpose: str = "building") -> str:
    """The API branch of a TensorRT version: ``8.5``, ``8.6``, ``10`` or ``11`` (builder and runtime alike).

    9.x (x86-only, never on a JetPack) takes the 10 branch for the name-based runtime and builder
    calls, but still needs the explicit-batch network flag (see :func:`network_flags`, which forks
    on the version itself); 11.x and later take the 11 branch.

    Raises:
        EdgeError: TensorRT older than 8.5 (JetPack < 5.1: no name-based I/O API, no supported Jetson).
    """
    from edge.errors import EdgeError

    v = version if isinstance(version, TRTVersion) else TRTVersion.parse(str(version))
    if (v.major, v.minor) < (8, 5):
        raise EdgeError(f"TensorRT {v} is too old: {purpose} needs 8.5 or newer (JetPack 5.1+)")
    if v.major == 8:
        return "8.5" if v.minor == 5 else "8.6"
    if v.major in (9, 10):
        return "10"
    return "11"


def missing_api(trt, names) -> list:
    """The dotted names (``"BuilderFlag.FP16"``) among ``names`` that the ``trt`` module lacks."""
    missing = []
    for dotted in names:
        obj = trt
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(dotted)
                break
    return missing


# ============================================================================ builder
# (owned by the converter: network flags, precision, memory pool, profiles, timing cache, DLA)
#
# The TensorRT names each builder branch calls, as "Class.attribute" (or module-level names), so a
# test with the real tensorrt wheel can check them (`missing_builder_api(trt)`).
#  * 8.5/8.6: networks must be created with NetworkDefinitionCreationFlag.EXPLICIT_BATCH (implicit
#    batch is the default before 10); Q/DQ networks need BuilderFlag.INT8 and FP16 needs
#    BuilderFlag.FP16 (weakly typed); IProgressMonitor does not exist in the Python API yet.
#  * 9.x: like 10.x below, except that implicit batch is still the default: EXPLICIT_BATCH is passed.
#  * 10.x: explicit batch is the only mode (the flag is deprecated and ignored, so it is not
#    passed); FP16/INT8 builder flags still exist (weakly typed networks, deprecated in 10.12+);
#    IBuilderConfig.progress_monitor exists (Python IProgressMonitor since 10.0).
#  * 11.x: weak typing is gone: no BuilderFlag.FP16/INT8 and no implicit INT8 calibration; every
#    network is strongly typed, so the FP16 engine is built from the FP16 ONNX and the INT8 engine
#    from the Q/DQ ONNX, with no precision flags. EXPLICIT_BATCH no longer exists.
#  * Every supported version has set_memory_pool_limit (8.4+; max_workspace_size was removed in
#    10), build_serialized_network (8.0+; build_engine was removed in 10), optimization profiles,
#    timing caches (8.0+), IBuilderConfig.can_run_on_DLA and profiling_verbosity (engine inspector).
#  * DLA: Jetson AGX/NX Xavier and Orin with TensorRT 8.5-10.x. TensorRT 11.0-11.3 has no DLA
#    support (and 11.x ships for x86 only); on 8.x an explicitly quantized (Q/DQ) network does not
#    run on DLA (it falls back to the GPU entirely), so those builds are refused (:func:`use_dla`).
_BUILDER_COMMON = [
    "Logger", "Logger.WARNING", "Builder", "Builder.create_network", "Builder.create_builder_config",
    "Builder.create_optimization_profile", "Builder.build_serialized_network", "Builder.num_DLA_cores",
    "OnnxParser", "OnnxParser.parse", "OnnxParser.num_errors", "OnnxParser.get_error",
    "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.add_optimization_profile",
    "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache", "IBuilderConfig.set_flag",
    "IBuilderConfig.default_device_type", "IBuilderConfig.DLA_core", "IBuilderConfig.can_run_on_DLA",
    "ITimingCache.serialize", "IOptimizationProfile.set_shape",
    "INetworkDefinition.get_input", "ITensor.name", "ITensor.shape",
    "MemoryPoolType.WORKSPACE", "DeviceType.DLA", "BuilderFlag.GPU_FALLBACK", "NetworkDefinitionCreationFlag",
]
_MONITOR = ["IProgressMonitor", "IProgressMonitor.phase_start", "IProgressMonitor.step_complete",
            "IProgressMonitor.phase_finish"]
# Weakly typed branches only: per-layer precision constraints (keep_fp32_layers).
_CONSTRAINTS = ["BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "INetworkDefinition.num_layers",
                "INetworkDefinition.get_layer", "ILayer.name", "ILayer.num_outputs", "ILayer.get_output",
                "ILayer.precision", "ILayer.set_output_type", "ITensor.dtype", "DataType.FLOAT", "DataType.HALF"]
BUILDER_API = {
    "8.5": _BUILDER_COMMON + ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "BuilderFlag.FP16", "BuilderFlag.INT8"]
    + _CONSTRAINTS,
    "8.6": _BUILDER_COMMON + ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "BuilderFlag.FP16", "BuilderFlag.INT8"]
    + _CONSTRAINTS,
    "10": _BUILDER_COMMON + ["BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.progress_monitor"] + _MONITOR
    + _CONSTRAINTS,
    "11": _BUILDER_COMMON + ["IBuilderConfig.progress_monitor"] + _MONITOR,
}


def builder_branch(version) -> str:
    """The key of :data:`BUILDER_API` for a TensorRT version.

    Raises:
        EdgeError: TensorRT older than 8.5 (JetPack < 5.1: no supported Jetson runs it).
    """
    return branch_of(version, "building")


def missing_builder_api(trt, branch: str | None = None) -> list:
    """Names of :data:`BUILDER_API` [branch] that the ``trt`` module lacks (empty: all present)."""
    branch = branch or builder_branch(version_of(trt))
    return missing_api(trt, BUILDER_API[branch])


def network_flags(trt, precision: str) -> int:
    """Flags for ``Builder.create_network``.

    8.x and 9.x: EXPLICIT_BATCH is required for ONNX (implicit batch is the default there; 9.x
    takes the 10 branch otherwise, so this forks on the major version itself).
    10.x: explicit batch is the only mode; the flag is deprecated, so 0 (weakly typed network; the
    precision comes from builder flags, see :func:`precision_flags`).
    11.x: every network is strongly typed and EXPLICIT_BATCH is gone: 0.
    """
    v = version_of(trt)
    builder_branch(v)  # refuses < 8.5
    if v.major < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def precision_flags(trt, precision: str) -> list:
    """Builder flags that enable ``precision`` (``fp32``, ``fp16``, ``int8``) on this version.

    8.x and 10.x (weakly typed): FP16 needs BuilderFlag.FP16; a Q/DQ (explicitly quantized)
    network needs BuilderFlag.INT8, plus FP16 so the layers left in float (drift gate) may run
    in FP16. 11.x: no precision flags exist; the ONNX file's types decide (strongly typed), so the
    FP16 engine must come from ``model.fp16.onnx`` and the INT8 one from the Q/DQ model.
    """
    from edge.errors import EdgeError

    if precision not in ("fp32", "fp16", "int8"):
        raise EdgeError(f"unknown engine precision {precision!r}")
    branch = builder_branch(version_of(trt))
    if branch == "11":
        return []
    if precision == "fp16":
        return [trt.BuilderFlag.FP16]
    if precision == "int8":
        return [trt.BuilderFlag.INT8, trt.BuilderFlag.FP16]
    return []


def onnx_for_precision(trt, precision: str) -> str:
    """Which ONNX artifact an engine of ``precision`` is parsed from on this version.

    FP16 on 11.x must be the FP16 ONNX (strongly typed, no FP16 flag); on 8.x/10.x the FP32 ONNX
    with the FP16 flag lets TensorRT choose per layer (what trtexec --fp16 does).
    """
    branch = builder_branch(version_of(trt))
    if precision == "fp16":
        return "fp16" if branch == "11" else "fp32"
    return precision


def keep_fp32_layers(trt, network, config, nodes=(), tensors=()) -> list:
    """Pin the layers of the ONNX nodes ``model.fp16.onnx`` keeps in FP32 to FP32 in an FP16 engine.

    8.x / 10.x build the FP16 engine from the FP32 ONNX with the FP16 flag, so TensorRT may run any
    layer in FP16, including those the converter found FP16 breaks (``fp16.kept_fp32`` in the FP16
    metadata). Their layers get ``precision`` and output types FLOAT, enforced with
    ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` (8.2+). A layer is matched by its name (the ONNX parser
    names a node's layer after the node; extra layers of the same node get ``<node>_<n>``) or by
    an output tensor (the parser keeps ONNX tensor names). 11.x: nothing to do; the strongly typed
    FP16 ONNX already carries FP32 for those nodes, and the flag does not exist.

    Returns:
        Names of the constrained layers.
    """
    from edge.errors import EdgeError

    nodes, tensors = set(nodes), set(tensors)
    if not nodes and not tensors:
        return []
    if builder_branch(version_of(trt)) == "11":
        return []
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        outs = {o.name for o in outputs}
        if layer.name in nodes or any(layer.name.startswith(n + "_") for n in nodes) or outs & tensors:
            # Only float outputs are pinned: an INT32 / BOOL output (shape, ArgMax, comparison
            # layers) forced to FLOAT would change what the next layer reads or fail the build.
            float_outs = [j for j, o in enumerate(outputs) if o.dtype in floats]
            if not float_outs:
                continue
            layer.precision = trt.DataType.FLOAT
            for j in float_outs:
                layer.set_output_type(j, trt.DataType.FLOAT)
            pinned.append(layer.name)
    if not pinned:
        raise EdgeError(f"none of the nodes to keep in FP32 ({', '.join(sorted(nodes))}) is a layer of the "
                        "TensorRT network: was the ONNX changed after edge-convert?")
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return pinned


def set_workspace(trt, config, mib: int) -> None:
    """Workspace limit: ``set_memory_pool_limit(WORKSPACE)`` on every supported branch (8.4+;
    ``max_workspace_size`` was deprecated in 8.4 and removed in 10)."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(mib) << 20)


def set_timing_cache(trt, config, data: bytes = b""):
    """Attach a timing cache (empty or loaded from a file); returns it for serialisation later.

    ``ignore_mismatch=False``: a cache from another GPU/TensorRT is rejected by TensorRT rather than
    silently reused. A stale cache (a TensorRT upgrade, another GPU) must not abort the build:
    one warning is logged and a fresh, empty cache is used (and saved over the stale one).

    Raises:
        BackendError: not even an empty timing cache can be made.
    """
    from edge.errors import BackendError

    if data:
        try:
            cache = config.create_timing_cache(data)
            ok = cache is not None and config.set_timing_cache(cache, False)
        except Exception as e:  # noqa: BLE001  (pybind raises on a corrupt blob in some versions)
            ok, cache = False, None
            why = f": {' '.join(str(e).split())}"
        else:
            why = ""
        if ok:
            return cache
        log.warning(f"the timing cache does not fit TensorRT {trt.__version__} on this GPU "
                    f"(stale: made by another version or GPU){why}; starting a fresh one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise BackendError("TensorRT could not create an empty timing cache")
    return cache


def check_dla(trt, precision: str, quantized: bool = False) -> None:
    """Refuse DLA builds that cannot run on the DLA (before any work).

    * FP32: the DLA runs FP16 and INT8 only; with GPU fallback an FP32 build runs wholly on the GPU.
    * TensorRT 8.x with an explicitly quantized (Q/DQ) network: 8.x runs Q/DQ on the GPU only.
    * TensorRT 11.0-11.3: no DLA support (11.x ships for x86 only).

    Raises:
        EdgeError: one line naming the reason and what to do instead.
    """
    from edge.errors import EdgeError, param

    v = version_of(trt)
    if precision == "fp32":
        raise EdgeError(f"{param('dla')}: the DLA runs FP16 or INT8 only; an FP32 engine would run entirely on the "
                        "GPU (build model.fp16.onnx or model.int8.onnx)")
    if v.major == 11 and v.minor <= 3:
        raise EdgeError(f"{param('dla')}: TensorRT {v} has no DLA support (11.0-11.3; 11.x is x86-only): use the "
                        "JetPack's TensorRT (8.5-10.x)")
    if v.major == 8 and (precision == "int8" or quantized):
        raise EdgeError(f"{param('dla')}: TensorRT {v} does not run an explicitly quantized (Q/DQ) network on the "
                        "DLA (it would fall back to the GPU entirely): build FP16 for the DLA, or use TensorRT 10 "
                        "(JetPack 6.1+)")


def use_dla(trt, builder, config, core: int) -> None:
    """Run on DLA core ``core`` with GPU fallback for layers the DLA cannot run.

    The caller builds a static shape (min = opt = max: the DLA has no dynamic shapes; a dynamic
    profile silently runs everything on the GPU) and records the placement (:func:`dla_placement`).
    """
    from edge.errors import EdgeError, param

    n = int(builder.num_DLA_cores)
    if n == 0:
        raise EdgeError(f"this device has no DLA ({param('dla')} needs a Jetson AGX/NX Orin or Xavier)")
    if not 0 <= core < n:
        raise EdgeError(f"{param('dla', core)}: this device has DLA cores 0..{n - 1}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def dla_placement(trt, network, config) -> dict:
    """Which layers of ``network`` can run on the DLA under ``config`` (``can_run_on_DLA``, 8.x+).

    Returns:
        ``{"dla": [layer names], "gpu": [layer names that fall back to the GPU]}``.
    """
    dla, gpu = [], []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        (dla if config.can_run_on_DLA(layer) else gpu).append(layer.name)
    return {"dla": dla, "gpu": gpu}


def attach_progress(trt, config) -> object:
    """A progress monitor logging phase starts (10.x+: ``IProgressMonitor``); None on 8.x (absent)."""
    if builder_branch(version_of(trt)) in ("8.5", "8.6") or not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                log.info(f"  TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            pass

    mon = _Monitor()
    config.progress_monitor = mon
    return mon


# ============================================================================ runtime
# (owned by the runtime: deserialisation, I/O tensor enumeration, shapes, addresses, execution)

# The TensorRT names each runtime branch calls, as "Class.attribute" (or a module-level name),
# so a test with a real tensorrt wheel can check them: `missing_runtime_api(trt)` lists the absent.
# 8.5 is the first release with the name-based I/O API (num_io_tensors, get_tensor_name/mode/shape/
# dtype, set_input_shape, set_tensor_address, execute_async_v3); its Python profile query is still
# the binding one (get_profile_shape(profile, binding)), so that is the one binding call kept.
# get_tensor_profile_shape exists from 8.5 on (the binding-based get_profile_shape is deprecated
# there and warns; it is gone in 10). trt.nptype is not used: TensorRT 8.5.1/8.5.2's refers to
# np.bool, removed in numpy 1.24, so dtypes go through our own table (:data:`NUMPY_DTYPES`).
# Contexts sharing one device scratch (one per CUDA-graph shape): 8.5-10.x have
# create_execution_context_without_device_memory + the device_memory property; 10.x adds
# ExecutionContextAllocationStrategy.USER_MANAGED, device_memory_size_v2 and set_device_memory,
# the only spelling left in 11.x. Runtime.DLA_core selects the DLA core an engine runs on.
_RUNTIME_COMMON = [
    "Logger", "Runtime", "Runtime.deserialize_cuda_engine", "Runtime.DLA_core", "TensorIOMode", "DataType",
    "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_dtype", "ICudaEngine.create_execution_context",
    "ICudaEngine.num_optimization_profiles", "ICudaEngine.get_tensor_profile_shape",
    "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
    "IExecutionContext.get_tensor_shape", "IExecutionContext.execute_async_v3",
]
_SHARED_8 = ["ICudaEngine.create_execution_context_without_device_memory", "ICudaEngine.device_memory_size",
             "IExecutionContext.device_memory"]
_SHARED_10 = ["ExecutionContextAllocationStrategy.USER_MANAGED", "ICudaEngine.device_memory_size_v2",
              "IExecutionContext.set_device_memory"]
RUNTIME_API = {
    "8.5": _RUNTIME_COMMON + _SHARED_8,
    "8.6": _RUNTIME_COMMON + _SHARED_8,
    "10": _RUNTIME_COMMON + _SHARED_10,
    "11": _RUNTIME_COMMON + _SHARED_10,
}

#: TensorRT DataType member name -> numpy dtype name (BF16, FP8, INT4, FP4 have no numpy dtype).
NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool",
                "UINT8": "uint8", "INT64": "int64"}


def numpy_dtype(trt_dtype) -> str:
    """The numpy dtype name of a TensorRT ``DataType`` (our table, not ``trt.nptype``).

    Raises:
        EdgeError: a TensorRT type numpy cannot hold (BF16, FP8, INT4, FP4).
    """
    from edge.errors import EdgeError

    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in NUMPY_DTYPES:
        raise EdgeError(f"TensorRT data type {name} has no numpy equivalent: the runner binds "
                        f"{', '.join(NUMPY_DTYPES)} tensors only")
    return NUMPY_DTYPES[name]


def runtime_branch(version) -> str:
    """The key of :data:`RUNTIME_API` for a TensorRT version.

    Raises:
        EdgeError: TensorRT older than 8.5 (no name-based I/O API, not on any supported JetPack).
    """
    return branch_of(version, "the runtime")


def missing_runtime_api(trt, branch: str | None = None) -> list:
    """Names of :data:`RUNTIME_API` [branch] that the ``trt`` module lacks (empty: all present).

    TensorRT 10.0 (x86 only) still has the 8.x scratch-memory names instead of the 10.1+ ones.
    """
    v = version_of(trt)
    names = list(RUNTIME_API[branch or runtime_branch(v)])
    if branch is None and (v.major, v.minor) == (10, 0):
        names = [n for n in names if n not in ("ICudaEngine.device_memory_size_v2",
                                               "IExecutionContext.set_device_memory")]
        names += ["ICudaEngine.device_memory_size", "IExecutionContext.device_memory"]
    return missing_api(trt, names)


def deserialize_engine(trt, data: bytes, logger=None, dla_core=None):
    """Deserialize an engine; None-result (TensorRT's way of failing) becomes a BackendError.

    ``dla_core``: the DLA core a DLA engine runs on (``Runtime.DLA_core``, set before deserializing).
    """
    from edge.errors import BackendError

    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise BackendError(f"TensorRT {trt.__version__} could not deserialize the engine (see the log above)")
    return runtime, engine


class IOTensor(NamedTuple):
    """One engine input or output as the runner needs it."""

    name: str
    is_input: bool
    shape: tuple            # engine shape, -1 where dynamic
    dtype: str              # numpy dtype name
    profile: tuple | None   # (min, opt, max) shapes of profile 0 for dynamic inputs


def profile_shape(trt, engine, name: str, profile: int = 0) -> tuple:
    """(min, opt, max) shapes of input ``name`` in optimisation ``profile``.

    ``get_tensor_profile_shape(name, profile)`` on every branch: 8.5 has it already (its
    ``get_profile_shape`` is the deprecated binding query, which warns).
    """
    runtime_branch(version_of(trt))  # refuses < 8.5
    shapes = engine.get_tensor_profile_shape(name, profile)
    return tuple(tuple(int(d) for d in s) for s in shapes)


def io_tensors(trt, engine) -> list:
    """The engine's I/O tensors by name (8.5+: the name-based API on every branch)."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        dtype = numpy_dtype(engine.get_tensor_dtype(name))
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
    from edge.errors import BackendError

    if context.set_tensor_address(name, int(ptr)) is False:
        raise BackendError(f"TensorRT refused the address of tensor {name!r}")


def execute_async(trt, context, stream_handle: int) -> None:
    """Enqueue inference on a stream: ``execute_async_v3`` on every supported branch (8.5+)."""
    from edge.errors import BackendError

    if not context.execute_async_v3(int(stream_handle)):
        raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")


def device_memory_size(trt, engine) -> int:
    """Scratch bytes an execution context needs: ``device_memory_size_v2`` from 10.1 on (10.0 and 8.x
    have only ``device_memory_size``, which 11 removed)."""
    v = version_of(trt)
    runtime_branch(v)
    if (v.major, v.minor) >= (10, 1):
        return int(engine.device_memory_size_v2)
    return int(engine.device_memory_size)


def context_with_shared_memory(trt, engine, ptr: int, nbytes: int):
    """An execution context that uses the caller's device scratch at ``ptr`` (``nbytes``).

    Several contexts (one per CUDA-graph shape) share one scratch buffer: they run one after the
    other on one stream, never concurrently. 8.x: ``create_execution_context_without_device_memory``
    + ``device_memory``; 10.x/11.x: ``USER_MANAGED`` allocation + ``set_device_memory`` (10.1+; 10.0
    has only ``device_memory``; the 8.x calls are deprecated in 10 and gone in 11). Checked against
    NVIDIA/TensorRT python/src/infer/pyCore.cpp at release/8.5, v8.6.1, v10.0.1, v10.1.0, v10.3.0, v11.1.

    Raises:
        BackendError: TensorRT could not make the context.
    """
    from edge.errors import BackendError

    v = version_of(trt)
    if runtime_branch(v) in ("10", "11"):
        ctx = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if ctx is not None:
            if (v.major, v.minor) >= (10, 1):
                ctx.set_device_memory(int(ptr), int(nbytes))
            else:  # 10.0 (x86 only): set_device_memory came in 10.1
                ctx.device_memory = int(ptr)
    else:
        ctx = engine.create_execution_context_without_device_memory()
        if ctx is not None:
            ctx.device_memory = int(ptr)
    if ctx is None:
        raise BackendError("TensorRT could not create an execution context (out of memory?)")
    return ctx
