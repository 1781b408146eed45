"""Prometheus text and the /metrics + /healthz endpoints."""

import json
import urllib.error
import urllib.request

import pytest

from edge.capture.metrics import Metrics, MetricsServer, parse_address
from edge.errors import EdgeError


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_render_counters_classes_and_histogram():
    m = Metrics(["crazing", "scratches"])
    m.inc("frames_read", 5)
    m.inc("frames_dropped", 2)
    m.count_class("scratches", 3)
    for s in (0.003, 0.02, 0.02, 7.0):
        m.observe_latency(s)
    text = m.render()
    assert "edge_capture_frames_read_total 5" in text
    assert "edge_capture_frames_dropped_total 2" in text
    assert 'edge_capture_class_total{class="scratches"} 3' in text
    assert 'edge_capture_class_total{class="crazing"} 0' in text
    assert 'edge_capture_latency_seconds_bucket{le="0.005"} 1' in text
    assert 'edge_capture_latency_seconds_bucket{le="0.025"} 3' in text   # cumulative
    assert 'edge_capture_latency_seconds_bucket{le="+Inf"} 4' in text
    assert "edge_capture_latency_seconds_count 4" in text
    assert "# TYPE edge_capture_latency_seconds histogram" in text
    s = m.summary()
    assert s["frames_read"] == 5 and s["latency_p99_ms"] > 1000


def test_http_endpoints_and_health_states():
    m = Metrics(["a"])
    srv = MetricsServer(m, "127.0.0.1:0")
    try:
        assert srv.address[0] == "127.0.0.1"
        code, ctype, body = _get(srv.url + "/metrics")
        assert code == 200 and ctype.startswith("text/plain") and "edge_capture_tiles_total 0" in body
        code, _, body = _get(srv.url + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "unavailable"
        m.running = m.connected = True
        m.inc("frames_processed", 3)
        code, _, body = _get(srv.url + "/healthz")
        h = json.loads(body)
        assert code == 200 and h["status"] == "ok" and h["frames_processed"] == 3 and h["problems"] == []
        m.add_health_check("events", lambda: "disk full")
        code, _, body = _get(srv.url + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "degraded" and "events: disk full" in body
        assert _get(srv.url + "/nope")[0] == 404
    finally:
        srv.close()


def test_parse_address():
    assert parse_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_address(":9108") == ("127.0.0.1", 9108)
    assert parse_address("9108") == ("127.0.0.1", 9108)
    with pytest.raises(EdgeError):
        parse_address("host:http")
