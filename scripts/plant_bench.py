"""Plant figures against a real local mosquitto: QoS 1 publish rate of one daemon's publisher, and the
time to drain a 10,000-event backlog after a broker outage.

    python scripts/plant_bench.py --events 20000 --backlog 10000 --json docs/results/plant.json

Events are the daemon's own lines (id, run, frame, ts, tile, label, confidence, uncertain), spooled
with its EventWriter; the publisher is edge.capture.mqtt.MqttPublisher as the daemon runs it;
``published`` counts PUBACKs. A subscriber (QoS 1) checks that every event arrived.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.capture.events import EventWriter  # noqa: E402
from scripts.fixtures.mosquitto import Mosquitto  # noqa: E402
from edge.capture.mqtt import MqttPublisher  # noqa: E402


def spool(path: Path, n: int, run: str) -> None:
    w = EventWriter(path, max_bytes=0)
    t = time.time()
    for i in range(n):
        w.write({"id": f"{i // 8:08d}-{i % 8:04d}", "run": run, "frame": i // 8, "ts": round(t + i / 200, 6),
                 "tile": [200 * (i % 8), 0, 200, 200], "label": "scratches", "confidence": 0.987654,
                 "uncertain": False})
    w.close()


class Counter:
    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.ids = set()
        self.n = 0
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False)
        c.on_connect = lambda cl, *a: cl.subscribe("plant/+/+/events", qos=1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._msg
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c
        assert self.ready.wait(10)

    def _msg(self, client, userdata, m):
        self.n += 1
        self.ids.add(json.loads(m.payload)["event_id"])

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait(cond, timeout):
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise SystemExit("timed out")
        time.sleep(0.005)
    return time.perf_counter() - t0


def rate(workdir: Path, n: int) -> dict:
    ev = workdir / "rate" / "events.jsonl"
    spool(ev, n, "rate")
    b = Mosquitto(workdir / "b1").start()
    sub = Counter(b.port)
    pub = MqttPublisher(f"mqtt://127.0.0.1:{b.port}/plant", ev, "l1", "top", status={"run": "rate"},
                        metrics_interval=0, poll=0.01)
    t0 = time.perf_counter()
    pub.start()
    t_conn = wait(lambda: pub.connected, 60)
    dt = wait(lambda: pub.published >= n, 600)
    wait(lambda: len(sub.ids) >= n, 60)
    pub.stop()
    sub.close()
    b.kill()
    return {"events": n, "connect_s": round(t_conn, 3), "seconds_after_connect": round(dt, 3), "events_per_s": round(n / dt, 1), "received_unique": len(sub.ids),
            "received": sub.n}


def drain(workdir: Path, n: int) -> dict:
    b = Mosquitto(workdir / "b2")
    ev = workdir / "drain" / "events.jsonl"
    pub = MqttPublisher(f"mqtt://127.0.0.1:{b.port}/plant", ev, "l1", "top", status={"run": "drain"},
                        metrics_interval=0, poll=0.01, reconnect_max=1)
    pub.start()                                  # broker down: the outage
    spool(ev, n, "drain")
    wait(lambda: pub.backlog() == n, 60)
    b.start()
    sub = Counter(b.port)                        # the collector side is back with the broker
    t0 = time.perf_counter()
    t_conn = wait(lambda: pub.connected, 60)                # from the broker's start
    t_acked = t_conn + wait(lambda: pub.backlog() == 0, 600)
    t_recv = t_acked + wait(lambda: len(sub.ids) >= n, 60)
    pub.stop()
    sub.close()
    b.kill()
    return {"backlog": n, "reconnect_s": round(t_conn, 3), "drain_s_from_broker_start": round(t_acked, 3),
            "drain_s_after_reconnect": round(t_acked - t_conn, 3), "all_received_s_from_broker_start": round(t_recv, 3),
            "received_unique": len(sub.ids), "received": sub.n, "lost": pub.lost}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--backlog", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True,
                         text=True).stdout.strip()
    mosq = subprocess.run(["sh", "-c", "mosquitto -h | head -1"], capture_output=True, text=True).stdout.strip()
    from importlib.metadata import version

    out = {"cpu": cpu, "python": platform.python_version(), "paho_mqtt": version("paho-mqtt"), "broker": mosq,
           "note": "2-core machine shared with other jobs; publisher and broker on the same host (127.0.0.1)",
           "rate": [], "drain": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(a.repeat):
            out["rate"].append(rate(Path(d) / f"r{r}", a.events))
            print("rate", out["rate"][-1], flush=True)
            out["drain"].append(drain(Path(d) / f"d{r}", a.backlog))
            print("drain", out["drain"][-1], flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
