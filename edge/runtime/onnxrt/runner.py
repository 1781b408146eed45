"""ONNX Runtime runner: CPU here, CUDA / TensorRT execution providers where installed."""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from concurrent.futures import wait
from typing import Deque, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.runtime.base import Runner, TensorSpec, Timing
from edge.runtime.onnxrt.session import check_level, level_of, session

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
           "tensor(int8)": "int8", "tensor(int64)": "int64"}


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX artifact with onnxruntime.

    Args:
        artifact: ``.onnx`` file with its metadata JSON.
        providers: Execution providers in order of preference; default CPU. ``"auto"`` picks
            TensorRT → CUDA → CPU among those this onnxruntime build has.
        threads: intra-op threads (0: onnxruntime's default, one per core).
        graph_optimization_level: ``disable|basic|extended|layout|all``; by default the level the
            artifact's metadata names (the rule and its reason: :mod:`edge.runtime.onnxrt.session`).
        split: Run a batch as this many parts at once, each part in a session with one intra-op
            thread (data parallel), for batches of at least ``split`` inputs; smaller batches run
            in the ``threads`` session. ``None`` (default): on the CPU provider with ``threads``
            0, the number of cores this process may use; else 1 (off). On an idle machine it is
            about as fast as onnxruntime's intra-op threads; when other threads want the cores
            (the capture daemon's own, other processes) it keeps its speed, while intra-op threads,
            which meet and spin at every operator, stall (compact model, CPU int8, batch 16, 2
            cores: daemon 1.33x the tiles/s at load 2-3; docs/results/line-1500.md). The parts'
            outputs are those of one run (every input is computed on its own). The same
            one-thread session gives the runner one lane per part (:attr:`lanes`): a caller with
            several batches in hand runs them whole, one per core, without a join per batch
            (:meth:`infer_batches`, the capture daemon).
        spin_after_run: ONNX Runtime's intra-op threads go on spinning for tens of milliseconds after
            each run, ready for the next (its default, True: back-to-back calls, benchmarks). False
            stops them when a run returns (``session.force_spinning_stop``), so an idle session takes
            no core from the caller's other threads: measured here, 38-52 ms of CPU in the 100 ms
            after a batch-1 run, against 0.1. The capture daemon sets it.
    """

    backend = "onnxruntime"

    def __init__(self, artifact, meta=None, warmup: int = 2, providers: Optional[Sequence[str]] = None,
                 threads: int = 0, graph_optimization_level: Optional[str] = None, split: Optional[int] = None,
                 spin_after_run: bool = True):
        super().__init__(artifact, meta, warmup)
        self.providers = providers
        self.threads = threads
        self.spin_after_run = spin_after_run
        if split is not None and (not isinstance(split, int) or split < 0):
            raise EdgeError(f"split must be a whole number >= 0, got {split!r}")
        self.split = split
        self.graph_optimization_level = check_level(graph_optimization_level or level_of(self.meta))
        self.session = None
        self._split_session = None
        self._pool = None
        #: parts a batch is split into (1: not split), known once active
        self.parts = 1

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
        parts = self.split
        if parts is None:
            cpu_only = providers == ["CPUExecutionProvider"]
            parts = _usable_cores() if cpu_only and not self.threads else 1
        self.session = self._session(ort, providers, int(self.threads))
        if parts > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._split_session = self._session(ort, providers, 1)
            # a split batch: the calling thread runs the first part itself; lanes: one worker each
            self._pool = ThreadPoolExecutor(parts, thread_name_prefix="ort-lane")
        self.parts = max(1, parts)
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]
        from edge.ood import SCORE_OUTPUT

        # optional second output: the open-set score (models made with train.models.with_ood_score)
        self._score = next((o for o in self.session.get_outputs()[1:] if o.name == SCORE_OUTPUT), None)

    def _session(self, ort, providers, threads: int):
        config = None if self.spin_after_run or threads == 1 else {"session.force_spinning_stop": "1"}
        return session(self.artifact, level=self.graph_optimization_level, threads=threads, providers=providers,
                       wrap_errors=True, config=config)

    def deactivate_impl(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.session = self._split_session = self._pool = None
        self.parts = 1

    @property
    def lanes(self) -> int:
        """One lane per part a batch is split into (the one-thread session is safe to run from as many threads)."""
        return self.parts if self._split_session is not None else 1

    def _names(self) -> list:
        return [self._out.name] + ([self._score.name] if self._score is not None else [])

    def lane_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        """The whole chunk on the one-thread session (one core)."""
        if self._split_session is None:
            return self.infer_impl(batch)
        t0 = time.perf_counter()
        return self._result(self._split_session.run(self._names(), {self._in.name: batch}), t0)

    def infer_batches(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Probabilities of each batch, in order, and :attr:`last_score` the yielded batch's score.

        With several lanes and more than one batch, up to :attr:`lanes` batches run at once, each
        whole on one core (none is split); a stream of one batch runs it split over the cores (:meth:`infer`).
        Up to twice :attr:`lanes` batches are handed to the lanes ahead of the one yielded next, so a lane
        that finishes a small batch takes the next one instead of waiting for a large one to be yielded
        (a frame of 20 tiles in batches of 16 and 4).
        """
        it = iter(batches)
        head = list(itertools.islice(it, 2))
        if self.lanes < 2 or len(head) < 2:
            yield from super().infer_batches(itertools.chain(head, it))
            return
        inflight: Deque = deque()
        try:
            for b in itertools.chain(head, it):
                inflight.append(self._pool.submit(self.infer_lane, b))
                if len(inflight) >= 2 * self.lanes:
                    yield self._collect(inflight.popleft())
            while inflight:
                yield self._collect(inflight.popleft())
        finally:
            for f in inflight:  # the consumer stopped early or a batch failed: let the others finish
                f.cancel()
            wait(inflight)

    def _collect(self, future) -> np.ndarray:
        probs, self.last_score = future.result()
        return probs

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
        names = self._names()
        if self.parts > 1 and len(batch) >= self.parts:
            sess = self._split_session
            chunks = np.array_split(batch, self.parts)
            futures = [self._pool.submit(sess.run, names, {self._in.name: c}) for c in chunks[1:]]
            outs = [sess.run(names, {self._in.name: chunks[0]})] + [f.result() for f in futures]
            res = [np.concatenate([o[k] for o in outs]) for k in range(len(names))]
        else:
            res = self.session.run(names, {self._in.name: batch})
        return self._result(res, t0)

    def _result(self, res, t0: float):
        ms = (time.perf_counter() - t0) * 1e3
        if self._score is not None:
            return (np.asarray(res[0], dtype=np.float32), np.asarray(res[1], dtype=np.float32)), Timing(compute_ms=ms)
        return np.asarray(res[0], dtype=np.float32), Timing(compute_ms=ms)


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
