"""MQTT test helpers: a real local mosquitto broker and a subscriber that records every message."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Callable, Dict, List

from scripts.fixtures.polling import wait_until


class Recorder:
    """Subscribes ``topic`` at QoS 1 with a persistent session; keeps every payload per topic."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-recorder"):
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.lock = threading.Lock()
        self.messages: Dict[str, List[dict]] = {}
        self.retained: Dict[str, dict] = {}
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.reconnect_delay_set(1, 1)
        c.on_connect = lambda cl, *_: (self.subscribed.clear(), cl.subscribe(topic, qos=1))
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        assert self.subscribed.wait(10), "the recorder could not subscribe"

    def _on_message(self, client, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"raw": msg.payload.decode("utf-8", "replace")}
        with self.lock:
            self.messages.setdefault(msg.topic, []).append(body)
            if msg.retain:
                self.retained[msg.topic] = body

    def events(self) -> List[dict]:
        with self.lock:
            return [e for t, v in self.messages.items() if t.endswith("/events") for e in v]

    def event_ids(self) -> Counter:
        return Counter(e["event_id"] for e in self.events())

    def last(self, topic: str) -> dict:
        with self.lock:
            return self.messages[topic][-1]

    def wait_for(self, cond: Callable[[], bool], timeout: float = 30.0) -> bool:
        return wait_until(cond, timeout, poll=0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- fixtures ---------------------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture
def recorder_factory():
    made = []

    def make(port, topic="#", client_id="test-recorder"):
        r = Recorder(port, topic, client_id)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
