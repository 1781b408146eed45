"""The bench stage: latency, throughput and accuracy drift of artifacts against the FP32 Keras reference.

The API (imported lazily: ``import bench`` does not import TensorFlow)::

    from bench import BenchConfig, run_bench

``run_bench(BenchConfig(...)) -> BenchReport`` (:mod:`bench.api`); ``edge-bench`` is a thin command over it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"BenchConfig": "bench.core", "BenchReport": "bench.api", "run_bench": "bench.api"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
