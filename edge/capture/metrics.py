"""Daemon counters in Prometheus text format, served on ``/metrics`` with ``/healthz``.

:class:`Metrics` holds the counters, gauges and the latency histogram; the exposition text is
made by ``prometheus_client`` (a custom collector over these values). :class:`MetricsServer`
serves them from a small hardened ``http.server``: it binds 127.0.0.1 by default (another host
is accepted with a warning), caps the number of connections, times out idle clients, and
drops aborted clients without a traceback. Other parts of the daemon add their own metrics
and pages::

    m.add_counter("mqtt_published", "Events published to the broker", labelnames=("topic",))
    m.inc("mqtt_published", labels={"topic": "line1"})
    m.add_gauge("mqtt_backlog", "Events waiting in the spool", fn=lambda: spool.backlog)
    m.add_health_check("mqtt", lambda: "broker unreachable" if not ok else None)
    server.add_route("/preview.jpg", lambda query: (200, "image/jpeg", jpeg_bytes))
"""

from __future__ import annotations

import bisect
import collections
import ipaddress
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from edge.errors import EdgeError

log = logging.getLogger(__name__)

#: Latency histogram buckets in seconds (frame read → events written).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Latencies kept for the summary's p99 (a fixed window: memory stays flat however long it runs).
LATENCY_WINDOW = 10_000

COUNTERS = {
    "frames_read": "Frames read from the source",
    "frames_processed": "Frames tiled and classified",
    "frames_dropped": "Stale live frames dropped (latest-frame semantics)",
    "frames_corrupt": "Empty or undecodable frames skipped (also in frames_skipped_total{reason=\"undecodable\"})",
    "tiles": "Tiles classified",
    "events": "Events written to the events file (whole lines on disk)",
    "event_write_errors": "Failed writes of the events file (events kept for retry)",
    "uncertain": "Tiles whose top probability was below the threshold",
    "unknown": "Tiles whose open-set score passed the model's threshold (labelled unknown, edge/ood.py)",
    "reconnects": "Source reconnections",
    "crops_saved": "Defect crops written",
}
#: Counters with one label: name → (label, help).
LABELED_COUNTERS = {
    "frames_skipped": ("reason", "Frames skipped: undecodable, too_small, bad_image, preprocess, inference, stopped"),
    "events_dropped": ("reason", "Events lost: disk (retry queue full or unwritable at exit), rotation "
                       "(written, then deleted with a rotated file beyond --rotate-keep)"),
    "crops_skipped": ("reason", "Defect crops not saved: sampled (over --crops-per-minute), error (write failed)"),
    "crops_deleted": ("reason", "Crops deleted by the budget: size (--crops-max-mb), age (--crops-max-age)"),
}

Labels = Optional[Dict[str, str]]
Route = Callable[[Dict[str, List[str]]], Tuple[int, str, bytes]]


class Metrics:
    """Thread-safe counters (plain and labelled), per-class counts, gauges, a latency histogram.

    Args:
        classes: Class names (each gets a ``class_total`` series from the start).
        buckets: Latency histogram buckets in seconds.
        window: Latencies kept for the summary's p99.
    """

    def __init__(self, classes: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS,
                 window: int = LATENCY_WINDOW):
        self._lock = threading.Lock()
        self.help: Dict[str, str] = dict(COUNTERS)
        self.counters: Dict[str, int] = {k: 0 for k in COUNTERS}
        self.labelnames: Dict[str, Tuple[str, ...]] = {}
        self.labeled: Dict[str, Dict[Tuple[str, ...], int]] = {}
        for k, (label, help_) in LABELED_COUNTERS.items():
            self.add_counter(k, help_, (label,))
        self.per_class: Dict[str, int] = {c: 0 for c in classes}
        self.gauges: Dict[str, Tuple[str, Callable[[], float]]] = {}
        self._gauge_values: Dict[str, float] = {}
        self.health_checks: Dict[str, Callable[[], Optional[str]]] = {}
        self.buckets = tuple(sorted(buckets))
        self._hist = [0] * (len(self.buckets) + 1)
        self._lat_sum = 0.0
        self._lat_count = 0
        self.latencies: "collections.deque[float]" = collections.deque(maxlen=max(1, int(window)))
        self.queue_depth = 0
        self.connected = False
        self.running = False
        self.stale_after: Optional[float] = None   # /healthz red when no frame for this long
        self.started = time.monotonic()
        self.last_frame: Optional[float] = None    # monotonic time of the last frame read or processed

    # -- registration (for other parts of the daemon) -----------------------------
    def add_counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        """Register a counter ``<prefix>_<name>_total`` (idempotent)."""
        with self._lock:
            self.help[name] = help
            if labelnames:
                self.labelnames[name] = tuple(labelnames)
                self.labeled.setdefault(name, {})
            else:
                self.counters.setdefault(name, 0)

    def add_gauge(self, name: str, help: str, fn: Optional[Callable[[], float]] = None) -> None:
        """Register a gauge ``<prefix>_<name>``: read from ``fn()`` at scrape time, else set with :meth:`set`."""
        with self._lock:
            self.gauges[name] = (help, fn if fn is not None else (lambda n=name: self._gauge_values.get(n, 0.0)))

    def set(self, name: str, value: float) -> None:
        """Set a gauge registered without ``fn``."""
        self._gauge_values[name] = float(value)

    def add_health_check(self, name: str, fn: Callable[[], Optional[str]]) -> None:
        """``fn()`` returns a problem (one line) that makes ``/healthz`` degraded, or None when fine."""
        self.health_checks[name] = fn

    # -- updates ------------------------------------------------------------------
    def inc(self, name: str, n: int = 1, labels: Labels = None) -> None:
        """Add ``n`` to a counter (``labels``: its label values, for a labelled counter)."""
        with self._lock:
            if name in self.labelnames:
                key = tuple(str((labels or {}).get(k, "")) for k in self.labelnames[name])
                d = self.labeled[name]
                d[key] = d.get(key, 0) + n
            else:
                self.counters[name] += n

    def count_class(self, label: str, n: int = 1) -> None:
        with self._lock:
            self.per_class[label] = self.per_class.get(label, 0) + n

    def frame_seen(self) -> None:
        """A frame arrived (resets the staleness clock of ``/healthz``)."""
        self.last_frame = time.monotonic()

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self._hist[bisect.bisect_left(self.buckets, seconds)] += 1
            self._lat_sum += seconds
            self._lat_count += 1
            self.latencies.append(seconds)

    def get(self, name: str, labels: Labels = None) -> int:
        """A counter's value; for a labelled counter without ``labels`` the sum over all label values."""
        with self._lock:
            if name in self.labelnames:
                d = self.labeled[name]
                if labels is None:
                    return sum(d.values())
                return d.get(tuple(str(labels.get(k, "")) for k in self.labelnames[name]), 0)
            return self.counters[name]

    # -- health -------------------------------------------------------------------
    def frame_age(self) -> Optional[float]:
        """Seconds since the last frame (or since start when none came yet)."""
        return time.monotonic() - (self.last_frame if self.last_frame is not None else self.started)

    def health(self) -> Dict[str, object]:
        """``status`` ok | degraded | unavailable, with the reasons (``problems``)."""
        problems, degraded = [], []
        if not self.running:
            problems.append("not running")
        if not self.connected:
            problems.append("source not connected")
        age = self.frame_age()
        if self.running and self.stale_after is not None and age > self.stale_after:
            problems.append(f"no frame for {age:.0f} s")
        for name, fn in list(self.health_checks.items()):
            try:
                p = fn()
            except Exception as e:  # a broken check is itself a problem, not a crash of the endpoint
                p = f"check failed: {type(e).__name__}"
            if p:
                degraded.append(f"{name}: {p}")
        status = "unavailable" if problems else "degraded" if degraded else "ok"
        return {"status": status, "running": self.running, "source_connected": self.connected,
                "frames_processed": self.get("frames_processed"), "last_frame_age_s": round(age, 1),
                "problems": problems + degraded}

    # -- exposition ---------------------------------------------------------------
    def collect(self):
        """prometheus_client collector protocol: the metric families of this daemon."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        p = self.prefix
        with self._lock:
            counters = dict(self.counters)
            labeled = {k: dict(v) for k, v in self.labeled.items()}
            per_class = dict(self.per_class)
            hist, lat_sum = list(self._hist), self._lat_sum
            gauges = dict(self.gauges)
        for k, v in counters.items():
            yield CounterMetricFamily(f"{p}_{k}", self.help.get(k, k), value=v)
        for k, d in labeled.items():
            c = CounterMetricFamily(f"{p}_{k}", self.help.get(k, k), labels=list(self.labelnames[k]))
            for key, v in d.items():
                c.add_metric(list(key), v)
            yield c
        c = CounterMetricFamily(f"{p}_class", "Tiles per predicted class", labels=["class"])
        for name, v in per_class.items():
            c.add_metric([name], v)
        yield c
        yield GaugeMetricFamily(f"{p}_queue_depth", "Frames waiting in the grab queue", value=self.queue_depth)
        yield GaugeMetricFamily(f"{p}_source_connected", "1 while the source delivers frames",
                                value=int(self.connected))
        yield GaugeMetricFamily(f"{p}_last_frame_age_seconds", "Seconds since the last frame arrived",
                                value=self.frame_age())
        yield GaugeMetricFamily(f"{p}_healthy", "1 while /healthz answers ok", value=int(self.health()["status"] == "ok"))
        for k, (help_, fn) in gauges.items():
            try:
                v = float(fn())
            except Exception:
                v = float("nan")
            yield GaugeMetricFamily(f"{p}_{k}", help_, value=v)
        cum, buckets = 0, []
        for b, n in zip(self.buckets, hist):
            cum += n
            buckets.append((f"{b:g}", cum))
        cum += hist[-1]
        buckets.append(("+Inf", cum))
        yield HistogramMetricFamily(f"{p}_latency_seconds", "Frame read to events written", buckets=buckets,
                                    sum_value=lat_sum)

    prefix = "edge_capture"

    def render(self, prefix: str = "edge_capture") -> str:
        """Prometheus text exposition format 0.0.4 (made by prometheus_client)."""
        from prometheus_client import CollectorRegistry, generate_latest

        self.prefix = prefix
        reg = CollectorRegistry(auto_describe=False)
        reg.register(self)
        return generate_latest(reg).decode()

    def describe(self):  # prometheus_client: no up-front description (collect() is cheap)
        return []

    def summary(self) -> Dict[str, object]:
        """Counters (labelled ones as totals plus ``<name>_by_reason``) and mean/p99 latency in ms."""
        import numpy as np

        with self._lock:
            lat = np.array(self.latencies) * 1e3
            out: Dict[str, object] = dict(self.counters)
            for k, d in self.labeled.items():
                out[k] = sum(d.values())
                out[f"{k}_by_{self.labelnames[k][0]}"] = {",".join(key): v for key, v in d.items()}
            out["per_class"] = dict(self.per_class)
            mean = self._lat_sum / self._lat_count * 1e3 if self._lat_count else None
        out["latency_mean_ms"] = mean
        out["latency_p99_ms"] = float(np.percentile(lat, 99)) if lat.size else None
        return out


def parse_address(text: str, default_host: str = "127.0.0.1") -> Tuple[str, int]:
    """``"127.0.0.1:9108"`` / ``":9108"`` / ``"9108"`` → (host, port)."""
    host, _, port = str(text).rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise EdgeError(f"metrics address must be HOST:PORT, got {text!r}") from None
    if not 0 <= p < 65536:
        raise EdgeError(f"metrics port {p} is out of range")
    host = host.strip("[]")
    return (host or default_host), p


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection cap and quiet handling of aborted clients."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(self, addr, handler, max_connections: int, on_refused: Callable[[], None]):
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_refused = on_refused
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):  # at the cap: close at once, no thread
            self._on_refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError, socket.timeout)):
            return  # the client went away or idled: nothing to report
        log.warning("metrics: request from %s failed: %s: %s", client_address[0], type(e).__name__, e)


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a background thread, plus routes others add.

    ``/healthz`` answers 200 with ``{"status": "ok", ...}`` while the daemon runs, its source is
    connected, a frame arrived within ``stale_after`` seconds and no health check reports a
    problem; else 503 with ``status`` ``degraded`` (e.g. the events disk refuses writes) or
    ``unavailable``, and the ``problems``.

    Args:
        metrics: The :class:`Metrics` served.
        address: ``HOST:PORT`` (port 0: any free port).
        timeout: Seconds a client may idle (socket timeout) before it is dropped.
        max_connections: Connections served at once; more are closed at once (counted).
    """

    def __init__(self, metrics: Metrics, address: str = "127.0.0.1:9108", timeout: float = 5.0,
                 max_connections: int = 32):
        host, port = parse_address(address)
        if not is_loopback(host):
            log.warning("metrics server binds %s: /metrics and /healthz are reachable from the network "
                        "(use 127.0.0.1 unless a scraper on another host needs it)", host)
        m = self.metrics = metrics
        m.add_counter("http_refused", "Metrics connections closed at the connection cap")
        self.routes: Dict[str, Route] = {"/metrics": self._metrics, "/healthz": self._healthz}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            server_version = "edge-capture"
            sys_version = ""

            def setup(self):
                self.timeout = timeout  # socket timeout: idle clients are dropped
                super().setup()

            def do_GET(self):  # noqa: N802 (http.server API)
                url = urlsplit(self.path)
                route = routes.get(url.path)
                if route is None:
                    code, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        code, ctype, body = route(parse_qs(url.query))
                    except Exception as e:
                        log.warning("metrics: %s failed: %s: %s", url.path, type(e).__name__, e)
                        code, ctype, body = 500, "text/plain", b"internal error\n"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args):  # keep the daemon's log clean
                pass

        try:
            self.httpd = _Server((host, port), Handler, max_connections, lambda: m.inc("http_refused"))
        except (OSError, OverflowError) as e:
            raise EdgeError(f"cannot serve metrics on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics", daemon=True)
        self._thread.start()

    def add_route(self, path: str, fn: Route) -> None:
        """Serve ``GET path`` with ``fn(query) -> (status, content type, body bytes)``."""
        self.routes[path] = fn

    def _metrics(self, query) -> Tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render().encode()

    def _healthz(self, query) -> Tuple[int, str, bytes]:
        h = self.metrics.health()
        return (200 if h["status"] == "ok" else 503), "application/json", json.dumps(h).encode()

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"http://[{host}]:{self.address[1]}" if ":" in host else f"http://{host}:{self.address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
