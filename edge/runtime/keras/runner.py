"""Keras runner: the FP32 reference that converted artifacts are compared against.

Not for the Jetson (it needs TensorFlow); imported lazily.
"""

from __future__ import annotations

import time
from typing import Tuple

import numpy as np

from edge.errors import EdgeError
from edge.runtime.base import Runner, TensorSpec, Timing
from edge.runtime.keras.loader import load_keras_model


class KerasRunner(Runner):
    """Runs a ``.keras`` model with Keras (TensorFlow backend), batch chunks of ``batch_size``."""

    backend = "keras"

    def __init__(self, artifact, meta=None, warmup: int = 1, batch_size: int = 64):
        super().__init__(artifact, meta, warmup)
        self.batch_size = batch_size
        self.model = None

    def activate_impl(self) -> None:
        self.model = load_keras_model(self.artifact)

    def deactivate_impl(self) -> None:
        self.model = None

    @property
    def input_spec(self) -> TensorSpec:
        return TensorSpec(self.model.inputs[0].name, (-1, *self.preprocess.input_shape))

    @property
    def output_spec(self) -> TensorSpec:
        return TensorSpec(self.model.outputs[0].name, (-1, len(self.classes)))

    @property
    def max_batch(self):
        return self.batch_size

    def infer_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        if self.model is None:
            raise EdgeError("Keras model is not loaded")
        t0 = time.perf_counter()
        out = self.model(batch, training=False)
        ms = (time.perf_counter() - t0) * 1e3
        if isinstance(out, (list, tuple)):  # probabilities and the open-set score (train.models.with_ood_score)
            return (np.asarray(out[0], dtype=np.float32), np.asarray(out[1], dtype=np.float32)), Timing(compute_ms=ms)
        return np.asarray(out, dtype=np.float32), Timing(compute_ms=ms)
