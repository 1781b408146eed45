"""ONNX Runtime runner: CPU here, CUDA / TensorRT execution providers where installed."""

from __future__ import annotations

import time
from typing import Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.runtime.base import Runner, TensorSpec, Timing

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
           "tensor(int8)": "int8", "tensor(int64)": "int64"}


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX artifact with onnxruntime.

    Args:
        artifact: ``.onnx`` file with its metadata JSON.
        providers: Execution providers in order of preference; default CPU. ``"auto"`` picks
            TensorRT → CUDA → CPU among those this onnxruntime build has.
        threads: intra-op threads (0: onnxruntime's default, one per core).
    """

    backend = "onnxruntime"

    def __init__(self, artifact, meta=None, warmup: int = 2, providers: Optional[Sequence[str]] = None,
                 threads: int = 0):
        super().__init__(artifact, meta, warmup)
        self.providers = providers
        self.threads = threads
        self.session = None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.providers in (None, "cpu"):
            providers = ["CPUExecutionProvider"]
        elif self.providers == "auto":
            providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available]
        else:
            providers = list(self.providers)
            missing = [p for p in providers if p not in available]
            if missing:
                raise EdgeError(f"onnxruntime has no {', '.join(missing)} (available: {', '.join(available)})")
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.artifact), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgeError(f"onnxruntime cannot load {self.artifact}: {str(e).splitlines()[0]}") from None
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]

    def deactivate_impl(self) -> None:
        self.session = None

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        return TensorSpec(arg.name, shape, _DTYPES.get(arg.type, arg.type))

    @property
    def input_spec(self) -> TensorSpec:
        return self._spec(self._in)

    @property
    def output_spec(self) -> TensorSpec:
        return self._spec(self._out)

    def infer_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        t0 = time.perf_counter()
        out = self.session.run([self._out.name], {self._in.name: batch})[0]
        return np.asarray(out, dtype=np.float32), Timing(compute_ms=(time.perf_counter() - t0) * 1e3)
