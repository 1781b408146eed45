"""Engine loading: refuse an engine built for another TensorRT version or GPU, then deserialize.

A TensorRT plan runs only on the TensorRT version and GPU (compute capability) it was built for. The engine's metadata JSON records both
(``"tensorrt": {"version", "gpu", "compute_capability"}``); the check reads it before touching the
plan, so the user gets one line instead of TensorRT's deserialization error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict

from edge.errors import EdgeError

log = logging.getLogger(__name__)


def rebuild_hint(meta: Dict[str, Any]) -> str:
    """``edge-convert --from-onnx <the ONNX it was built from>``: the one command that rebuilds it here."""
    src = meta.get("source_onnx") or f"model.{meta.get('precision', 'int8')}.onnx"
    return f"edge-convert --from-onnx {src}"


def check_engine_compat(meta: Dict[str, Any], trt_version: str, device=None) -> None:
    """Raise a one-line EdgeError if the engine's metadata says another TensorRT or GPU.

    Args:
        meta: The engine's metadata (``tensorrt`` section).
        trt_version: ``tensorrt.__version__`` of this machine.
        device: :class:`edge.cuda.DeviceInfo` of the GPU that will run it (None: skip the GPU check).

    The full version is compared (major.minor.patch.build; the build where both name it): a plan
    runs only on the exact TensorRT that built it. Engines are never built version- or
    hardware-compatible by edge-convert (hardware compatibility does not exist on Jetson), so
    there is no relaxed path.
    """
    from edge.runtime.tensorrt.compat import TRTVersion

    info = meta.get("tensorrt") or {}
    name = meta.get("artifact", "engine")
    built = info.get("version")
    if not built:
        raise EdgeError(f"{name}: metadata has no tensorrt.version; cannot tell which TensorRT built it")
    bv, rv = TRTVersion.parse(built), TRTVersion.parse(trt_version)
    if not bv.same_build(rv):
        raise EdgeError(f"{name} was built with TensorRT {built} but this machine has TensorRT {trt_version}: "
                        f"rebuild it here ({rebuild_hint(meta)})")
    if device is None:
        return
    cc = str(info.get("compute_capability") or "")
    if not cc:
        raise EdgeError(f"{name}: metadata has no tensorrt.compute_capability; cannot check the GPU")
    if cc != device.compute_capability:
        raise EdgeError(f"{name} was built for {info.get('gpu', '?')} (sm {cc}) but this GPU is {device.name} "
                        f"(sm {device.compute_capability}): rebuild it on this device ({rebuild_hint(meta)})")
    if info.get("gpu") and info["gpu"] != device.name:
        log.warning("%s was built on %s, running on %s (same compute capability %s)", name, info["gpu"],
                    device.name, cc)


def import_tensorrt():
    """``import tensorrt`` with a clear error where it is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeError("TensorRT is not installed (on Jetson it comes with JetPack: see jetson/setup.sh)") from None
    return trt


def load_engine(path: str | Path, meta: Dict[str, Any], device=None, trt=None, logger=None):
    """Check compatibility, then deserialize.

    Returns:
        (trt module, trt.Runtime, trt.ICudaEngine); keep the runtime alive as long as the engine.
    """
    from edge.runtime.tensorrt import compat

    trt = trt or import_tensorrt()
    compat.runtime_branch(compat.version_of(trt))  # refuses < 8.5
    check_engine_compat(meta, trt.__version__, device)
    data = Path(path).read_bytes()
    if not data:
        raise EdgeError(f"engine file {path} is empty")
    dla = (meta.get("tensorrt") or {}).get("dla_core")
    runtime, engine = compat.deserialize_engine(trt, data, logger, dla_core=dla)
    return trt, runtime, engine
