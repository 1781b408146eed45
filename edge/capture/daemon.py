"""The capture daemon: frames → tiles → the model's input → runner → events, as an overlapped pipeline.

One frame at a time (``--lanes 1``), four threads, each one stage, joined by small bounded queues,
so frame k+1 is decoded, tiled and prepared while frame k is classified and frame k-1's events are
written::

    grab      source.read() (decode)                      → frames queue (live: latest-frame drops)
    prepare   gray, tiles as strided views, the batch      → work queue (2)
    main      runner.infer_batches (the only stage that must be fast)  → results queue
    emit      labels, metrics, JSONL events, crops, hooks

With several runner lanes (the default where the runner has them), the grab thread and one thread
per lane: each lane takes the next frame from the grab queue, prepares and classifies it on its
lane, and emits it in frame order (:class:`_Turns`: the lane that completes the earliest frame
emits every frame then ready); the main thread only watches for the stop. No thread is woken per
frame but the lane that takes it, and the grab thread when the queue has room.

cv2 (decode, resize), numpy copies and onnxruntime release the GIL, so on two cores the stages
really overlap. A frame's tiles are packed with one copy into one batch array per frame (uint8
tiles for an artifact with the preprocessing in its graph, else the host preprocessing writes the
float batch); the runner's batches are slices of it (views). ``request_stop()`` (SIGTERM/SIGINT)
stops the grabbing; the frames already read still go through every stage (until
``cfg.stop_timeout``; past it the rest is abandoned and counted), the events are flushed, and
:meth:`CaptureDaemon.run` returns the summary. A frame that cannot be tiled, preprocessed or
classified is skipped and counted (``frames_skipped_total{reason}``). :attr:`CaptureDaemon.stages`
times each stage (decode, tiling, preprocessing, inference, events) per frame.

Lanes: the ONNX Runtime CPU runner has one lane per core (:attr:`edge.runtime.base.Runner.lanes`).
One frame at a time, each batch is split over the cores and every batch ends in a join, where a
core that the other stages' threads took leaves the other waiting; with a frame per lane each core
runs whole batches, nothing waits for a partner, and a frame's tiles are packed on the core that
classifies them, without a hand-over between threads (``--lanes``; 0 = the runner's, 1 = off).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edge.capture.config import CaptureConfig, validate
from edge.capture.crops import CropStore
from edge.capture.events import EventWriter
from edge.capture.metrics import Metrics, MetricsServer
from edge.capture.sources import END, Frame, Grabber, Source, open_source, parse_source
from edge.capture.tiling import Grid, parse_roi, tile_grid, to_gray
from edge.errors import EdgeError
from edge.ood import is_unknown

log = logging.getLogger(__name__)

#: The stages :class:`StageClock` times, in pipeline order.
STAGES = ("decode", "tiling", "preprocessing", "inference", "events")

#: Batches the prepare stage makes ahead for one frame at most (bounded memory); the tiles beyond
#: are prepared chunk by chunk while the frame is classified.
PREPARE_MAX_BATCHES = 64


class SkipFrame(Exception):
    """A frame that cannot be tiled, decoded, preprocessed or classified: skipped and counted."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def classify_tiles(probs: np.ndarray, classes: List[str], threshold: float):
    """Per tile: (class index, label, confidence, uncertain) from probabilities (N, K)."""
    idx = probs.argmax(axis=1)
    conf = probs[np.arange(len(probs)), idx]
    return [(int(i), classes[int(i)], float(c), bool(c < threshold)) for i, c in zip(idx, conf)]


class StageClock:
    """Seconds spent per stage (each stage is timed by the one thread that runs it)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {k: 0.0 for k in STAGES}
        self._lock = threading.Lock()  # inference is timed by every lane's thread

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def per_frame_ms(self, frames: int) -> Dict[str, Optional[float]]:
        """Mean milliseconds per frame of each stage."""
        return {k: (round(v * 1e3 / frames, 3) if frames else None) for k, v in self.seconds.items()}


class _TimedSource(Source):
    """A source whose ``read`` (the decode) is timed into a :class:`StageClock`."""

    def __init__(self, source: Source, clock: StageClock):
        self._src, self._clock = source, clock

    def __getattr__(self, name):
        return getattr(self._src, name)

    @property
    def live(self):
        return self._src.live

    @property
    def name(self):
        return self._src.name

    @property
    def fps(self):
        return self._src.fps

    def open(self) -> None:
        self._src.open()

    def read(self):
        t0 = time.perf_counter()
        try:
            return self._src.read()
        finally:
            self._clock.add("decode", time.perf_counter() - t0)

    def close(self) -> None:
        self._src.close()


@dataclass
class Work:
    """One frame on its way through the pipeline."""

    frame: Frame
    grid: Grid
    gray: np.ndarray
    batches: List[np.ndarray] = field(default_factory=list)   # <= cfg.batch tiles each (views of one array)
    probs: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None   # open-set score per tile (models with an ood_score output)

    @property
    def boxes(self):
        return self.grid.boxes


class _Stage(threading.Thread):
    """A pipeline thread: ``fn(item)`` for each item of ``inq`` until END; results into ``outq``.

    On an error it records it, asks the daemon to stop, and keeps draining ``inq`` (so no stage
    upstream blocks forever) before passing END on.
    """

    def __init__(self, name: str, inq: "queue.Queue", outq: Optional["queue.Queue"], fn: Callable, on_error):
        super().__init__(name=name, daemon=True)
        self.inq, self.outq, self.fn, self.on_error = inq, outq, fn, on_error
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        while True:
            item = self.inq.get()
            if item is END:
                break
            if self.error is not None:
                continue
            try:
                out = self.fn(item)
                if self.outq is not None and out is not None:
                    self.outq.put(out)
            except BaseException as e:  # surfaced by CaptureDaemon.run
                self.error = e
                self.on_error(e)
        if self.outq is not None:
            self.outq.put(END)


class _Turns:
    """The order the lanes took their frames in, kept when their events are written.

    Frames are taken from the grab queue and numbered in one step (so the numbers follow the source).
    A lane that finishes a frame before an earlier one leaves it here and takes the next frame (it
    does not wait). The lane that completes the earliest frame emits it, and every frame ready after
    it, in order, in its own thread; a lane that finishes while another emits leaves its frame to that
    one. So no emit thread is woken per frame, and two lanes never emit at once.
    """

    def __init__(self):
        self._take = threading.Lock()
        self._hand = threading.Lock()
        self._taken = self._next = 0
        self._ready: Dict[int, Optional["Work"]] = {}
        self._emitting = False

    def take(self, q: "queue.Queue"):
        """``(number, frame)`` of the next frame, ``(None, END)`` at the end (END stays queued for the
        other lanes); raises ``queue.Empty`` after 0.05 s without one."""
        with self._take:
            item = q.get(timeout=0.05)
            if item is END:
                q.put(END)
                return None, END
            n, self._taken = self._taken, self._taken + 1
        return n, item

    def hand_on(self, n: int, work: Optional["Work"], emit: Callable) -> None:
        """Frame ``n`` is done (``work`` None: skipped); ``emit`` every frame that is now next, in order,
        unless another lane is emitting (it will emit this one too)."""
        with self._hand:
            self._ready[n] = work
            if self._emitting:
                return
            self._emitting = True
        try:
            while True:
                with self._hand:
                    if self._next not in self._ready:
                        self._emitting = False
                        return
                    w = self._ready.pop(self._next)
                    self._next += 1
                if w is not None:
                    emit(w)
        except BaseException:
            with self._hand:
                self._emitting = False
            raise


class _StopWatch:
    """The main thread's part of a stop: stop the grabbing, start the deadline, and end the pipeline when
    a live source is blocked in a read (nothing more is coming)."""

    def __init__(self, daemon: "CaptureDaemon", g: Grabber):
        self.d, self.g = daemon, g
        self.stopping = self.unblocked = False

    def tick(self, idle: bool = False) -> None:
        """Called in the main thread's loop; ``idle``: no frame came in the last wait."""
        d, g = self.d, self.g
        if d._stop.is_set() and not self.stopping:
            self.stopping = True
            if d._deadline is None:
                d._deadline = time.monotonic() + float(d.cfg.stop_timeout)
            log.info("stop requested: draining %d queued frame(s)", g.queue.qsize())
            g.stop()
        if not (idle and self.stopping):
            return
        d._past_deadline()
        if not self.unblocked and g.in_read and g.source.live and g.queue.empty():
            # a live source blocked in read (a stalled stream): nothing more is coming, end
            # the pipeline without waiting for the read to return
            log.info("stop: the source is blocked in a read; not waiting for it")
            self.unblocked = True
            try:
                g.queue.put_nowait(END)
            except queue.Full:
                pass


class CaptureDaemon:
    """Runs one capture session.

    Args:
        cfg: The settings.
        source: A ready :class:`Source` (tests, custom cameras); default from ``cfg.source``.
        runner: A runner (not yet active); default ``load_runner(cfg.model, ...)``.
    """

    def __init__(self, cfg: CaptureConfig, source: Optional[Source] = None, runner=None):
        self.cfg = validate(cfg)
        self._source = source
        self._runner = runner
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._deadline: Optional[float] = None
        self.metrics: Optional[Metrics] = None
        self.server: Optional[MetricsServer] = None
        self.preview = None  # edge.capture.preview.Preview with --preview
        self.grabber: Optional[Grabber] = None
        self.writer: Optional[EventWriter] = None
        self.crops: Optional[CropStore] = None
        self._grids: Dict[tuple, Grid] = {}
        self._grid_errors: Dict[tuple, str] = {}
        self._last_skip_warn: Dict[str, float] = {}
        self.last_skip: Optional[str] = None
        self.stages = StageClock()
        self.lanes = 1  # frames classified at once (set from the runner by _bind_model)
        self.elapsed_s = 0.0
        self.cpu_s = 0.0
        self.publisher = None
        # each event carries this run id, so (run, id) is unique across restarts (MQTT consumers dedup on it)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        self.stopped_at_deadline = False
        self._t_expire = time.monotonic()

    def request_stop(self) -> None:
        """Stop grabbing, drain, flush and return (safe to call from a signal handler).

        The frames already read are still classified until ``cfg.stop_timeout`` seconds have
        passed; then the rest is abandoned (counted as ``frames_skipped_total{reason="stopped"}``).
        """
        if not self._stop.is_set():
            self._deadline = time.monotonic() + float(self.cfg.stop_timeout)
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def abort(self) -> None:
        """Stop at once: the frame in progress ends after its current chunk, queued frames are abandoned."""
        self._stop.set()
        self._abort.set()

    def _past_deadline(self) -> bool:
        if not self._abort.is_set() and self._deadline is not None and time.monotonic() > self._deadline:
            log.warning("stop deadline of %g s passed: abandoning the queued work", self.cfg.stop_timeout)
            self._abort.set()
        return self._abort.is_set()

    # -- setup ----------------------------------------------------------------------
    def _make_runner(self):
        from edge.runtime import load_runner

        opts: Dict[str, Any] = {}
        from edge.runtime import backend_of

        b = backend_of(self.cfg.model) if self.cfg.backend == "auto" else self.cfg.backend
        if b == "onnxruntime":
            # intra-op threads that spin on after a run would take a core from the lanes, grab and emit
            opts["spin_after_run"] = False
            if self.cfg.threads:
                opts["threads"] = self.cfg.threads
        if b == "tensorrt":
            opts.update(cuda_backend=self.cfg.cuda_backend, cuda_graph=self.cfg.cuda_graph,
                        zero_copy=self.cfg.zero_copy)
        return load_runner(self.cfg.model, backend=self.cfg.backend, **opts)

    def _make_source(self) -> Source:
        spec = parse_source(self.cfg.source, self.cfg.width, self.cfg.height, self.cfg.fps,
                            hw_decode=self.cfg.hw_decode)
        return open_source(spec, fps=self.cfg.fps if spec.kind in ("images", "raw") else None,
                           open_timeout=self.cfg.open_timeout, read_timeout=self.cfg.read_timeout)

    def _tile_size(self) -> tuple:
        """(w, h) of a tile: --tile, else what the artifact takes (its tile size, or its input size)."""
        hi = self.runner.host_input
        if self.runner.input_form == "uint8_tiles":
            if self.cfg.tile and (self.cfg.tile, self.cfg.tile) != (hi.width, hi.height):
                raise EdgeError(f"--tile {self.cfg.tile}: {self.cfg.model} takes {hi.width}x{hi.height} uint8 tiles "
                                "(preprocessing in the graph); use that tile size or a float-input artifact")
        return (self.cfg.tile, self.cfg.tile) if self.cfg.tile else (hi.width, hi.height)

    def grid(self, width: int, height: int) -> Grid:
        """The tile grid of a ``width`` x ``height`` frame (cached per size); :class:`SkipFrame` when
        such a frame cannot be tiled."""
        key = (width, height)
        if key in self._grid_errors:
            raise SkipFrame("too_small", self._grid_errors[key])
        if key not in self._grids:
            try:
                self._grids[key] = Grid(tile_grid(width, height, self._tile_size(), self.cfg.stride,
                                                  parse_roi(self.cfg.roi)))
            except EdgeError as e:
                if len(self._grid_errors) < 64:
                    self._grid_errors[key] = str(e)
                raise SkipFrame("too_small", str(e)) from None
        return self._grids[key]

    def _count(self, name: str, n: int = 1, labels=None) -> None:
        self.metrics.inc(name, n, labels)

    # -- the pipeline -----------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        runner = self._runner if self._runner is not None else self._make_runner()
        source = self._source if self._source is not None else self._make_source()
        parse_roi(cfg.roi)  # validate before anything starts
        with runner:
            self._bind_model(runner)
            m = self._make_metrics()
            writer = self._make_writer(m)
            stages: List[_Stage] = []
            try:
                self._start_services(m)
                stages = self._run_pipeline(source, m)
            finally:
                m.running = False
                writer.close()
                self._stop_services()
        self._raise_failures(stages)
        return self.summary()

    def _bind_model(self, runner) -> None:
        """Take the runner's preprocessing, classes and open-set threshold; refuse settings it cannot take."""
        cfg = self.cfg
        self.runner = runner
        self._prep = runner.preprocess
        self.classes = runner.classes
        from edge.ood import score_of

        # open-set threshold of the model (python -m train.ood): tiles above it are labelled "unknown"
        self.ood = score_of(runner.meta)
        if cfg.tile or runner.input_form == "uint8_tiles":
            self._tile_size()  # a tile size the artifact cannot take: refused before any frame
        self.lanes = cfg.lanes or runner.lanes
        if self.lanes > runner.lanes:
            raise EdgeError(f"--lanes {cfg.lanes}: the {runner.backend} runner of {runner.artifact.name} classifies at "
                            f"most {runner.lanes} batch(es) at once here (ONNX Runtime on the CPU with --threads 0 has "
                            "one lane per core)")
        unknown_ok = [c for c in cfg.ok_classes if c not in self.classes]
        if unknown_ok:
            raise EdgeError(f"--ok-classes {', '.join(unknown_ok)} not among the model's classes {self.classes}")

    def _make_metrics(self) -> Metrics:
        """The run's :class:`Metrics`, with the crops store's gauge and health check when crops are saved."""
        cfg = self.cfg
        self.metrics = m = Metrics(self.classes)
        m.stale_after = cfg.stale_after
        if cfg.save_crops:
            try:
                self.crops = CropStore(cfg.save_crops, max_bytes=int(cfg.crops_max_mb * (1 << 20)),
                                       max_age_s=cfg.crops_max_age * 3600 if cfg.crops_max_age else None,
                                       per_minute=cfg.crops_per_minute, count=self._count)
            except OSError as e:
                raise EdgeError(f"cannot use the crops folder {cfg.save_crops}: {e.strerror or e}") from None
            m.add_gauge("crops_bytes", "Bytes of crops on disk (within --crops-max-mb)",
                        fn=lambda: self.crops.bytes)
            m.add_health_check("crops", lambda: self.crops.error)
        return m

    def _make_writer(self, m: Metrics) -> EventWriter:
        """The events file writer, counting into ``m``."""
        cfg = self.cfg
        writer = EventWriter(cfg.events, int(cfg.rotate_mb * (1 << 20)), cfg.rotate_keep, cfg.flush_interval,
                             max_pending=cfg.retry_events, on_written=lambda n: m.inc("events", n),
                             on_dropped=lambda reason, n: m.inc("events_dropped", n, {"reason": reason}),
                             on_error=lambda: m.inc("event_write_errors"))
        self.writer = writer
        m.add_gauge("events_pending", "Events in memory waiting to be written (retried while the disk refuses)",
                    fn=lambda: writer.pending)
        m.add_health_check("events", lambda: writer.error)
        return writer

    def _start_services(self, m: Metrics) -> None:
        """The MQTT publisher, the metrics server and the preview, as configured."""
        cfg = self.cfg
        if cfg.mqtt:  # the publisher tails the events file in its own thread
            from edge.capture.mqtt import publisher_for

            self.publisher = publisher_for(cfg, self.runner, self.run_id, self.summary)
            self.publisher.attach(m)
            self.publisher.start()
        if cfg.metrics:
            self.server = MetricsServer(m, cfg.metrics)
            if cfg.preview:
                from edge.capture.preview import Preview

                self.preview = Preview(self.classes, m, model=str(cfg.model), threshold=cfg.threshold)
                for path, fn in self.preview.routes().items():
                    self.server.add_route(path, fn)
            log.info("metrics on %s/metrics", self.server.url)

    def _stop_services(self) -> None:
        if self.publisher is not None:
            self.publisher.stop(self.cfg.mqtt_drain)
        if self.server is not None:
            self.server.close()
        if self.preview is not None:
            self.preview.close()

    def _run_pipeline(self, source: Source, m: Metrics) -> List[threading.Thread]:
        """Grab, prepare, classify and emit until the source ends or the daemon stops; the stages it ran."""
        cfg = self.cfg
        self.grabber = g = Grabber(_TimedSource(source, self.stages), m, cfg.queue, realtime=cfg.realtime,
                                   reconnect_initial=cfg.reconnect_initial, reconnect_max=cfg.reconnect_max,
                                   max_reconnects=cfg.max_reconnects, max_frames=cfg.max_frames)
        stages: List[threading.Thread] = []
        m.running = True
        t0, c0 = time.perf_counter(), time.process_time()
        g.start()
        if self.lanes > 1:
            self._run_lanes(g)
        else:
            stages = self._run_split(g)
        self.elapsed_s = time.perf_counter() - t0
        self.cpu_s = time.process_time() - c0  # CPU seconds of the whole process (all threads)
        for st in stages:  # emit is joined already; prepare passed END on and is ending
            st.join(5.0)
        if self._abort.is_set():
            self.stopped_at_deadline = True
        g.join(0.2 if g.in_read else 5.0)
        return stages

    def _run_split(self, g: Grabber) -> List[threading.Thread]:
        """One frame at a time: prepare and emit threads around the main thread's classification."""
        cfg = self.cfg
        result_q: "queue.Queue" = queue.Queue(maxsize=max(4, cfg.queue))
        work_q: "queue.Queue" = queue.Queue(maxsize=2)
        emit = _Stage("emit", result_q, None, self.emit, self._stage_failed)
        prep = _Stage("prepare", g.queue, work_q, self._prepare_item, self._stage_failed)
        emit.start()
        prep.start()
        try:
            self._classify_loop(g, work_q, result_q)
        finally:
            result_q.put(END)
            emit.join()
        return [prep, emit]   # in pipeline order: the first failure upstream is the one reported

    def _run_lanes(self, g: Grabber) -> None:
        """One thread per runner lane takes, prepares, classifies and emits frames; the main thread watches the stop."""
        turns, errors, emit_failed = _Turns(), [], []
        lanes = [threading.Thread(target=self._lane, args=(g, turns, errors, emit_failed), name=f"lane-{k}",
                                  daemon=True) for k in range(self.lanes)]
        for t in lanes:
            t.start()
        watch = _StopWatch(self, g)
        while True:
            alive = [t for t in lanes if t.is_alive()]
            if not alive:
                break
            watch.tick(idle=True)
            alive[0].join(0.05)
        if errors:
            raise errors[0]

    def _lane(self, g: Grabber, turns: _Turns, errors: list, emit_failed: list) -> None:
        """A lane's thread: the next frame of the grab queue, prepared and classified here, emitted in order."""
        def emit(work: Work) -> None:
            if emit_failed:  # after an emit failed nothing more is written (the frames still go through, to END)
                return
            try:
                self.emit(work)
            except BaseException as e:
                emit_failed.append(e)
                errors.append(e if isinstance(e, EdgeError) else EdgeError(f"emit stage failed: {e}"))
                self._stage_failed(e)

        while True:
            if self._stop.is_set():
                g.stop()  # at once, not at the main thread's next tick: the frames already read still go through
            try:
                n, frame = turns.take(g.queue)
            except queue.Empty:
                continue
            if frame is END:
                return
            work = None
            try:
                work = self._lane_work(frame)
            except BaseException as e:  # not a frame's fault (those are SkipFrame): stop, surface it
                errors.append(e)
                self._stop.set()
                self._abort.set()
                g.stop()
            turns.hand_on(n, work, emit)

    def _lane_work(self, frame: Frame) -> Optional[Work]:
        """Prepare and classify one frame on a lane; None when it is skipped (counted)."""
        work = self._prepare_item(frame)
        if work is None:
            return None
        if self._stop.is_set() and self._past_deadline():
            self._skip(frame, "stopped", "stop deadline passed before it was classified")
            return None
        try:
            return self.classify(work, lane=True)
        except SkipFrame as e:
            self._skip(frame, e.reason, str(e))
            return None

    def _raise_failures(self, stages: List[_Stage]) -> None:
        """A stage's, the source's or every frame's failure as the run's error."""
        for st in stages:
            if st.error is not None:
                raise st.error if isinstance(st.error, EdgeError) else EdgeError(f"{st.name} stage failed: {st.error}")
        if self.grabber is not None and self.grabber.error is not None and not self.stopped_at_deadline:
            err = self.grabber.error
            raise err if isinstance(err, EdgeError) else EdgeError(f"source failed: {err}")
        if (self.metrics.get("frames_processed") == 0 and self.metrics.get("frames_skipped") > 0
                and self.last_skip is not None and not self.stopped_at_deadline):
            raise EdgeError(f"no frame could be processed ({self.metrics.get('frames_skipped')} skipped): "
                            f"{self.last_skip}")

    def _stage_failed(self, err: BaseException) -> None:
        log.error("pipeline stage failed: %s", err)
        self._stop.set()

    def _classify_loop(self, g: Grabber, work_q: "queue.Queue", result_q: "queue.Queue") -> None:
        """The main thread: classify each prepared frame and hand it to the emit stage.

        After a stop it goes on until END (every frame read is classified) unless the stop
        deadline passes: then the frames still coming are counted as skipped, not classified.
        """
        watch = _StopWatch(self, g)
        while True:
            watch.tick()
            try:
                work = work_q.get(timeout=0.05)
            except queue.Empty:
                watch.tick(idle=True)
                continue
            if work is END:
                return
            self.metrics.queue_depth = g.queue.qsize()
            if watch.stopping and self._past_deadline():
                self._skip(work.frame, "stopped", "stop deadline passed before it was classified")
                continue
            try:
                self.classify(work)
            except SkipFrame as e:
                self._skip(work.frame, e.reason, str(e))
                continue
            except BaseException:
                self._stop.set()   # drain the pipeline (so no thread blocks), then raise
                self._abort.set()
                g.stop()
                self._drain(work_q)
                raise
            result_q.put(work)

    @staticmethod
    def _drain(q: "queue.Queue") -> None:
        while True:
            if q.get() is END:
                return

    def _prepare_item(self, frame) -> Optional[Work]:
        self.metrics.frame_seen()
        if self._abort.is_set():
            self._skip(frame, "stopped", "stop deadline passed before it was prepared")
            return None
        try:
            return self.prepare(frame)
        except SkipFrame as e:
            self._skip(frame, e.reason, str(e))
            return None

    def _skip(self, frame: Frame, reason: str, message: str) -> None:
        name = getattr(frame, "name", None) or f"frame {frame.index}"
        self.metrics.inc("frames_skipped", 1, {"reason": reason})
        self.last_skip = f"{name}: {message}"
        now = time.monotonic()
        if reason != "stopped" and now - self._last_skip_warn.get(reason, -1e9) >= 10.0:
            self._last_skip_warn[reason] = now
            log.warning("skipping %s (%s): %s; %d frame(s) skipped so far", name, reason,
                        " ".join(str(message).split()), self.metrics.get("frames_skipped"))

    # -- per frame: prepare → classify → emit ------------------------------------------------
    def prepare(self, frame: Frame) -> Work:
        """Gray frame → tiles (strided views) → the frame's batches in the model's input form.

        Raises:
            SkipFrame: the frame cannot be tiled or preprocessed.
        """
        t0 = time.perf_counter()
        try:
            gray = to_gray(frame.image)
            if gray.ndim != 2 or gray.size == 0:
                raise ValueError(f"frame of shape {tuple(frame.image.shape)} is not an image")
        except Exception as e:  # OpenCV and numpy raise their own types for malformed frames
            raise SkipFrame("bad_image", _why(e)) from None
        grid = self.grid(gray.shape[1], gray.shape[0])
        t1 = time.perf_counter()
        b = self.cfg.batch
        ahead = min(len(grid), b * PREPARE_MAX_BATCHES)
        batch = self.make_batch(grid, gray, 0, ahead)
        work = Work(frame, grid, gray, [batch[a:a + b] for a in range(0, ahead, b)])
        t2 = time.perf_counter()
        self.stages.add("tiling", t1 - t0)
        self.stages.add("preprocessing", t2 - t1)
        return work

    def make_batch(self, grid: Grid, gray: np.ndarray, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Tiles ``start:stop`` of the frame in one array, as the runner takes them.

        The whole frame of a uint8-tile artifact is one copy (:meth:`Grid.pack`); otherwise the
        host preprocessing writes the float batch from the tile views.
        """
        stop = len(grid) if stop is None else stop
        hi = self.runner.host_input
        try:
            if (start, stop) == (0, len(grid)) and self.runner.input_form == "uint8_tiles" \
                    and (grid.tile_h, grid.tile_w) == (hi.height, hi.width):
                return grid.pack(gray)
            return hi(grid.tiles(gray)[start:stop])
        except Exception as e:
            raise SkipFrame("preprocess", _why(e)) from None

    def _chunks(self, work: Work):
        """The frame's batches: those prepared ahead, then the rest made one by one; stops past the deadline."""
        b = self.cfg.batch
        for n, a in enumerate(range(0, len(work.grid), b)):
            if n and self._past_deadline():
                raise SkipFrame("stopped", f"stopped after {a} of {len(work.grid)} tiles")
            if n < len(work.batches):
                yield work.batches[n]
            else:
                t0 = time.perf_counter()
                chunk = self.make_batch(work.grid, work.gray, a, min(a + b, len(work.grid)))
                self.stages.add("preprocessing", time.perf_counter() - t0)
                yield chunk

    def classify(self, work: Work, lane: bool = False) -> Work:
        """Probabilities (N, K) of the frame's tiles, chunk by chunk through the runner's streamed path
        (``infer_batches``: the TensorRT runner double-buffers it), or with ``lane`` on one runner lane
        (``infer_lane``, called from one of the lanes' threads).

        Raises:
            SkipFrame: inference failed, or the stop deadline passed between chunks.
        """
        t0 = time.perf_counter()
        parts, scores = [], []
        try:
            if lane:
                for chunk in self._chunks(work):
                    p, sc = self.runner.infer_lane(chunk)
                    parts.append(p)
                    if sc is not None:
                        scores.append(sc)
            else:
                for p in self.runner.infer_batches(self._chunks(work)):
                    parts.append(p)
                    sc = getattr(self.runner, "last_score", None)  # the score of the batch just yielded, if any
                    if sc is not None and len(sc) == len(p):
                        scores.append(sc)
        except SkipFrame:
            raise
        except Exception as e:
            raise SkipFrame("inference", _why(e)) from None
        finally:
            self.stages.add("inference", time.perf_counter() - t0)
        work.probs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        work.scores = np.concatenate(scores) if scores and len(scores) == len(parts) else None
        return work

    def emit(self, work: Work) -> None:
        """Labels, metrics, events and crops of one classified frame (off the classification path)."""
        t0 = time.perf_counter()
        cfg, m, frame = self.cfg, self.metrics, work.frame
        results = classify_tiles(work.probs, self.classes, cfg.threshold)
        thr = (getattr(self, "ood", None) or {}).get("threshold") if work.scores is not None else None
        unknown = is_unknown(work.scores, thr) if thr is not None else np.zeros(len(results), bool)
        counts: Dict[str, int] = {}
        events, tiles, n_unc = [], None, 0
        for k, (ci, label, conf, unc) in enumerate(results):
            top = label
            if unknown[k]:  # none of the trained classes: not a class, not "uncertain" either
                label, unc = "unknown", False
            counts[label] = counts.get(label, 0) + 1
            n_unc += unc
            defect = label not in cfg.ok_classes
            if not (cfg.log_all or defect):
                continue
            x, y, w, h = work.boxes[k]
            eid = f"{frame.index:08d}-{k:04d}"
            ev = {"id": eid, "run": self.run_id, "frame": frame.index, "ts": round(frame.ts, 6), "tile": [x, y, w, h],
                  "label": label, "confidence": round(conf, 6), "uncertain": unc}
            if thr is not None:
                ev["ood_score"] = round(float(work.scores[k]), 6)
                if unknown[k]:
                    ev["top_class"] = top
            if cfg.probs:
                ev["probs"] = [round(float(v), 6) for v in work.probs[k]]
            if self.crops is not None and defect:
                tiles = tiles if tiles is not None else work.grid.tiles(work.gray)
                name = f"{self.run_id}_{eid}_{label}"   # the run id: a restart's frame 0 is not the last run's
                if self.crops.save(name, label, tiles[k]):
                    ev["crop"] = f"{name}.png"   # named in the event, so the plant report can point to it
            events.append(ev)
        self.writer.write_many(events)
        self._count_frame(counts, n_unc, len(results))
        if self.preview is not None:  # references only: drawn and encoded when a client asks
            self.preview.submit(frame.index, frame.image, work.boxes, [work.probs], None if thr is None else unknown)
        m.observe_latency(time.monotonic() - frame.t_read)
        if self.crops is not None and time.monotonic() - self._t_expire > 60:
            self._t_expire = time.monotonic()
            self.crops.expire()
        self.stages.add("events", time.perf_counter() - t0)

    def _count_frame(self, counts: Dict[str, int], uncertain: int, tiles: int) -> None:
        """A frame's counters, once per label rather than once per tile."""
        m = self.metrics
        for label, n in counts.items():
            m.count_class(label, n)
        if counts.get("unknown"):
            m.inc("unknown", counts["unknown"])
        if uncertain:
            m.inc("uncertain", uncertain)
        m.inc("tiles", tiles)
        m.inc("frames_processed")

    def process(self, frame: Frame) -> None:
        """Prepare, classify and emit one frame synchronously (tools and tests; the daemon pipelines them).

        A frame that cannot be tiled, preprocessed or classified is skipped and counted.
        """
        try:
            work = self.classify(self.prepare(frame))
        except SkipFrame as e:
            self._skip(frame, e.reason, str(e))
            return
        self.emit(work)

    def summary(self) -> Dict[str, Any]:
        s = self.metrics.summary() if self.metrics else {}
        s["elapsed_s"] = round(self.elapsed_s, 3)
        s["cpu_s"] = round(self.cpu_s, 3)
        s["tiles_per_s"] = round(s.get("tiles", 0) / self.elapsed_s, 2) if self.elapsed_s else None
        s["stages_ms_per_frame"] = self.stages.per_frame_ms(s.get("frames_processed", 0))
        s["lanes"] = self.lanes
        s["events_file"] = str(self.cfg.events)
        s["events_pending"] = self.writer.pending if self.writer is not None else 0
        s["stopped_at_deadline"] = self.stopped_at_deadline
        s["run"] = self.run_id
        if self.publisher is not None:
            s["mqtt"] = self.publisher.stats()
        return s


def summary_line(s: Dict[str, Any]) -> str:
    """The one-line final summary."""
    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    return (f"frames read {s.get('frames_read', 0)}, processed {s.get('frames_processed', 0)}, "
            f"dropped {s.get('frames_dropped', 0)}, corrupt {s.get('frames_corrupt', 0)}, "
            f"skipped {s.get('frames_skipped', 0)}, tiles {s.get('tiles', 0)}, "
            f"events {s.get('events', 0)} written {(s.get('events_dropped_by_reason') or {}).get('disk', 0)} lost "
            f"{(s.get('events_dropped_by_reason') or {}).get('rotation', 0)} rotated away, uncertain {s.get('uncertain', 0)}, unknown {s.get('unknown', 0)}, reconnects {s.get('reconnects', 0)}, "
            f"latency mean {ms(s.get('latency_mean_ms'))} p99 {ms(s.get('latency_p99_ms'))}, "
            f"{s.get('tiles_per_s') or 0:.1f} tiles/s")
