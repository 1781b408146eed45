"""The capture daemon: frames → tiles → the model's own preprocessing → runner → events.

The main thread classifies; a grab thread (:class:`edge.capture.sources.Grabber`) reads the
source. ``request_stop()`` (called from the SIGTERM/SIGINT handler) stops the grabbing; the
frames already queued are still classified, the events flushed, and :meth:`CaptureDaemon.run`
returns the summary.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

from edge.capture.config import CaptureConfig, validate
from edge.capture.crops import CropStore
from edge.capture.events import EventWriter
from edge.capture.metrics import Metrics, MetricsServer
from edge.capture.sources import END, Frame, Grabber, Source, open_source, parse_source
from edge.capture.tiling import cut, parse_roi, tile_grid, to_gray
from edge.errors import EdgeError

log = logging.getLogger(__name__)


def classify_tiles(probs: np.ndarray, classes: List[str], threshold: float):
    """Per tile: (class index, label, confidence, uncertain) from probabilities (N, K)."""
    idx = probs.argmax(axis=1)
    conf = probs[np.arange(len(probs)), idx]
    return [(int(i), classes[int(i)], float(c), bool(c < threshold)) for i, c in zip(idx, conf)]


#: Preprocessed batches the grab thread prepares ahead for one frame at most (bounded memory);
#: the tiles beyond are preprocessed chunk by chunk while the frame is processed.
PREPARE_MAX_BATCHES = 64


class SkipFrame(Exception):
    """A frame that cannot be tiled, decoded, preprocessed or classified: skipped and counted."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CaptureDaemon:
    """Runs one capture session.

    Args:
        cfg: The settings (checked against :data:`edge.capture.config.SETTINGS`).
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
        self.grabber: Optional[Grabber] = None
        self.writer: Optional[EventWriter] = None
        self.crops: Optional[CropStore] = None
        self._grids: Dict[tuple, list] = {}
        self._grid_errors: Dict[tuple, str] = {}
        self._last_skip_warn: Dict[str, float] = {}
        self.last_skip: Optional[str] = None
        self.elapsed_s = 0.0
        self.publisher = None
        # each event carries this run id, so (run, id) is unique across restarts (MQTT consumers dedup on it)
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        self.stopped_at_deadline = False

    def request_stop(self) -> None:
        """Stop grabbing, drain, flush and return (safe to call from a signal handler).

        The queued frames are still classified until ``cfg.stop_timeout`` seconds have passed;
        then the rest is abandoned (counted as ``frames_skipped_total{reason="stopped"}``).
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
        if b == "onnxruntime" and self.cfg.threads:
            opts["threads"] = self.cfg.threads
        if b == "tensorrt":
            opts.update(cuda_backend=self.cfg.cuda_backend, cuda_graph=self.cfg.cuda_graph,
                        zero_copy=self.cfg.zero_copy)
        return load_runner(self.cfg.model, backend=self.cfg.backend, **opts)

    def _make_source(self) -> Source:
        spec = parse_source(self.cfg.source, self.cfg.width, self.cfg.height, self.cfg.fps)
        return open_source(spec, fps=self.cfg.fps if spec.kind == "images" else None,
                           open_timeout=self.cfg.open_timeout, read_timeout=self.cfg.read_timeout)

    def grid(self, width: int, height: int):
        """The tile boxes of a frame size; :class:`SkipFrame` when such a frame cannot be tiled."""
        key = (width, height)
        if key in self._grid_errors:
            raise SkipFrame("too_small", self._grid_errors[key])
        if key not in self._grids:
            tile = self.cfg.tile or (self._prep.width, self._prep.height)
            try:
                self._grids[key] = tile_grid(width, height, tile, self.cfg.stride, parse_roi(self.cfg.roi))
            except EdgeError as e:
                if len(self._grid_errors) < 64:
                    self._grid_errors[key] = str(e)
                raise SkipFrame("too_small", str(e)) from None
        return self._grids[key]

    def _count(self, name: str, n: int = 1, labels=None) -> None:
        self.metrics.inc(name, n, labels)

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        runner = self._runner if self._runner is not None else self._make_runner()
        source = self._source if self._source is not None else self._make_source()
        parse_roi(cfg.roi)  # validate before anything starts
        with runner:
            self.runner = runner
            self._prep = runner.preprocess
            self.classes = runner.classes
            unknown_ok = [c for c in cfg.ok_classes if c not in self.classes]
            if unknown_ok:
                raise EdgeError(f"--ok-classes {', '.join(unknown_ok)} not among the model's classes {self.classes}")
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
            writer = EventWriter(cfg.events, int(cfg.rotate_mb * (1 << 20)), cfg.rotate_keep, cfg.flush_interval,
                                 max_pending=cfg.retry_events, on_written=lambda n: m.inc("events", n),
                                 on_dropped=lambda reason, n: m.inc("events_dropped", n, {"reason": reason}))
            self.writer = writer
            m.add_gauge("events_pending", "Events in memory waiting to be written (retried while the disk refuses)",
                        fn=lambda: writer.pending)
            m.add_health_check("events", lambda: writer.error)
            try:
                if cfg.mqtt:  # the publisher tails the events file in its own thread
                    from edge.capture.mqtt import publisher_for

                    self.publisher = publisher_for(cfg, runner, self.run_id, self.summary)
                    self.publisher.attach(m)
                    self.publisher.start()
                if cfg.metrics:
                    self.server = MetricsServer(m, cfg.metrics)
                    log.info("metrics on %s/metrics", self.server.url)
                self.grabber = g = Grabber(source, m, cfg.queue, realtime=cfg.realtime,
                                           reconnect_initial=cfg.reconnect_initial, reconnect_max=cfg.reconnect_max,
                                           max_reconnects=cfg.max_reconnects, max_frames=cfg.max_frames,
                                           prepare=self.prepare)
                m.running = True
                t0 = time.perf_counter()
                g.start()
                stopping = False
                t_expire = time.monotonic()
                while True:
                    if self._stop.is_set() and not stopping:
                        stopping = True
                        if self._deadline is None:
                            self._deadline = time.monotonic() + float(cfg.stop_timeout)
                        log.info("stop requested: draining %d queued frame(s)", g.queue.qsize())
                        g.stop()
                    if stopping and self._past_deadline():
                        break
                    try:
                        item = g.queue.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    m.queue_depth = g.queue.qsize()
                    if item is END:
                        break
                    self.process(item)
                    if self.crops is not None and time.monotonic() - t_expire > 60:
                        t_expire = time.monotonic()
                        self.crops.expire()
                self.elapsed_s = time.perf_counter() - t0
                if self._abort.is_set():
                    self.stopped_at_deadline = True
                    self._abandon_queue(g)
                else:
                    g.join(5.0)
            finally:
                m.running = False
                writer.close()
                if self.publisher is not None:
                    self.publisher.stop(cfg.mqtt_drain)
                if self.server is not None:
                    self.server.close()
        if self.grabber is not None and self.grabber.error is not None and not self.stopped_at_deadline:
            err = self.grabber.error
            raise err if isinstance(err, EdgeError) else EdgeError(f"source failed: {err}")
        if (self.metrics.get("frames_processed") == 0 and self.metrics.get("frames_skipped") > 0
                and self.last_skip is not None and not self.stopped_at_deadline):
            raise EdgeError(f"no frame could be processed ({self.metrics.get('frames_skipped')} skipped): "
                            f"{self.last_skip}")
        return self.summary()

    def _abandon_queue(self, g: Grabber) -> None:
        """After the deadline: count the frames still queued as skipped and let the grab thread go."""
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                item = g.queue.get(timeout=0.05)
            except queue.Empty:
                if not g._thread.is_alive():
                    break
                continue
            if item is END:
                break
            self.metrics.inc("frames_skipped", 1, {"reason": "stopped"})

    def _skip(self, frame: Frame, reason: str, message: str) -> None:
        name = getattr(frame, "name", None) or f"frame {frame.index}"
        self.metrics.inc("frames_skipped", 1, {"reason": reason})
        self.last_skip = f"{name}: {message}"
        now = time.monotonic()
        if reason != "stopped" and now - self._last_skip_warn.get(reason, -1e9) >= 10.0:
            self._last_skip_warn[reason] = now
            log.warning("skipping %s (%s): %s; %d frame(s) skipped so far", name, reason,
                        " ".join(str(message).split()), self.metrics.get("frames_skipped"))

    def _tiles(self, image: np.ndarray):
        """Gray frame and its tile boxes, or :class:`SkipFrame`."""
        try:
            gray = to_gray(image)
            if gray.ndim != 2 or gray.size == 0:
                raise ValueError(f"frame of shape {tuple(image.shape)} is not an image")
        except SkipFrame:
            raise
        except Exception as e:  # OpenCV and numpy raise their own types for malformed frames
            raise SkipFrame("bad_image", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        return gray, self.grid(gray.shape[1], gray.shape[0])

    def _preprocess(self, tiles) -> np.ndarray:
        try:
            return self._prep(tiles)
        except Exception as e:
            raise SkipFrame("preprocess", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    def prepare(self, image: np.ndarray):
        """Gray frame → (boxes, tiles, preprocessed batches): the CPU work before inference.

        Runs in the grab thread for file sources (overlapping the current frame's inference) and
        in the main loop for live sources. At most :data:`PREPARE_MAX_BATCHES` batches are made
        ahead; the rest are made chunk by chunk in :meth:`process`. A frame that cannot be tiled
        or preprocessed gives a :class:`SkipFrame` (returned, not raised: the grab thread goes on).
        """
        try:
            gray, boxes = self._tiles(image)
            tiles = cut(gray, boxes)
            b = self.cfg.batch
            ahead = min(len(tiles), b * PREPARE_MAX_BATCHES)
            return boxes, tiles, [self._preprocess(tiles[a:a + b]) for a in range(0, ahead, b)]
        except SkipFrame as e:
            return e

    def process(self, frame: Frame) -> None:
        """Tile, classify and log one frame, chunk by chunk (``cfg.batch`` tiles each).

        A frame that cannot be tiled, preprocessed or classified is skipped and counted; a stop
        past its deadline ends the frame after the current chunk.
        """
        cfg, m = self.cfg, self.metrics
        m.frame_seen()
        prepared = frame.prepared if frame.prepared is not None else self.prepare(frame.image)
        if isinstance(prepared, SkipFrame):
            self._skip(frame, prepared.reason, str(prepared))
            return
        boxes, tiles, batches = prepared
        b = cfg.batch
        for n_chunk, a in enumerate(range(0, len(tiles), b)):
            if n_chunk and self._past_deadline():
                self._skip(frame, "stopped", f"stopped after {a} of {len(tiles)} tiles")
                return
            try:
                batch = batches[n_chunk] if n_chunk < len(batches) else self._preprocess(tiles[a:a + b])
                try:
                    probs = self.runner.infer(batch)
                except Exception as e:
                    raise SkipFrame("inference", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
            except SkipFrame as e:
                self._skip(frame, e.reason, f"{e} (after {a} of {len(tiles)} tiles)")
                return
            self._log(frame, a, boxes, tiles, probs)
        m.inc("frames_processed")
        m.observe_latency(time.monotonic() - frame.t_read)

    def _log(self, frame: Frame, a: int, boxes, tiles, probs: np.ndarray) -> None:
        """Count and log the classified tiles ``a .. a + len(probs)`` of a frame."""
        cfg, m = self.cfg, self.metrics
        for j, ((ci, label, conf, unc), p) in enumerate(zip(classify_tiles(probs, self.classes, cfg.threshold),
                                                            probs)):
            k = a + j
            m.count_class(label)
            if unc:
                m.inc("uncertain")
            defect = label not in cfg.ok_classes
            if not (cfg.log_all or defect):
                continue
            x, y, w, h = boxes[k]
            eid = f"{frame.index:08d}-{k:04d}"
            ev = {"id": eid, "run": self.run_id, "frame": frame.index, "ts": round(frame.ts, 6), "tile": [x, y, w, h],
                  "label": label, "confidence": round(conf, 6), "uncertain": unc}
            if cfg.probs:
                ev["probs"] = [round(float(v), 6) for v in p]
            self.writer.write(ev)
            if self.crops is not None and defect:
                self.crops.save(f"{eid}_{label}", label, tiles[k])
        m.inc("tiles", len(probs))

    def summary(self) -> Dict[str, Any]:
        s = self.metrics.summary() if self.metrics else {}
        s["elapsed_s"] = round(self.elapsed_s, 3)
        s["tiles_per_s"] = round(s.get("tiles", 0) / self.elapsed_s, 2) if self.elapsed_s else None
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
            f"events {s.get('events', 0)} written {s.get('events_dropped', 0)} dropped, uncertain {s.get('uncertain', 0)}, reconnects {s.get('reconnects', 0)}, "
            f"latency mean {ms(s.get('latency_mean_ms'))} p99 {ms(s.get('latency_p99_ms'))}, "
            f"{s.get('tiles_per_s') or 0:.1f} tiles/s")
