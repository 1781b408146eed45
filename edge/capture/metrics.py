"""Daemon counters in Prometheus text format, served on ``/metrics`` with ``/healthz``.

The stdlib ``http.server`` is enough for one scraper; it binds 127.0.0.1 by default so the
endpoint is not exposed on the plant network unless asked for.
"""

from __future__ import annotations

import bisect
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Sequence, Tuple

from edge.errors import EdgeError

#: Latency histogram buckets in seconds (frame read → events written).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

COUNTERS = {
    "frames_read": "Frames read from the source",
    "frames_processed": "Frames tiled and classified",
    "frames_dropped": "Stale live frames dropped (latest-frame semantics)",
    "frames_corrupt": "Empty or undecodable frames skipped",
    "tiles": "Tiles classified",
    "events": "Events written",
    "uncertain": "Tiles whose top probability was below the threshold",
    "reconnects": "Source reconnections",
}


class Metrics:
    """Thread-safe counters, per-class counts, a latency histogram and gauges."""

    def __init__(self, classes: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS):
        self._lock = threading.Lock()
        self.counters: Dict[str, int] = {k: 0 for k in COUNTERS}
        self.per_class: Dict[str, int] = {c: 0 for c in classes}
        self.buckets = tuple(sorted(buckets))
        self._hist = [0] * (len(self.buckets) + 1)
        self._lat_sum = 0.0
        self.latencies: List[float] = []  # kept for the summary's mean/p99
        self.queue_depth = 0
        self.connected = False
        self.running = False

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def count_class(self, label: str, n: int = 1) -> None:
        with self._lock:
            self.per_class[label] = self.per_class.get(label, 0) + n

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self._hist[bisect.bisect_left(self.buckets, seconds)] += 1
            self._lat_sum += seconds
            self.latencies.append(seconds)

    def get(self, name: str) -> int:
        with self._lock:
            return self.counters[name]

    def render(self, prefix: str = "edge_capture") -> str:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            lines = []
            for k, help_ in COUNTERS.items():
                lines += [f"# HELP {prefix}_{k}_total {help_}", f"# TYPE {prefix}_{k}_total counter",
                          f"{prefix}_{k}_total {self.counters[k]}"]
            lines += [f"# HELP {prefix}_class_total Tiles per predicted class", f"# TYPE {prefix}_class_total counter"]
            for c, n in self.per_class.items():
                lines.append(f'{prefix}_class_total{{class="{_escape(c)}"}} {n}')
            lines += [f"# HELP {prefix}_queue_depth Frames waiting in the grab queue",
                      f"# TYPE {prefix}_queue_depth gauge", f"{prefix}_queue_depth {self.queue_depth}",
                      f"# HELP {prefix}_source_connected 1 while the source delivers frames",
                      f"# TYPE {prefix}_source_connected gauge", f"{prefix}_source_connected {int(self.connected)}",
                      f"# HELP {prefix}_latency_seconds Frame read to events written",
                      f"# TYPE {prefix}_latency_seconds histogram"]
            cum = 0
            for b, n in zip(self.buckets, self._hist):
                cum += n
                lines.append(f'{prefix}_latency_seconds_bucket{{le="{b:g}"}} {cum}')
            cum += self._hist[-1]
            lines += [f'{prefix}_latency_seconds_bucket{{le="+Inf"}} {cum}',
                      f"{prefix}_latency_seconds_sum {self._lat_sum:.6f}", f"{prefix}_latency_seconds_count {cum}"]
            return "\n".join(lines) + "\n"

    def summary(self) -> Dict[str, float]:
        """Counters plus mean/p99 latency in ms."""
        import numpy as np

        with self._lock:
            lat = np.array(self.latencies) * 1e3
            out = dict(self.counters)
            out["per_class"] = dict(self.per_class)
        out["latency_mean_ms"] = float(lat.mean()) if lat.size else None
        out["latency_p99_ms"] = float(np.percentile(lat, 99)) if lat.size else None
        return out


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_address(text: str, default_host: str = "127.0.0.1") -> Tuple[str, int]:
    """``"127.0.0.1:9108"`` / ``":9108"`` / ``"9108"`` → (host, port)."""
    host, _, port = str(text).rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise EdgeError(f"metrics address must be HOST:PORT, got {text!r}") from None
    if not 0 <= p < 65536:
        raise EdgeError(f"metrics port {p} is out of range")
    return (host or default_host), p


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a background thread.

    ``/healthz`` answers 200 while the daemon runs and its source is connected, 503 otherwise,
    with a small JSON body.
    """

    def __init__(self, metrics: Metrics, address: str = "127.0.0.1:9108"):
        host, port = parse_address(address)
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                if self.path.split("?")[0] == "/metrics":
                    body, ctype, code = m.render().encode(), "text/plain; version=0.0.4; charset=utf-8", 200
                elif self.path.split("?")[0] == "/healthz":
                    ok = m.running and m.connected
                    body = json.dumps({"status": "ok" if ok else "unavailable", "running": m.running,
                                       "source_connected": m.connected,
                                       "frames_processed": m.get("frames_processed")}).encode()
                    ctype, code = "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the daemon's log clean
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise EdgeError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
