"""``edge-capture --preview``: the latest annotated frame and the counters, on the metrics server.

Routes (same 127.0.0.1 server as ``/metrics``):

* ``/preview.jpg``: the latest classified frame with its tile grid, classes and confidences
  (:func:`edge.capture.annotate.annotate_frame`), JPEG;
* ``/preview.json``: the counters (frames, tiles, events, uncertain, per class) and the frame index;
* ``/``: a small page that refreshes both every second.

Encoding stays off the classification path: the daemon only hands over references to the frame
and its per-tile results (:meth:`Preview.submit`, no copy, no drawing). When a client asks, the
frame and its tile results go to a one-process pool (spawned on the first request, at nice 10) that
draws and encodes the JPEG, so the daemon's threads never wait for the GIL behind the drawing; at
most once per ``min_interval`` seconds (0.5 by default; requests in between get the cached JPEG).
With no viewer it costs nothing; with any number of viewers at most two encodes per second.
"""

from __future__ import annotations

import html
import json
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.capture.annotate import TileResult, annotate_frame

Route = Callable[[Dict[str, List[str]]], Tuple[int, str, bytes]]

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edge-capture preview</title>
<style>body{{font-family:system-ui,sans-serif;margin:1em;background:#fafafa}}img{{max-width:100%;border:1px solid #ccc}}
table{{border-collapse:collapse;font-size:.9em}}td,th{{border:1px solid #ddd;padding:.15em .5em;text-align:right}}
th{{text-align:left;background:#f0f0f0}}</style></head>
<body><h3>edge-capture: <span id="model">{model}</span></h3>
<p><img id="frame" src="/preview.jpg" alt="latest annotated frame (none yet)"></p>
<table id="counters">{rows}</table>
<p style="color:#666;font-size:.85em">Refreshes every second. <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></p>
<script>
function tick(){{
  fetch('/preview.json').then(r=>r.json()).then(c=>{{
    document.getElementById('frame').src='/preview.jpg?f='+c.frame+'&t='+Date.now();
    let rows='';
    for(const [k,v] of Object.entries(c.counters)) rows+='<tr><th>'+k+'</th><td>'+v+'</td></tr>';
    for(const [k,v] of Object.entries(c.per_class)) rows+='<tr><th>class '+k+'</th><td>'+v+'</td></tr>';
    document.getElementById('counters').innerHTML=rows;
  }}).catch(()=>{{}});
}}
setInterval(tick, 1000);
</script></body></html>
"""

COUNTER_KEYS = ("frames_read", "frames_processed", "frames_dropped", "tiles", "events", "uncertain")


def render_jpeg(image: np.ndarray, tiles: list, classes: Sequence[str], index: int, quality: int = 80,
                max_width: int = 1600) -> bytes:
    """Draw ``tiles`` ((box, label, confidence, uncertain) tuples) on ``image`` and encode it as JPEG.

    Frames wider than ``max_width`` are scaled down first. Runs in the preview's encoding process.
    """
    import cv2

    res = [TileResult(tuple(b), lab, conf, unc) for b, lab, conf, unc in tiles]
    if image.shape[1] > max_width:  # scale down first: a 1920 px camera frame is drawn at max_width
        f = max_width / image.shape[1]
        image = cv2.resize(image, (max_width, max(1, round(image.shape[0] * f))), interpolation=cv2.INTER_AREA)
        for t in res:
            x, y, w, h = t.box
            t.box = (round(x * f), round(y * f), max(1, round(w * f)), max(1, round(h * f)))
    img = annotate_frame(image, res, classes, title=f"frame {index}")
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else b""


def _lower_priority(nice: int = 10) -> None:
    """Raise the calling thread's nice value (Linux: per thread), so drawing and encoding never take a
    core from the classification threads; silently nothing where that is not possible."""
    import os

    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError):
        pass


class Preview:
    """Holds the latest frame's references and renders it on request.

    Args:
        classes: The model's classes (tile colours).
        metrics: The daemon's :class:`edge.capture.metrics.Metrics` (counters on the page).
        model: Shown in the page title.
        threshold: Top probability below which a tile is drawn as uncertain (the daemon's).
        min_interval: Seconds between two encodes at most (rate limit).
        quality: JPEG quality.
        max_width: Frames wider than this are scaled down before drawing and encoding.
        process: Draw and encode in a separate process (default): the daemon's threads never wait
            for the GIL behind the drawing (measured: drawing in the daemon's process with a viewer
            at 1 Hz cost about 10 % more CPU per tile); False draws in the HTTP thread.
    """

    def __init__(self, classes: Sequence[str], metrics=None, model: str = "", threshold: float = 0.5,
                 min_interval: float = 0.5, quality: int = 80, max_width: int = 1600, process: bool = True):
        self.classes = list(classes)
        self.threshold = float(threshold)
        self.metrics = metrics
        self.model = model
        self.min_interval = float(min_interval)
        self.quality = int(quality)
        self.max_width = int(max_width)
        self._lock = threading.Lock()
        self._latest: Optional[Tuple[int, np.ndarray, list, List[np.ndarray], Optional[np.ndarray]]] = None
        self._cache: Optional[Tuple[int, bytes]] = None
        self._encoded_at = 0.0
        self.encodes = 0
        self.submitted = 0
        self.process = bool(process)
        self._executor = None

    # -- the daemon's side: no work beyond keeping references ---------------------------------
    def submit(self, index: int, image: np.ndarray, boxes: list, probs: List[np.ndarray],
               unknown: Optional[np.ndarray] = None) -> None:
        """Keep the latest frame (references only; drawn and encoded when someone asks).

        Args:
            index: The frame index.
            image: The frame as read.
            boxes: Its tiles' boxes (x, y, w, h), in order.
            probs: The class probabilities of the tiles, in order, as the chunks the runner returned.
            unknown: Per tile, True where the daemon labelled it ``unknown`` (open-set score above the
                model's threshold); None for models without a score.
        """
        with self._lock:
            self._latest = (index, image, boxes, probs, unknown)
            self.submitted += 1

    def tiles(self, boxes: list, probs: List[np.ndarray], unknown: Optional[np.ndarray] = None) -> List[TileResult]:
        """The tiles' results (label, confidence, uncertain / unknown) from their probabilities."""
        p = np.concatenate(probs) if probs else np.zeros((0, len(self.classes)))
        idx = p.argmax(axis=1) if len(p) else np.zeros(0, int)
        out = []
        for k, box in enumerate(boxes):
            if k < len(p):
                conf = float(p[k, idx[k]])
                if unknown is not None and bool(unknown[k]):
                    out.append(TileResult(tuple(int(v) for v in box), "unknown", conf, False))
                    continue
                out.append(TileResult(tuple(int(v) for v in box), self.classes[int(idx[k])], conf,
                                      conf < self.threshold))
            else:  # not classified (the frame was cut short)
                out.append(TileResult(tuple(int(v) for v in box), None))
        return out

    # -- the HTTP side ---------------------------------------------------------------------------
    def jpeg(self) -> Optional[bytes]:
        """The latest annotated frame as JPEG (cached within ``min_interval``); None before the first frame."""
        with self._lock:
            latest, cache = self._latest, self._cache
            fresh = time.monotonic() - self._encoded_at < self.min_interval
        if latest is None:
            return None
        if cache is not None and (cache[0] == latest[0] or fresh):
            return cache[1]
        index, image, boxes, probs, unknown = latest
        tiles = [(t.box, t.label, t.confidence, t.uncertain) for t in self.tiles(boxes, probs, unknown)]
        args = (np.ascontiguousarray(image), tiles, tuple(self.classes), index, self.quality, self.max_width)
        data = None
        if self.process:
            try:
                data = self._pool().submit(render_jpeg, *args).result(timeout=30)
            except Exception as e:  # a broken worker: draw here from now on (and say so once)
                import logging

                logging.getLogger(__name__).warning("preview: encoding process failed (%s: %s); encoding in the "
                                                    "daemon's process from now on", type(e).__name__, e)
                self.process = False
        if data is None:
            _lower_priority()
            data = render_jpeg(*args)
        with self._lock:
            self._cache = (index, data)
            self._encoded_at = time.monotonic()
            self.encodes += 1
        return data

    def _pool(self):
        """The one-process pool that draws and encodes (started on the first request, at nice 10)."""
        with self._lock:
            if self._executor is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn, not fork: the daemon has inference threads running
                self._executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_lower_priority)
            return self._executor

    def close(self) -> None:
        """Stop the encoding process (idempotent)."""
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True)  # (cancel_futures needs Python 3.9; at most one job is queued)

    def state(self) -> Dict:
        """Counters for the page."""
        counters: Dict[str, int] = {}
        per_class: Dict[str, int] = {}
        if self.metrics is not None:
            s = self.metrics.summary()
            counters = {k: s[k] for k in COUNTER_KEYS if k in s}
            per_class = dict(s.get("per_class", {}))
        with self._lock:
            frame = self._latest[0] if self._latest is not None else None
        return {"model": self.model, "frame": frame, "counters": counters, "per_class": per_class}

    def page(self) -> str:
        st = self.state()
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in st["counters"].items())
        rows += "".join(f"<tr><th>class {html.escape(k)}</th><td>{v}</td></tr>" for k, v in st["per_class"].items())
        return PAGE.format(model=html.escape(self.model), rows=rows)

    def routes(self) -> Dict[str, Route]:
        """Path → handler ``(query) -> (status, content type, body)``, for ``MetricsServer.add_route``."""
        def jpg(query):
            data = self.jpeg()
            if data is None:
                return 503, "text/plain; charset=utf-8", b"no frame classified yet\n"
            return 200, "image/jpeg", data

        return {
            "/": lambda query: (200, "text/html; charset=utf-8", self.page().encode()),
            "/preview.jpg": jpg,
            "/preview.json": lambda query: (200, "application/json", json.dumps(self.state()).encode()),
        }
