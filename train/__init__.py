"""The train stage: train a defect classifier, evaluate an artifact.

The API (imported lazily: ``import train`` does not import TensorFlow)::

    from train import TrainConfig, train_model, EvalConfig, evaluate_model

``train_model(TrainConfig(...)) -> TrainResult`` and ``evaluate_model(EvalConfig(...)) -> EvalResult``
(:mod:`train.api`); ``edge-train`` and ``edge-eval`` are thin commands over them.
"""

from __future__ import annotations

from edge.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "train.config", "EvalConfig": "train.config",
    "TrainResult": "train.api", "EvalResult": "train.api", "train_model": "train.api", "evaluate_model": "train.api",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
