"""The train stage: train a defect classifier, evaluate an artifact.

The API (imported lazily: ``import train`` does not import TensorFlow)::

    from train import TrainConfig, train_model, EvalConfig, evaluate_model

``train_model(TrainConfig(...)) -> TrainResult`` and ``evaluate_model(EvalConfig(...)) -> EvalResult``
(:mod:`train.api`); ``edge-train`` and ``edge-eval`` are thin commands over them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "train.config", "EvalConfig": "train.config",
    "TrainResult": "train.api", "EvalResult": "train.api", "train_model": "train.api", "evaluate_model": "train.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
