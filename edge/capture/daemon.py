"""The capture daemon: frames → tiles → the model's own preprocessing → runner → events.

The main thread classifies; a grab thread (:class:`edge.capture.sources.Grabber`) reads the
source. ``request_stop()`` (called from the SIGTERM/SIGINT handler) stops the grabbing; the
frames already queued are still classified, the events flushed, and :meth:`CaptureDaemon.run`
returns the summary.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge.capture.config import CaptureConfig
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


class CaptureDaemon:
    """Runs one capture session.

    Args:
        cfg: The settings.
        source: A ready :class:`Source` (tests, custom cameras); default from ``cfg.source``.
        runner: A runner (not yet active); default ``load_runner(cfg.model, ...)``.
    """

    def __init__(self, cfg: CaptureConfig, source: Optional[Source] = None, runner=None):
        self.cfg = cfg
        self._source = source
        self._runner = runner
        self._stop = threading.Event()
        self.metrics: Optional[Metrics] = None
        self.server: Optional[MetricsServer] = None
        self.grabber: Optional[Grabber] = None
        self._grids: Dict[tuple, list] = {}
        self.elapsed_s = 0.0

    def request_stop(self) -> None:
        """Stop grabbing, drain, flush and return (safe to call from a signal handler)."""
        self._stop.set()

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
        return open_source(spec, fps=self.cfg.fps if spec.kind == "images" else None)

    def grid(self, width: int, height: int):
        key = (width, height)
        if key not in self._grids:
            tile = self.cfg.tile or (self._prep.width, self._prep.height)
            self._grids[key] = tile_grid(width, height, tile, self.cfg.stride, parse_roi(self.cfg.roi))
        return self._grids[key]

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        runner = self._runner if self._runner is not None else self._make_runner()
        source = self._source if self._source is not None else self._make_source()
        parse_roi(cfg.roi)  # validate before anything starts
        if cfg.save_crops:
            Path(cfg.save_crops).mkdir(parents=True, exist_ok=True)
        with runner:
            self.runner = runner
            self._prep = runner.preprocess
            self.classes = runner.classes
            unknown_ok = [c for c in cfg.ok_classes if c not in self.classes]
            if unknown_ok:
                raise EdgeError(f"--ok-classes {', '.join(unknown_ok)} not among the model's classes {self.classes}")
            self.metrics = m = Metrics(self.classes)
            writer = EventWriter(cfg.events, int(cfg.rotate_mb * (1 << 20)), cfg.rotate_keep, cfg.flush_interval)
            self.writer = writer
            try:
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
                while True:
                    if self._stop.is_set() and not stopping:
                        stopping = True
                        log.info("stop requested: draining %d queued frame(s)", g.queue.qsize())
                        g.stop()
                    try:
                        item = g.queue.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    m.queue_depth = g.queue.qsize()
                    if item is END:
                        break
                    self.process(item)
                self.elapsed_s = time.perf_counter() - t0
                g.join(5.0)
            finally:
                m.running = False
                writer.close()
                if self.server is not None:
                    self.server.close()
        if self.grabber is not None and self.grabber.error is not None:
            err = self.grabber.error
            raise err if isinstance(err, EdgeError) else EdgeError(f"source failed: {err}")
        return self.summary()

    def prepare(self, image: np.ndarray):
        """Gray frame → (boxes, tiles, preprocessed batches): the CPU work before inference.

        Runs in the grab thread for file sources (overlapping the current frame's inference) and
        in the main loop for live sources.
        """
        gray = to_gray(image)
        boxes = self.grid(gray.shape[1], gray.shape[0])
        tiles = cut(gray, boxes)
        b = self.cfg.batch
        return boxes, tiles, [self._prep(tiles[a:a + b]) for a in range(0, len(tiles), b)]

    def process(self, frame: Frame) -> None:
        """Tile, classify and log one frame."""
        cfg, m = self.cfg, self.metrics
        boxes, tiles, batches = frame.prepared if frame.prepared is not None else self.prepare(frame.image)
        results = []
        a = 0
        for batch in batches:
            probs = self.runner.infer(batch)
            results.extend(zip(range(a, a + len(batch)), classify_tiles(probs, self.classes, cfg.threshold),
                               probs))
            a += len(batch)
        for k, (ci, label, conf, unc), p in results:
            m.count_class(label)
            if unc:
                m.inc("uncertain")
            defect = label not in cfg.ok_classes
            if not (cfg.log_all or defect):
                continue
            x, y, w, h = boxes[k]
            eid = f"{frame.index:08d}-{k:04d}"
            ev = {"id": eid, "frame": frame.index, "ts": round(frame.ts, 6), "tile": [x, y, w, h], "label": label,
                  "confidence": round(conf, 6), "uncertain": unc}
            if cfg.probs:
                ev["probs"] = [round(float(v), 6) for v in p]
            self.writer.write(ev)
            m.inc("events")
            if cfg.save_crops and defect:
                self._save_crop(eid, label, tiles[k])
        m.inc("tiles", len(tiles))
        m.inc("frames_processed")
        m.observe_latency(time.monotonic() - frame.t_read)

    def _save_crop(self, eid: str, label: str, tile: np.ndarray) -> None:
        import cv2

        from edge.fsutil import atomic_path

        ok, png = cv2.imencode(".png", tile)
        if ok:
            with atomic_path(Path(self.cfg.save_crops) / f"{eid}_{label}.png") as tmp:
                tmp.write_bytes(png.tobytes())

    def summary(self) -> Dict[str, Any]:
        s = self.metrics.summary() if self.metrics else {}
        s["elapsed_s"] = round(self.elapsed_s, 3)
        s["tiles_per_s"] = round(s.get("tiles", 0) / self.elapsed_s, 2) if self.elapsed_s else None
        s["events_file"] = str(self.cfg.events)
        return s


def summary_line(s: Dict[str, Any]) -> str:
    """The one-line final summary."""
    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    return (f"frames read {s.get('frames_read', 0)}, processed {s.get('frames_processed', 0)}, "
            f"dropped {s.get('frames_dropped', 0)}, corrupt {s.get('frames_corrupt', 0)}, tiles {s.get('tiles', 0)}, "
            f"events {s.get('events', 0)}, uncertain {s.get('uncertain', 0)}, reconnects {s.get('reconnects', 0)}, "
            f"latency mean {ms(s.get('latency_mean_ms'))} p99 {ms(s.get('latency_p99_ms'))}, "
            f"{s.get('tiles_per_s') or 0:.1f} tiles/s")
