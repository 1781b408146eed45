"""Events to the plant over MQTT, with the JSONL events file as the store-and-forward spool.

The daemon writes events to ``events.jsonl`` (rotated to ``.1`` … ``.N``) whether or not a broker
is reachable. :class:`MqttPublisher` tails that file chain in its own thread and publishes each
event at QoS 1 to ``PREFIX/<line>/<camera>/events`` (paho-mqtt >= 2, ``CallbackAPIVersion.VERSION2``).
A cursor file beside the spool (``events.jsonl.mqtt-cursor``) records the last event the broker
acknowledged (the file's inode, the byte offset after the event, the file's first line as a check);
after a reconnect paho re-sends what was in flight, and after a restart of the daemon the
publisher starts again at the cursor. Delivery is at-least-once: every published event carries
``event_id`` = ``<line>/<camera>/<run>/<id>`` (``run`` is the daemon run that wrote it), unique in
the plant, so consumers drop duplicates.

The publisher keeps a file descriptor on every spool file it has not finished, so an event rotated
away before it was sent is still counted (``lost``) and logged, never dropped silently. A spool
file rotated away while the daemon was stopped cannot be counted: that is logged as a gap.

Topics: ``.../events`` (QoS 1), ``.../status`` (retained; ``online`` with the model, its sha256,
its classes and the software version; the last will is a retained ``offline``), ``.../metrics``
(a summary every ``metrics_interval`` seconds, QoS 0).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from edge.capture.events import rotated_chain
from edge.errors import EdgeError

log = logging.getLogger(__name__)

#: Environment variable read for the broker password when neither the URL nor a file gives one.
PASSWORD_ENV = "EDGE_MQTT_PASSWORD"
#: /healthz is degraded for this many seconds after events were lost (rotated away unsent).
LOST_HEALTH_S = 600.0


@dataclass
class MqttTarget:
    """A parsed ``mqtt[s]://[user[:password]@]host[:port]/PREFIX``."""

    host: str
    port: int
    prefix: str
    tls: bool
    username: Optional[str] = None
    password: Optional[str] = None

    def __repr__(self) -> str:  # never show the password
        user = f"{self.username}@" if self.username else ""
        return f"MqttTarget({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix})"

    @property
    def safe_url(self) -> str:
        """The URL without the password (for logs and the status message)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str, password_file: Optional[str] = None) -> MqttTarget:
    """Parse a broker URL; the password comes from the URL, else ``password_file``, else ``$EDGE_MQTT_PASSWORD``.

    Raises:
        EdgeError: not mqtt:// or mqtts://, no host, no prefix, a bad port or an unreadable password file.
    """
    try:
        u = urlsplit(str(url))
        port = u.port
    except ValueError as e:
        raise EdgeError(f"bad MQTT URL (port): {e}") from None
    if u.scheme not in ("mqtt", "mqtts"):
        raise EdgeError(f"MQTT URL must start with mqtt:// or mqtts://, got {u.scheme or 'no scheme'}:")
    if not u.hostname:
        raise EdgeError("MQTT URL has no host (mqtt://host[:port]/PREFIX)")
    prefix = u.path.strip("/")
    if u.fragment or u.query or str(url).rstrip().endswith(("#", "?")):
        raise EdgeError("MQTT topic prefix must not contain '#', '+' or '?'")
    if not prefix:
        raise EdgeError("MQTT URL needs a topic prefix: mqtt://host[:port]/PREFIX")
    if any(c in prefix for c in "#+") or "\0" in prefix:
        raise EdgeError("MQTT topic prefix must not contain '#', '+' or NUL")
    tls = u.scheme == "mqtts"
    password = unquote(u.password) if u.password is not None else None
    if password is None and password_file:
        try:
            password = Path(password_file).read_text().strip("\r\n")
        except OSError as e:
            raise EdgeError(f"cannot read MQTT password file {password_file}: {e.strerror or e}") from None
    if password is None and os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    return MqttTarget(u.hostname, port or (8883 if tls else 1883), prefix, tls,
                      unquote(u.username) if u.username else None, password)


def check_topic_part(name: str, what: str) -> str:
    """A line / camera name is one topic level: no '/', '#', '+', not empty."""
    if not name or any(c in str(name) for c in "/#+\0"):
        raise EdgeError(f"--{what} must be a non-empty name without '/', '#' or '+', got {name!r}")
    return str(name)


# -- the spool -----------------------------------------------------------------------------
def spool_chain(path: Path) -> List[Path]:
    """The events file and its rotated copies that exist, oldest first (the spool's files)."""
    return rotated_chain(path)


class _SpoolFile:
    """An open spool file: where its next unread line starts and how many whole lines lie beyond."""

    def __init__(self, path: Path, start: int = 0):
        self.f = open(path, "rb")
        st = os.fstat(self.f.fileno())
        self.ino = st.st_ino
        self.name = path.name
        self.read_off = start      # next unread byte
        self.scan_off = start      # whole lines counted up to here
        self.ahead = 0             # whole lines in [read_off, scan_off)
        self.head = self._head()

    def _head(self) -> str:
        self.f.seek(0)
        return self.f.readline(4096).decode("utf-8", "replace")

    def scan(self) -> None:
        """Count the whole lines appended since the last scan."""
        self.f.seek(self.scan_off)
        pos = self.scan_off
        while True:
            chunk = self.f.read(1 << 20)
            if not chunk:
                break
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                self.ahead += chunk.count(b"\n")
                self.scan_off = pos + nl + 1
            pos += len(chunk)
            if len(chunk) < (1 << 20):
                break
        if not self.head:
            self.head = self._head()

    def lines(self, limit: int) -> List[Tuple[bytes, int]]:
        """Up to ``limit`` whole lines from the read position, each with the offset after it."""
        out = []
        if self.ahead <= 0:
            return out
        self.f.seek(self.read_off)
        off = self.read_off
        while len(out) < limit and off < self.scan_off:
            line = self.f.readline()
            if not line.endswith(b"\n"):
                break
            off += len(line)
            out.append((line, off))
        return out

    def consumed(self, off: int) -> None:
        self.read_off = off
        self.ahead -= 1

    def close(self) -> None:
        self.f.close()


class Cursor:
    """The last broker-acknowledged event: ``{"ino", "offset", "head", "event_id"}`` in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Optional[Dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("MQTT cursor %s unreadable (%s): sending the whole spool again", self.path, e)
            return None
        return data if isinstance(data, dict) and {"ino", "offset"} <= set(data) else None

    def save(self, data: Dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class MqttPublisher:
    """Publishes the events of a JSONL spool at QoS 1, resuming at an on-disk cursor.

    Args:
        url: ``mqtt[s]://[user[:password]@]host[:port]/PREFIX``.
        events: The daemon's events file (the spool); rotated copies ``.1`` … are read too.
        line: Line name (one topic level).
        camera: Camera name (one topic level).
        status: Extra fields of the retained ``online`` status (model, sha256, classes, version).
        summary: Callable returning the dict published on ``.../metrics`` every ``metrics_interval`` s.
        metrics_interval: Seconds between metrics messages (0: none).
        password_file: File holding the password (when the URL has none).
        ca_file, cert_file, key_file: TLS CA bundle and client certificate / key (mqtts://).
        window: Events published and not yet acknowledged at most (bounds memory while the broker is away).
        poll: Seconds between looks at the spool when there is nothing to send.
        client_id: MQTT client id (default ``steel-edge-<line>-<camera>``).
        reconnect_max: Longest wait between reconnection attempts (seconds).
        count: Called as ``count(name, n)`` when a counter grows (``published``, ``lost``, ``corrupt``,
            ``gaps``, ``connects``): the daemon's :class:`~edge.capture.metrics.Metrics` (see :meth:`attach`).
    """

    def __init__(self, url: str, events: str | os.PathLike, line: str, camera: str,
                 status: Optional[Dict[str, Any]] = None, summary: Optional[Callable[[], Dict[str, Any]]] = None,
                 metrics_interval: float = 10.0, password_file: Optional[str] = None,
                 ca_file: Optional[str] = None, cert_file: Optional[str] = None, key_file: Optional[str] = None,
                 window: int = 1000, poll: float = 0.1, client_id: Optional[str] = None,
                 reconnect_max: float = 30.0, count: Optional[Callable[[str, int], None]] = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("--mqtt needs paho-mqtt >= 2 (pip install 'steel-edge[plant]')") from None
        self._mqtt = mqtt
        self._count = count
        self.target = parse_mqtt_url(url, password_file)
        self.line = check_topic_part(line, "line")
        self.camera = check_topic_part(camera, "camera")
        self.base = f"{self.target.prefix}/{self.line}/{self.camera}"
        self.events = Path(events)
        self.cursor = Cursor(self.events.with_name(self.events.name + ".mqtt-cursor"))
        self.status_extra = dict(status or {})
        self.summary = summary
        self.metrics_interval = float(metrics_interval)
        self.window = int(window)
        self.poll = float(poll)
        for f, what in ((ca_file, "CA file"), (cert_file, "client certificate"), (key_file, "client key")):
            if f and not Path(f).is_file():
                raise EdgeError(f"MQTT {what} {f} does not exist")
        if (cert_file or ca_file) and not self.target.tls:
            raise EdgeError("MQTT CA/client certificate given, but the URL is mqtt:// (use mqtts://)")

        # counters (read by /metrics and the summary)
        self.published = 0      # events the broker acknowledged
        self.sent = 0           # PUBLISH calls (re-sends by paho after a reconnect not included)
        self.lost = 0           # events rotated away before they were acknowledged
        self.corrupt = 0        # spool lines that are not JSON objects (skipped)
        self.gaps = 0           # spool files rotated away while the daemon was stopped (count unknown)
        self.connects = 0
        self.connected = False

        self._lock = threading.Lock()
        self._acked: set = set()
        self._pending: Deque[Tuple[int, int, int, str]] = deque()   # (mid, ino, offset after, event_id)
        self._files: List[_SpoolFile] = []                          # unfinished spool files, oldest first
        self._cursor_state: Optional[Dict[str, Any]] = None
        self._cursor_dirty = False
        self._stop = threading.Event()
        self._stopping = False
        self._left: Optional[int] = None
        self._last_lost: Optional[float] = None
        self._scanned = threading.Event()
        self._thread: Optional[threading.Thread] = None

        self.run_id = self.status_extra.get("run")
        cid = client_id or f"steel-edge-{self.line}-{self.camera}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                        protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(min(self.window, 100))
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, max(1, int(reconnect_max)))
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(f"{self.base}/status", self._status_payload("offline"), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.target.safe_url, reason_code)
            return
        self.connected = True
        self._bump("connects", 1)
        log.info("MQTT connected to %s", self.target.safe_url)
        client.publish(f"{self.base}/status", self._status_payload("online"), qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected and not self._stop.is_set() and not self._stopping:
            log.warning("MQTT disconnected from %s (%s): events stay in the spool", self.target.safe_url, reason_code)
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acked.add(mid)  # set.add is atomic; _advance sorts event acks from status/metrics acks

    def _bump(self, name: str, n: int) -> None:
        setattr(self, name, getattr(self, name) + n)
        if name == "lost" and n:
            self._last_lost = time.monotonic()
        if self._count is not None:
            self._count(name, n)

    def _status_payload(self, state: str) -> str:
        return json.dumps({"state": state, "line": self.line, "camera": self.camera, "ts": time.time(),
                           **self.status_extra}, separators=(",", ":"))

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "MqttPublisher":
        """Connect in the background (the broker may be away) and start tailing the spool."""
        self._open_at_cursor()
        try:
            self.client.connect_async(self.target.host, self.target.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise EdgeError(f"MQTT broker {self.target.safe_url}: {e}") from None
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_s: float = 3.0) -> None:
        """Send what the spool still holds for up to ``drain_s`` seconds, save the cursor, go offline."""
        self._stopping = True
        deadline = time.monotonic() + max(0.0, drain_s)
        self._scanned.clear()   # the thread looks at the spool once more (the writer's last flush)
        if self._thread is not None and self._thread.is_alive():
            self._scanned.wait(max(0.0, min(5.0, deadline - time.monotonic())) or 0.5)
        while time.monotonic() < deadline and self.backlog() > 0:   # also waits for a first connection
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._advance()
        self._save_cursor(force=True)
        if self.connected:
            info = self.client.publish(f"{self.base}/status", self._status_payload("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        left = self._left = self.backlog()
        self.client.disconnect()
        self.client.loop_stop()
        for f in self._files:
            f.close()
        self._files = []
        if left:
            log.warning("MQTT: %d event(s) not yet acknowledged stay in the spool for the next start", left)

    # -- the spool ------------------------------------------------------------------------
    def _open_at_cursor(self) -> None:
        cur = self.cursor.load()
        chain = spool_chain(self.events)
        start_i, start_off = 0, 0
        if cur is not None:
            found = None
            for i, p in enumerate(chain):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                if st.st_ino == cur["ino"] and st.st_size >= cur["offset"]:
                    with open(p, "rb") as fh:
                        head = fh.readline(4096).decode("utf-8", "replace")
                    if head == cur.get("head", head):
                        found = i
                        break
            if found is None:
                if chain:
                    self._bump("gaps", 1)
                    log.warning("MQTT: the spool file of the cursor (event %s) was rotated away while the daemon "
                                "was stopped; the events after it in that file are lost (count unknown)",
                                cur.get("event_id"))
            else:
                start_i, start_off = found, int(cur["offset"])
            self._cursor_state = cur
        for i, p in enumerate(chain[start_i:]):
            try:
                self._files.append(_SpoolFile(p, start_off if i == 0 else 0))
            except FileNotFoundError:
                pass

    def _refresh(self) -> None:
        """Follow rotation: open new spool files, count the unsent events of files rotated away."""
        chain = spool_chain(self.events)
        inos = []
        for p in chain:
            try:
                inos.append((p.stat().st_ino, p))
            except FileNotFoundError:
                pass
        present = {ino for ino, _ in inos}
        for f in list(self._files):
            if f.ino not in present:
                f.scan()
                # events already handed to paho stay in its queue (re-sent on reconnect); unread ones are lost
                lost = f.ahead
                if lost:
                    self._bump("lost", lost)
                    log.error("MQTT: %d event(s) of %s rotated away before they were sent: lost "
                              "(raise --rotate-mb / --rotate-keep for longer broker outages)", lost, f.name)
                f.close()
                self._files.remove(f)
        known = {f.ino for f in self._files}
        newest = self._files[-1].ino if self._files else None
        # files newer than the newest one we hold (all of them when we hold none)
        order = [ino for ino, _ in inos]
        after = order.index(newest) + 1 if newest in order else 0
        for ino, p in inos[after:]:
            if ino not in known:
                try:
                    self._files.append(_SpoolFile(p))
                except FileNotFoundError:
                    pass
        for f in self._files:
            f.scan()

    def backlog(self) -> int:
        """Events in the spool not yet acknowledged by the broker (in flight + unread)."""
        if self._left is not None:   # stopped: what it left for the next start
            return self._left
        with self._lock:
            inflight = len(self._pending)
        return inflight + sum(max(0, f.ahead) for f in self._files)

    def spool_bytes(self) -> int:
        total = 0
        for p in spool_chain(self.events):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def _publish_some(self) -> int:
        n = 0
        for f in list(self._files):
            room = self.window - len(self._pending)
            if room <= 0:
                break
            for line, off in f.lines(room):
                f.consumed(off)
                try:
                    ev = json.loads(line)
                    if not isinstance(ev, dict) or "id" not in ev:
                        raise ValueError("not an event")
                except ValueError:
                    self._bump("corrupt", 1)
                    log.warning("MQTT: skipped a spool line of %s that is not an event", f.name)
                    with self._lock:
                        self._pending.append((None, f.ino, off, ""))
                    continue
                eid = f"{self.line}/{self.camera}/{ev.get('run', '-')}/{ev['id']}"
                payload = dict(ev, event_id=eid, line=self.line, camera=self.camera)
                with self._lock:  # publish and record together, so _advance sees every event mid
                    info = self.client.publish(f"{self.base}/events", json.dumps(payload, separators=(",", ":")),
                                               qos=1)
                    self._pending.append((info.mid, f.ino, off, eid))
                self.sent += 1
                n += 1
            if f is not self._files[-1] and f.ahead <= 0 and not any(x[1] == f.ino for x in self._pending):
                # an older file fully sent and acknowledged: nothing more will be appended to it
                f.close()
                self._files.remove(f)
        return n

    def _advance(self) -> None:
        """Move the cursor over the acknowledged prefix of what is in flight."""
        last = None
        acked = 0
        with self._lock:
            while self._pending and (self._pending[0][0] is None or self._pending[0][0] in self._acked):
                mid, ino, off, eid = self._pending.popleft()
                if mid is not None:
                    self._acked.discard(mid)
                    acked += 1
                last = (ino, off, eid or (last[2] if last else ""))
            if self._acked:  # acks of status / metrics messages: forget them (mids are reused)
                waiting = {x[0] for x in self._pending}
                for mid in list(self._acked):
                    if mid not in waiting:
                        self._acked.discard(mid)
        if acked:
            self._bump("published", acked)
        if last is not None:
            ino, off, eid = last
            head = next((f.head for f in self._files if f.ino == ino), "")
            self._cursor_state = {"ino": ino, "offset": off, "head": head, "event_id": eid}
            self._cursor_dirty = True

    def _save_cursor(self, force: bool = False) -> None:
        if self._cursor_dirty and self._cursor_state is not None:
            try:
                self.cursor.save(self._cursor_state)
                self._cursor_dirty = False
            except OSError as e:
                log.warning("MQTT: cannot save the cursor %s: %s", self.cursor.path, e.strerror or e)

    def _run(self) -> None:
        last_save = last_metrics = time.monotonic()
        last_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_refresh >= self.poll:
                self._refresh()
                self._scanned.set()
                last_refresh = now
            sent = self._publish_some() if self.connected else 0
            self._advance()
            if now - last_save >= 0.2:
                self._save_cursor()
                last_save = now
            if self.metrics_interval > 0 and self.connected and now - last_metrics >= self.metrics_interval:
                last_metrics = now
                self._publish_metrics()
            if not sent:
                self._stop.wait(self.poll / 2)

    def _publish_metrics(self) -> None:
        body: Dict[str, Any] = {"ts": time.time(), "mqtt": self.stats()}
        if self.summary is not None:
            try:
                body.update(self.summary())
            except Exception as e:  # a summary must never stop the publisher
                log.warning("MQTT: metrics summary failed: %s", e)
        self.client.publish(f"{self.base}/metrics", json.dumps(body, separators=(",", ":"), default=str), qos=0)

    # -- reporting ----------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        return {"connected": self.connected, "published": self.published, "sent": self.sent,
                "backlog": self.backlog(), "lost": self.lost, "corrupt": self.corrupt, "gaps": self.gaps,
                "connects": self.connects, "spool_bytes": self.spool_bytes()}

    def attach(self, metrics) -> None:
        """Register the publisher's counters, gauges and health check on the daemon's metrics."""
        for name, help_ in (("published", "Events the MQTT broker acknowledged"),
                            ("lost", "Events rotated out of the spool before they were sent to the MQTT broker"),
                            ("corrupt", "Spool lines that are not events (skipped by the MQTT publisher)"),
                            ("gaps", "Spool files rotated away while the daemon was stopped (events lost, count "
                             "unknown)"),
                            ("connects", "Successful connections to the MQTT broker")):
            metrics.add_counter(f"mqtt_{name}", help_)
        self._count = lambda name, n: metrics.inc(f"mqtt_{name}", n)
        metrics.add_gauge("mqtt_connected", "1 while connected to the MQTT broker", fn=lambda: int(self.connected))
        metrics.add_gauge("mqtt_backlog_events", "Spooled events not yet acknowledged by the MQTT broker",
                          fn=self.backlog)
        metrics.add_gauge("mqtt_spool_bytes", "Bytes in the events spool (the events file and its rotated copies)",
                          fn=self.spool_bytes)
        # a broker outage alone is not a health problem (the daemon classifies and spools on, and a
        # restart would not help); events rotated away unsent are
        metrics.add_health_check("mqtt", self._health)

    def _health(self) -> Optional[str]:
        if self._last_lost is not None and time.monotonic() - self._last_lost < LOST_HEALTH_S:
            return (f"{self.lost} event(s) rotated out of the spool before they were sent (broker "
                    f"{'connected' if self.connected else 'unreachable'}); raise rotate_mb / rotate_keep")
        return None


def check_config(cfg) -> None:
    """The checks between the MQTT settings (called by ``edge.capture.config.validate``)."""
    if not cfg.line or not cfg.camera:
        raise EdgeError("--mqtt needs --line NAME and --camera NAME (or line/camera in the config file)")
    check_topic_part(cfg.line, "line")
    check_topic_part(cfg.camera, "camera")
    parse_mqtt_url(cfg.mqtt, cfg.mqtt_password_file)


def file_sha256(path: str | os.PathLike) -> Optional[str]:
    """sha256 of a file (None when it cannot be read, e.g. a triton:// model)."""
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def publisher_for(cfg, runner, run_id: str, summary: Callable[[], Dict[str, Any]]) -> MqttPublisher:
    """The daemon's publisher from its settings (``mqtt``, ``line``, ``camera``, ``mqtt_*``)."""
    from edge import __version__

    check_config(cfg)
    meta = getattr(runner, "meta", None) or {}
    sha = file_sha256(cfg.model) or (meta.get("source_model") or {}).get("sha256") or meta.get("source_sha256")
    status = {"run": run_id, "model": str(cfg.model), "sha256": sha,
              "classes": list(runner.classes), "version": __version__, "host": socket.gethostname()}
    return MqttPublisher(cfg.mqtt, cfg.events, cfg.line, cfg.camera, status=status, summary=summary,
                         metrics_interval=cfg.mqtt_metrics_interval, password_file=cfg.mqtt_password_file,
                         ca_file=cfg.mqtt_ca, cert_file=cfg.mqtt_cert, key_file=cfg.mqtt_key)
