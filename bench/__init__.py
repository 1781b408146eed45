"""The bench stage: latency, throughput and accuracy drift of artifacts against the FP32 Keras reference.

The API (imported lazily: ``import bench`` does not import TensorFlow)::

    from bench import BenchConfig, run_bench

``run_bench(BenchConfig(...)) -> BenchReport`` (:mod:`bench.api`); ``edge-bench`` is a thin command over it.
"""

from __future__ import annotations

from edge.lazy import lazy_exports

_EXPORTS = {"BenchConfig": "bench.core", "BenchReport": "bench.api", "run_bench": "bench.api"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
