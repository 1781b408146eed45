"""Opening an artifact's runner for the bench.

``edge-convert`` writes ``"onnxruntime": {"graph_optimization_level": "basic"}`` into the metadata of
the Q/DQ INT8 model: at ONNX Runtime's default level (``all``) the fused AVX2 s8s8 kernels can
saturate and the outputs drift far from the Q/DQ arithmetic TensorRT computes. The shared
:class:`edge.runtime.onnxrt.OnnxRuntimeRunner` applies that level itself, so the bench only adds its
``--threads`` setting for ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional


def open_runner(artifact: str | Path, meta: Optional[Dict[str, Any]] = None, threads: int = 0, **opts):
    """The runner of an artifact (not yet active), as :func:`edge.runtime.load_runner` makes it.

    Args:
        artifact: The model / engine file.
        meta: Its metadata, if already read (unused: ``load_runner`` reads it).
        threads: ONNX Runtime intra-op threads (ignored by other backends).
        **opts: Passed to the runner.
    """
    from edge.metadata import read_meta
    from edge.runtime import backend_of, load_runner

    meta = meta if meta is not None else read_meta(artifact)
    backend = backend_of(artifact, meta)
    if backend == "onnxruntime" and threads:
        opts["threads"] = threads
    return load_runner(artifact, backend=backend, **opts)
