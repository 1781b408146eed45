"""Per-tensor activation ranges by onnxruntime's calibrators, fed in chunks.

onnxruntime's entropy and percentile calibrators keep every intermediate activation of every
image they are given until ``collect_data`` returns (MobileNetV2, 200 images: 19 GB). Their
histograms merge across ``collect_data`` calls, so feeding ``chunk`` images per call bounds the
memory to one chunk's activations plus the histograms. The statistics themselves are
onnxruntime's; nothing is hand-written here.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.preprocess import Preprocess

from calibrate.reader import chunks

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; ``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident memory of this process (MiB)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        return float("nan")


@dataclass
class RangeResult:
    """Ranges per tensor plus how they were obtained.

    Attributes:
        method: ``entropy`` / ``minmax`` / ``percentile``.
        ranges: ``{tensor name: (low, high)}`` as floats.
        images: Number of images seen.
        chunk: Images per ``collect_data`` call.
        seconds: Wall time of the collection.
        rss_before_mb: Resident memory before calibration.
        peak_rss_mb: Peak resident memory of the process at the end (includes everything the
            process loaded before, e.g. TensorFlow: an upper bound for calibration).
        options: Calibrator options used.
    """

    method: str
    ranges: Dict[str, Tuple[float, float]]
    images: int
    chunk: int
    seconds: float
    rss_before_mb: float
    peak_rss_mb: float
    options: Dict = field(default_factory=dict)

    def summary(self) -> Dict:
        return {"method": self.method, "images": self.images, "chunk": self.chunk,
                "seconds": round(self.seconds, 2), "rss_before_mb": round(self.rss_before_mb, 1),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "tensors": len(self.ranges),
                "options": self.options}


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise EdgeError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")
    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


def calibrator_options(method: str) -> Dict:
    """onnxruntime calibrator ``extra_options`` for a method (symmetric: TensorRT wants zero point 0)."""
    if method == "minmax":
        return {"symmetric": True}
    if method == "entropy":
        return {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128}
    return {"symmetric": True, "num_bins": 2048, "percentile": 99.999}


def collect_ranges(onnx_path: str | os.PathLike, paths: Sequence[Path], prep: Preprocess, method: str = "entropy",
                   chunk: int = 32, progress: bool = False, skip: Iterable[str] = ()) -> RangeResult:
    """Run onnxruntime's calibrator over image files, ``chunk`` images per ``collect_data`` call.

    Args:
        onnx_path: The FP32 ONNX model.
        paths: Calibration image files (from :func:`calibrate.reader.calibration_set`).
        prep: The model's preprocessing.
        method: ``entropy``, ``minmax`` or ``percentile``.
        chunk: Images per ``collect_data`` call (one inference batch; bounds peak memory).
        progress: Show a tqdm bar over the chunks.
        skip: Tensors not to calibrate (see :func:`collect_ranges_from_batches`).

    Returns:
        The ranges of every calibrated tensor.
    """
    if not paths:
        raise EdgeError("no calibration images")
    from calibrate.reader import iter_batches

    parts = list(chunks(list(paths), chunk))
    batches = (b for part in parts for b in iter_batches(part, prep, len(part)))
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=len(parts), desc=f"calibrating ({method})", unit="chunk", leave=False)
    return collect_ranges_from_batches(onnx_path, batches, method, chunk=chunk, skip=skip)


def collect_ranges_from_batches(onnx_path: str | os.PathLike, batches: Iterable[np.ndarray], method: str = "entropy",
                                chunk: int = 0, skip: Iterable[str] = ()) -> RangeResult:
    """Run onnxruntime's calibrator with one ``collect_data`` call per float32 batch.

    The entropy/percentile calibrators keep a call's activations only until the call returns and
    merge their histograms across calls, so memory is bounded by one batch.

    Args:
        onnx_path: The FP32 ONNX model.
        batches: Preprocessed float32 batches (the model's input).
        method: ``entropy``, ``minmax`` or ``percentile``.
        chunk: Recorded in the result (images per call).
        skip: Tensors not to calibrate: ones no INT8 model quantizes, such as the open-set score's
            (``convert.quantize.score_nodes``). A knn score on the training images it stores is 1.0 for
            every calibration image, a range too narrow for the percentile calibrator's 2048 bins.
    """
    import onnx
    from onnxruntime.quantization import create_calibrator

    ort_method = _ort_method(method)
    opts = calibrator_options(method)
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    rss0 = current_rss_mb()
    t0 = time.perf_counter()
    n = 0
    with tempfile.TemporaryDirectory(prefix="edge-calib-") as tmp:
        calib = create_calibrator(Path(onnx_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                  calibrate_method=ort_method, extra_options=opts)
        skip = set(skip)
        if getattr(calib, "tensors_to_calibrate", None):   # histogram calibrators: collect only these
            calib.tensors_to_calibrate = set(calib.tensors_to_calibrate) - skip
        for x in batches:
            n += len(x)
            calib.collect_data(_OneBatch(input_name, x))
            if hasattr(calib, "clear_collected_data"):
                calib.clear_collected_data()
        if n == 0:
            raise EdgeError("no calibration images")
        data = calib.compute_data()
        del calib
    ranges = {}
    for name, td in data.items():
        if name in skip:
            continue
        lo, hi = td.range_value
        ranges[name] = (float(np.min(lo)), float(np.max(hi)))
    return RangeResult(method, ranges, n, chunk or n, time.perf_counter() - t0, rss0, peak_rss_mb(), opts)


class _OneBatch:
    """A CalibrationDataReader that yields one batch once."""

    def __init__(self, name: str, x: np.ndarray):
        self.item = {name: np.ascontiguousarray(x, dtype=np.float32)}

    def get_next(self):
        item, self.item = self.item, None
        return item


def tensors_data(method: str, ranges: Dict[str, Sequence[float]]):
    """onnxruntime ``TensorsData`` from stored ranges (what the quantizer reads)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(_ort_method(method), {
        k: TensorData(lowest=np.array(v[0], dtype=np.float32), highest=np.array(v[1], dtype=np.float32))
        for k, v in ranges.items()})
