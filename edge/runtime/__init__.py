"""Runners behind one interface; :func:`load_runner` picks one from an artifact's metadata.

Backends import their libraries lazily: ``import edge.runtime`` works on a machine
without TensorFlow, TensorRT or CUDA.
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import EdgeError
from edge.metadata import read_meta
from edge.runtime.base import Runner, TensorSpec, Timing

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def backend_of(artifact, meta=None) -> str:
    """``onnxruntime`` / ``tensorrt`` / ``keras`` for an artifact, from its metadata or suffix
    (``triton`` for a ``triton://host:8001/MODEL`` URL)."""
    if str(artifact).startswith(("triton://", "triton+grpc://", "triton+http://")):
        return "triton"
    meta = meta if meta is not None else read_meta(artifact)
    b = meta.get("backend")
    if b in ("onnxruntime", "tensorrt", "keras"):
        return b
    suffix = Path(artifact).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if suffix in (".keras", ".h5"):
        return "keras"
    raise EdgeError(f"cannot tell which backend runs {artifact}")


def load_runner(artifact, backend: str = "auto", **opts) -> Runner:
    """Make the runner for an artifact (not yet active: use it as a context manager).

    Args:
        artifact: Model file with its ``.json`` metadata.
        backend: ``auto`` (from the metadata), ``onnxruntime``, ``tensorrt`` or ``keras``.
        **opts: Passed to the runner (e.g. ``threads``, ``providers``, ``cuda_backend``).
    """
    if backend in ("auto", "triton") and str(artifact).startswith(("triton://", "triton+grpc://", "triton+http://")):
        from edge.runtime.triton import TritonRunner

        return TritonRunner(str(artifact), **opts)
    path = Path(artifact)
    if path.suffix.lower() in ENGINE_SUFFIXES and not path.exists():
        # The engine is built on the device, from the ONNX artifacts (no TensorFlow there).
        stem = path.name[:-len(path.suffix)]
        found = sorted(p.name for p in path.parent.glob(f"{stem}.*{path.suffix}")) if path.parent.is_dir() else []
        onnx = path.parent / f"{stem}.onnx"
        also = f" (this folder has {', '.join(found)})" if found else ""
        raise EdgeError(f"no engine at {path}{also}: build it on this device with `edge-convert --from-onnx "
                        f"{onnx}`, which writes {path.name} beside the versioned engine file")
    meta = read_meta(artifact)
    b = backend_of(artifact, meta) if backend == "auto" else backend
    if b == "onnxruntime":
        from edge.runtime.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, meta, **opts)
    if b == "keras":
        from edge.runtime.keras import KerasRunner

        return KerasRunner(artifact, meta, **opts)
    if b == "tensorrt":
        from edge.runtime.tensorrt import TensorRTRunner

        return TensorRTRunner(artifact, meta, **opts)
    raise EdgeError(f"unknown backend {b!r} (onnxruntime, tensorrt or keras)")


def artifact_meta(artifact):
    """An artifact's metadata: its ``.json`` file, or for ``triton://`` the model's config on the server."""
    if str(artifact).startswith(("triton://", "triton+grpc://", "triton+http://")):
        from edge.runtime.triton import TritonRunner

        meta = dict(TritonRunner(str(artifact)).meta)
        meta.setdefault("backend", "triton")
        return meta
    return read_meta(artifact)


__all__ = ["Runner", "TensorSpec", "Timing", "load_runner", "backend_of", "artifact_meta"]
