"""INT8 calibration (onnxruntime.quantization style): data reader → range statistics → record.

* :mod:`calibrate.reader`: the calibration image set, a stratified subset of the TRAIN split
  only (never validation or test files), fed to onnxruntime in small batches.
* :mod:`calibrate.ranges`: per-tensor ranges by onnxruntime's calibrators (entropy, minmax,
  percentile), fed in chunks so peak memory stays bounded.
* :mod:`calibrate.record`: the calibration record ``model.int8.calib.json`` (method, image list
  hash, per-class counts, per-tensor ranges) that lets a rebuild reuse the ranges without images.

Nothing here imports onnxruntime or TensorFlow at module import time.
"""

from __future__ import annotations

__all__ = ["reader", "ranges", "record"]
