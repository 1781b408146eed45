"""Opening an artifact's runner for the bench, honouring what the converter asked of ONNX Runtime.

``edge-convert`` writes ``"onnxruntime": {"graph_optimization_level": "basic"}`` into the metadata of
the Q/DQ INT8 model: at ONNX Runtime's default level (``all``) the fused AVX2 s8s8 kernels saturate
and the outputs drift far from the Q/DQ arithmetic (measured here on the tiny test model: top-1
agreement with FP32 11.7 % at ``all`` against 100 % at ``basic``). The shared
:class:`edge.runtime.onnxrt.OnnxRuntimeRunner` does not read that key (yet), so the bench opens such
artifacts with :class:`LevelledOrtRunner`, the same runner with the session rebuilt at the level the
metadata names. Everything else goes through :func:`edge.runtime.load_runner` unchanged.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, Optional

from edge.errors import EdgeError

LEVELS = ("disable", "basic", "extended", "layout", "all")


def ort_level(meta: Dict[str, Any]) -> Optional[str]:
    """The graph optimisation level an artifact's metadata asks for (None: ONNX Runtime's default)."""
    level = (meta.get("onnxruntime") or {}).get("graph_optimization_level")
    if level is None:
        return None
    level = str(level).lower()
    if level not in LEVELS:
        raise EdgeError(f"{meta.get('artifact', 'artifact')}: unknown onnxruntime graph_optimization_level {level!r} "
                        f"(one of {', '.join(LEVELS)})")
    return level


def _make_levelled():
    from edge.runtime.onnxrt import OnnxRuntimeRunner

    class LevelledOrtRunner(OnnxRuntimeRunner):
        """:class:`OnnxRuntimeRunner` whose session uses a given graph optimisation level."""

        def __init__(self, artifact, meta=None, level: str = "all", **kw):
            super().__init__(artifact, meta, **kw)
            self.level = level

        def activate_impl(self) -> None:
            import onnxruntime as ort

            super().activate_impl()  # providers, threads and the one-line load error as usual
            lv = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT",
                                    ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[self.level]
            so = ort.SessionOptions()
            if self.threads:
                so.intra_op_num_threads = int(self.threads)
            so.log_severity_level = 3
            so.graph_optimization_level = lv
            providers = self.session.get_providers()
            self.session = ort.InferenceSession(str(self.artifact), sess_options=so, providers=providers)
            self._in = self.session.get_inputs()[0]
            self._out = self.session.get_outputs()[0]

    return LevelledOrtRunner


def open_runner(artifact: str | Path, meta: Optional[Dict[str, Any]] = None, threads: int = 0, **opts):
    """The runner of an artifact (not yet active), as :func:`edge.runtime.load_runner` makes it.

    Args:
        artifact: The model / engine file.
        meta: Its metadata, if already read.
        threads: ONNX Runtime intra-op threads (ignored by other backends).
        **opts: Passed to the runner.

    Returns:
        The runner; for an ONNX artifact whose metadata names a graph optimisation level that the
        shared ORT runner does not apply itself, a :class:`LevelledOrtRunner`.
    """
    from edge.metadata import read_meta
    from edge.runtime import backend_of, load_runner

    meta = meta if meta is not None else read_meta(artifact)
    backend = backend_of(artifact, meta)
    if backend != "onnxruntime":
        return load_runner(artifact, backend=backend, **opts)
    if threads:
        opts["threads"] = threads
    level = ort_level(meta)
    from edge.runtime.onnxrt import OnnxRuntimeRunner

    native = "graph_optimization_level" in inspect.signature(OnnxRuntimeRunner.__init__).parameters
    if level is None or native:
        if level is not None:
            opts["graph_optimization_level"] = level
        return load_runner(artifact, backend=backend, **opts)
    return _make_levelled()(artifact, meta, level=level, **opts)
