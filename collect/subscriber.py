"""The collector: ``PREFIX/#`` from the broker (QoS 1, persistent session) into the event store.

Messages are acknowledged to the broker only after the transaction that stored them committed
(paho-mqtt 2's manual acks), so a collector killed mid-batch gets them again from its persistent
session; the ``event_id`` primary key drops the duplicates that this and the devices'
at-least-once delivery produce.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from typing import Any, Dict, List, Optional

from collect.store import Store
from edge.capture.mqtt import parse_mqtt_url
from edge.errors import EdgeError

log = logging.getLogger(__name__)


class Collector:
    """Subscribes ``PREFIX/#`` and writes events, statuses and metrics into ``store``.

    Args:
        mqtt_url: ``mqtt[s]://[user[:password]@]host[:port]/PREFIX`` (as the daemons use).
        store: An open :class:`~collect.store.Store`.
        client_id: MQTT client id of the persistent session (default ``edge-collect-<hash of prefix>``).
        password_file, ca_file, cert_file, key_file: As for ``edge-capture``.
        batch: Messages stored per transaction at most.
    """

    def __init__(self, mqtt_url: str, store: Store, client_id: Optional[str] = None,
                 password_file: Optional[str] = None, ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                 key_file: Optional[str] = None, batch: int = 500):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("edge-collect needs paho-mqtt >= 2 (pip install 'steel-edge[plant]')") from None
        self.target = parse_mqtt_url(mqtt_url, password_file)
        self.store = store
        self.batch = int(batch)
        self.prefix = self.target.prefix
        self.q: "queue.Queue" = queue.Queue()
        self.stats: Dict[str, int] = {"messages": 0, "events": 0, "duplicates": 0, "statuses": 0, "metrics": 0,
                                      "ignored": 0, "bad": 0}
        self.connected = threading.Event()
        self._sha_of_run: Dict[str, str] = {}
        cid = client_id or "edge-collect-" + hashlib.sha1(self.prefix.encode()).hexdigest()[:8]
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.manual_ack_set(True)
        c.reconnect_delay_set(1, 30)
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            import ssl

            c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = lambda client, userdata, msg: self.q.put(msg)
        self.client = c

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker %s refused the collector: %s", self.target.safe_url, reason_code)
            return
        client.subscribe(f"{self.prefix}/#", qos=1)
        self.connected.set()
        log.info("collecting %s/# from %s", self.prefix, self.target.safe_url)

    def start(self) -> "Collector":
        try:
            self.client.connect_async(self.target.host, self.target.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise EdgeError(f"MQTT broker {self.target.safe_url}: {e}") from None
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.drain(0.0)
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, wait: float = 0.2) -> int:
        """Store what has arrived (waiting up to ``wait`` s for the first message); return messages stored."""
        msgs: List[Any] = []
        try:
            msgs.append(self.q.get(timeout=wait) if wait > 0 else self.q.get_nowait())
        except queue.Empty:
            return 0
        while len(msgs) < self.batch:
            try:
                msgs.append(self.q.get_nowait())
            except queue.Empty:
                break
        self._store(msgs)
        for m in msgs:  # acknowledged only now that they are committed
            if m.qos > 0:
                self.client.ack(m.mid, m.qos)
        return len(msgs)

    def _store(self, msgs: List[Any]) -> None:
        now = time.time()
        st = self.stats
        while True:
            try:
                with self.store.transaction() as cur:
                    counts = dict.fromkeys(st, 0)
                    for m in msgs:
                        self._one(cur, m, now, counts)
                break
            except self.store.errors as e:
                log.warning("database %s: %s (retrying in 2 s)", self.store.safe_url, " ".join(str(e).split()))
                time.sleep(2.0)
        for k, v in counts.items():
            st[k] += v

    def _one(self, cur, m, now: float, counts: Dict[str, int]) -> None:
        counts["messages"] += 1
        parts = m.topic.split("/")
        pre = self.prefix.split("/")
        if parts[:len(pre)] != pre or len(parts) != len(pre) + 3:
            counts["ignored"] += 1
            return
        line, camera, kind = parts[len(pre):]
        try:
            body = json.loads(m.payload) if m.payload else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            counts["bad"] += 1
            log.warning("%s: payload is not a JSON object (ignored)", m.topic)
            return
        if kind == "events":
            if "event_id" not in body:
                counts["bad"] += 1
                return
            if self.store.insert_event(cur, line, camera, body, self._sha_of_run.get(body.get("run", "")), now):
                counts["events"] += 1
            else:
                counts["duplicates"] += 1
        elif kind == "status":
            if body.get("run") and body.get("sha256"):
                self._sha_of_run[body["run"]] = body["sha256"]
            self.store.upsert_status(cur, line, camera, body, now)
            counts["statuses"] += 1
        elif kind == "metrics":
            self.store.upsert_metrics(cur, line, camera, body, now)
            counts["metrics"] += 1
        else:
            counts["ignored"] += 1

    def run(self, stop: threading.Event, max_messages: Optional[int] = None, idle_exit: Optional[float] = None) -> None:
        """Store messages until ``stop`` is set (or ``max_messages`` were stored, or nothing came for ``idle_exit`` s)."""
        last = time.monotonic()
        while not stop.is_set():
            n = self.drain(0.2)
            if n:
                last = time.monotonic()
            if max_messages is not None and self.stats["messages"] >= max_messages:
                break
            if idle_exit is not None and time.monotonic() - last > idle_exit:
                break
