"""TensorRT runner with pinned host memory, async copies on a CUDA stream and double buffering.

One call (``infer``) on a batch of at most ``max_batch``::

    pinned input  --H2D (async)-->  device input  --execute_async_v3-->  device output
                  --D2H (async)-->  pinned output  --one stream synchronize-->  numpy

with CUDA events between the steps for the timing split (h2d / compute / d2h). Buffers are
allocated once, for the max batch, when the runner is activated. A batch larger than
``max_batch`` (or :meth:`infer_batches` over a stream of batches) is double-buffered: two slots
of pinned+device buffers, a copy stream and a compute stream, so chunk i+1 is preprocessed and
uploaded while chunk i computes (:meth:`TensorRTRunner.infer_batches`).

Options: ``cuda_graph`` captures ``execute_async_v3`` per (batch size, slot) into a CUDA graph,
each batch size on its own execution context (all sharing one device scratch buffer), so a
graph is never replayed on a context that has since run another shape (NVIDIA: re-capture
after a shape change, or keep a context per captured shape); only clean captures are kept, a
failed one falls back to a plain enqueue for that shape and says so once. Graphs need the
cuda-python backend (pycuda has no stream-capture API: refused in one line). ``zero_copy``
(Jetson / integrated GPUs) binds mapped pinned host memory directly to the engine and skips the
copies. Events are blocking-sync (a waiting host thread sleeps instead of spinning a core);
timing events exist only for :meth:`infer`'s timing split.

An engine with a static batch (a fixed-batch ONNX, or a DLA engine: min = opt = max) takes
smaller batches padded to that size; only the real rows are copied back.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from edge.errors import BackendError, EdgeError, param
from edge.runtime.base import Runner, TensorSpec, Timing
from edge.runtime.tensorrt import buffers as bufmath

log = logging.getLogger(__name__)


class _Slot:
    """Pinned host + device buffers for every I/O tensor, and the events of one pipeline slot."""

    def __init__(self, be, plans, zero_copy: bool):
        self.host = {n: be.pinned(p.nbytes, mapped=zero_copy) for n, p in plans.items()}
        self.dev = {} if zero_copy else {n: be.device(p.nbytes) for n, p in plans.items()}
        self.uploaded, self.done = be.event(), be.event()       # blocking-sync, no timing
        self.t = [be.event(timing=True) for _ in range(4)]  # start, after H2D, after compute, after D2H
        self.graphs: Dict[int, object] = {}  # batch size -> a cleanly captured graph

    def addr(self, name: str) -> int:
        return self.dev[name].ptr if self.dev else self.host[name].device_ptr

    def free(self) -> None:
        for g in self.graphs.values():
            g.free()
        for obj in [*self.host.values(), *self.dev.values(), self.uploaded, self.done, *self.t]:
            obj.free()


def pick_io(tensors, artifact="engine"):
    """(input, probabilities, score or None) among an engine's I/O tensors.

    One input; one output, or two where one is the open-set score ``ood_score`` (N, 1) of a model made
    with ``python -m train.ood`` (TensorRT keeps the ONNX output names). Anything else is refused in one
    line.
    """
    from edge.ood import SCORE_OUTPUT

    ins = [t for t in tensors if t.is_input]
    outs = [t for t in tensors if not t.is_input]
    score = next((t for t in outs if t.name == SCORE_OUTPUT), None)
    probs = [t for t in outs if t is not score]
    if len(ins) != 1 or len(probs) != 1 or (score is not None and tuple(score.shape[1:]) != (1,)):
        raise EdgeError(f"{artifact}: the runner takes one input and one output (plus an optional {SCORE_OUTPUT!r} "
                        f"(N, 1) output), the engine has {len(ins)} input(s) and outputs "
                        f"{', '.join(f'{t.name} {tuple(t.shape)}' for t in outs) or 'none'}")
    return ins[0], probs[0], score


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine (``.engine``/``.plan``) with its metadata JSON.

    Args:
        artifact: Engine file; ``<artifact>.json`` gives classes, preprocessing and the
            ``tensorrt`` version/GPU the engine was built for (checked before deserializing).
        meta: Metadata, if already read.
        warmup: Inference calls at activation.
        cuda_backend: ``auto`` | ``cuda-python`` | ``pycuda`` (:func:`edge.cuda.get_backend`).
        max_batch: Batch the buffers are sized for (default: the engine profile's max).
        cuda_graph: Capture the engine launch into CUDA graphs (one per batch size and slot).
        zero_copy: Bind mapped pinned host memory straight to the engine, no copies (Jetson):
            False (default), True (refused on a GPU that cannot map host memory), or ``auto``
            (on integrated GPUs that can). Measure both with edge-bench before choosing.
        device: CUDA device index (made current by the backend before the engine is loaded).
    """

    backend = "tensorrt"

    def __init__(self, artifact, meta=None, warmup: int = 2, cuda_backend: str = "auto",
                 max_batch: Optional[int] = None, cuda_graph: bool = False, zero_copy=False, device: int = 0):
        super().__init__(artifact, meta, warmup)
        self.cuda_backend = cuda_backend
        self.requested_max_batch = max_batch
        self.cuda_graph = bool(cuda_graph)
        self.zero_copy_opt = zero_copy
        self.device = device
        self.trt = self.engine = self.context = self._runtime = None
        self.be = None
        self.slots: List[_Slot] = []
        self._tensors = []
        self._score = None                        # the ood_score output, when the engine has one
        self._plans: Dict[str, bufmath.BufferPlan] = {}
        self._max_batch = None
        self.zero_copy = False
        self._contexts: Dict[int, object] = {}   # batch size -> context of its CUDA graphs
        self._scratch = None                      # device scratch shared by those contexts
        self._graph_refused: Dict[int, str] = {}  # batch size -> why its capture failed
        self._static_batch: Optional[int] = None

    # -- lifecycle ---------------------------------------------------------------
    def activate_impl(self) -> None:
        try:
            self._activate()
        except BaseException:
            self.deactivate_impl()  # free whatever was allocated before the failure
            raise

    def _activate(self) -> None:
        from edge.cuda import get_backend
        from edge.runtime.tensorrt import compat
        from edge.runtime.tensorrt.loader import load_engine

        self.be = get_backend(self.cuda_backend, device=self.device)
        if self.cuda_graph and not self.be.supports_graphs:
            raise EdgeError(f"{param('cuda_graph')} needs the cuda-python backend: {self.be.name} has no stream-capture "
                            f"API (use {param('cuda_backend', 'cuda-python')}, or drop {param('cuda_graph')})")
        dev = self.be.device_info(self.device)
        self.trt, self._runtime, self.engine = load_engine(self.artifact, self.meta, dev)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.artifact} (out of memory?)")
        self._tensors = compat.io_tensors(self.trt, self.engine)
        self._in, self._out, self._score = pick_io(self._tensors, self.artifact)
        self._static_batch = bufmath.static_batch(self._in)
        self._max_batch = bufmath.resolve_max_batch(self._tensors, self.requested_max_batch)
        self._plans = bufmath.plan_buffers(self._tensors, max(self._max_batch, self._static_batch or 0))
        self.zero_copy = self._want_zero_copy(dev)
        self.s_copy, self.s_compute = self.be.stream(), self.be.stream()
        self.slots = [_Slot(self.be, self._plans, self.zero_copy) for _ in range(2)]
        if self._static_batch:  # padding rows stay zero
            for sl in self.slots:
                sl.host[self._in.name].array[:] = 0
        if self.cuda_graph:
            nbytes = compat.device_memory_size(self.trt, self.engine)
            self._scratch = self.be.device(max(nbytes, 1))
        log.info("TensorRT %s engine %s: max batch %d, %s, backend %s%s", self.trt.__version__, self.artifact.name,
                 self._max_batch, "zero-copy mapped memory" if self.zero_copy else "pinned + device buffers",
                 self.be.name, ", CUDA graphs" if self.cuda_graph else "")

    def _want_zero_copy(self, dev) -> bool:
        z = self.zero_copy_opt
        ok = dev.integrated and dev.can_map_host_memory
        if z in (True, "on", "true", "1"):
            if not ok:
                raise EdgeError(f"zero-copy needs an integrated GPU that can map host memory; {dev.name} cannot")
            return True
        return bool(z == "auto" and ok)

    def deactivate_impl(self) -> None:
        try:
            if self.s_compute is not None:
                self.s_compute.synchronize()
            for s in self.slots:
                s.free()
            for st in (self.s_copy, self.s_compute):
                if st is not None:
                    st.free()
            self._contexts.clear()  # before their scratch memory goes
            if self._scratch is not None:
                self._scratch.free()
        finally:
            self.slots = []
            self._contexts, self._scratch, self._graph_refused = {}, None, {}
            self.s_copy = self.s_compute = None
            self.context = self.engine = self._runtime = None
            close = getattr(self.be, "close", None)  # pycuda: pop and release the runner's context
            if close is not None:
                close()

    s_copy = s_compute = None

    # -- specs -------------------------------------------------------------------
    def _spec_from_meta(self, key: str) -> TensorSpec:
        m = self.meta.get(key) or {}
        shape = tuple(m.get("shape") or ((-1, *self.input_shape) if key == "input" else (-1, len(self.classes))))
        return TensorSpec(m.get("name", key), tuple(int(d) for d in shape), m.get("dtype", "float32"))

    @property
    def input_spec(self) -> TensorSpec:
        if self._tensors:
            return TensorSpec(self._in.name, self._in.shape, self._in.dtype)
        return self._spec_from_meta("input")

    @property
    def output_spec(self) -> TensorSpec:
        if self._tensors:
            return TensorSpec(self._out.name, self._out.shape, self._out.dtype)
        return self._spec_from_meta("output")

    @property
    def max_batch(self) -> Optional[int]:
        return self._max_batch if self._max_batch is not None else super().max_batch

    # -- one chunk ----------------------------------------------------------------
    def _exec_n(self, n: int) -> int:
        """Rows the engine runs for a batch of ``n``: the static batch where the engine has one."""
        return self._static_batch or n

    def _bind(self, ctx, slot: _Slot, n: int) -> None:
        from edge.runtime.tensorrt import compat

        if self._in.shape[0] < 0:
            compat.set_input_shape(self.trt, ctx, self._in.name, self._plans[self._in.name].batch_shape(n))
        for t in self._tensors:
            compat.set_tensor_address(ctx, t.name, slot.addr(t.name))

    def _graph_context(self, n: int):
        """The execution context of batch size ``n``'s graphs (its own, sharing the scratch)."""
        from edge.runtime.tensorrt import compat

        ctx = self._contexts.get(n)
        if ctx is None:
            ctx = self._contexts[n] = compat.context_with_shared_memory(self.trt, self.engine, self._scratch.ptr,
                                                                        self._scratch.nbytes)
        return ctx

    def _capture(self, ctx, stream):
        """Capture one ``execute_async_v3`` into a graph; (graph, None) or (None, why) on failure."""
        from edge.runtime.tensorrt import compat

        graph, why = None, None
        self.be.begin_capture(stream)
        try:
            compat.execute_async(self.trt, ctx, stream.handle)
        except Exception as e:  # noqa: BLE001  (the capture must be ended whatever happened)
            why = " ".join(str(e).split()) or type(e).__name__
        try:
            graph = self.be.end_capture(stream)  # ends the capture mode of the stream in every case
        except Exception as e:  # noqa: BLE001
            why = why or " ".join(str(e).split()) or type(e).__name__
        if why is not None and graph is not None:
            graph.free()
            graph = None
        return graph, why

    def _launch(self, slot: _Slot, n: int, stream) -> None:
        """execute_async_v3 on ``stream`` (or the CUDA graph captured for this batch size and slot)."""
        from edge.runtime.tensorrt import compat

        n = self._exec_n(n)
        if not self.cuda_graph or n in self._graph_refused:
            self._bind(self.context, slot, n)
            compat.execute_async(self.trt, self.context, stream.handle)
            return
        g = slot.graphs.get(n)
        if g is None:
            ctx = self._graph_context(n)
            self._bind(ctx, slot, n)
            # TensorRT needs one regular enqueue after a shape is set before it can be captured.
            compat.execute_async(self.trt, ctx, stream.handle)
            stream.synchronize()
            g, why = self._capture(ctx, stream)
            if g is None:
                self._graph_refused[n] = why
                log.warning("CUDA graph capture failed for batch %d (%s): plain enqueue for this batch size", n, why)
                self._bind(self.context, slot, n)
                compat.execute_async(self.trt, self.context, stream.handle)
                return
            slot.graphs[n] = g  # only clean captures are kept
        g.launch(stream)

    def _enqueue(self, slot: _Slot, n: int, copy_stream, compute_stream, timed: bool) -> None:
        """H2D on ``copy_stream``, then compute + D2H on ``compute_stream`` after the upload event."""
        pin, pout = self._plans[self._in.name], self._plans[self._out.name]
        if timed:
            slot.t[0].record(copy_stream)
        if not self.zero_copy:  # only the batch's rows: padding rows of a static batch stay as they are
            self.be.memcpy_htod_async(slot.dev[pin.name].ptr, slot.host[pin.name].ptr, pin.batch_nbytes(n), copy_stream)
        slot.uploaded.record(copy_stream)
        if compute_stream is not copy_stream:
            compute_stream.wait_event(slot.uploaded)
        if timed:
            slot.t[1].record(compute_stream)
        self._launch(slot, n, compute_stream)
        if timed:
            slot.t[2].record(compute_stream)
        if not self.zero_copy:
            for p in (pout,) + ((self._plans[self._score.name],) if self._score is not None else ()):
                self.be.memcpy_dtoh_async(slot.host[p.name].ptr, slot.dev[p.name].ptr, p.batch_nbytes(n),
                                          compute_stream)
        slot.done.record(compute_stream)

    def _fill(self, slot: _Slot, batch: np.ndarray) -> None:
        p = self._plans[self._in.name]
        view = slot.host[p.name].view(p.batch_shape(len(batch)), p.dtype)
        np.copyto(view, batch, casting="same_kind")

    def _collect(self, slot: _Slot, n: int, wait: bool = True):
        """Probabilities (n, K), or (probabilities, score (n,)) for an engine with the score output."""
        if wait:
            slot.done.synchronize()
        p = self._plans[self._out.name]
        probs = np.array(slot.host[p.name].view(p.batch_shape(n), p.dtype), dtype=np.float32)
        if self._score is None:
            return probs
        q = self._plans[self._score.name]
        return probs, np.array(slot.host[q.name].view(q.batch_shape(n), q.dtype), dtype=np.float32).reshape(n)

    def _yield(self, out) -> np.ndarray:
        """The probabilities of a collected chunk; its score (if any) becomes :attr:`last_score`."""
        if isinstance(out, tuple):
            self.last_score = out[1]
            return out[0]
        self.last_score = None
        return out

    def infer_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        """One chunk on one stream: H2D → execute → D2H, one blocking-sync event wait, event timing."""
        slot, s, n = self.slots[0], self.s_compute, len(batch)
        self._fill(slot, batch)
        self._enqueue(slot, n, s, s, timed=True)
        slot.t[3].record(s)
        slot.t[3].synchronize()  # recorded after `done`: the one wait of this call
        out = self._collect(slot, n, wait=False)
        t = slot.t
        h2d = t[0].elapsed_ms(t[1])
        return out, Timing(h2d_ms=None if self.zero_copy else h2d, compute_ms=t[1].elapsed_ms(t[2]),
                           d2h_ms=None if self.zero_copy else t[2].elapsed_ms(t[3]))

    # -- double buffering ------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, K); batches above :attr:`max_batch` go through the double-buffered pipeline."""
        if self.is_active and self._max_batch is not None and len(batch) > self._max_batch:
            t0 = time.perf_counter()
            parts, scores = [], []
            for p in self.infer_batches(self.check_batch(batch)[a:b]
                                        for a, b in bufmath.chunks(len(batch), self._max_batch)):
                parts.append(p)
                if self.last_score is not None:
                    scores.append(self.last_score)
            self.last_timing = Timing(compute_ms=(time.perf_counter() - t0) * 1e3,
                                      total_ms=(time.perf_counter() - t0) * 1e3)
            self.last_score = np.concatenate(scores) if scores else None
            return np.concatenate(parts)
        return super().infer(batch)

    def infer_batches(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pipeline a stream of preprocessed batches (each <= max_batch): results in order.

        Two slots: chunk k is written into slot k % 2 and enqueued (upload on the copy stream,
        compute + download on the compute stream after the upload event) *before* the host waits for
        chunk k-1, so the next upload overlaps the current compute. A slot is reused only after its
        previous chunk was collected. With a score output, :attr:`last_score` is the score of the chunk
        just yielded (as the daemon reads it).
        """
        if not self.is_active:
            raise EdgeError("TensorRTRunner is not active: use it as a context manager")
        nslots = len(self.slots)
        prev: Optional[Tuple[int, int]] = None  # (slot, n) of the chunk enqueued but not collected
        for k, b in enumerate(batches):
            b = self.check_batch(b)
            if len(b) > self._max_batch:
                raise EdgeError(f"batch of shape {b.shape} does not fit the engine (max batch {self._max_batch})")
            slot = self.slots[k % nslots]
            self._fill(slot, b)
            self._enqueue(slot, len(b), self.s_copy, self.s_compute, timed=False)
            if prev is not None:
                yield self._yield(self._collect(self.slots[prev[0]], prev[1]))
            prev = (k % nslots, len(b))
        if prev is not None:
            yield self._yield(self._collect(self.slots[prev[0]], prev[1]))
