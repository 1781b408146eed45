"""edge-capture --mqtt: URL and password handling, and store-and-forward against a real mosquitto broker."""

import json
import os

import pytest

from edge.capture.events import EventWriter, read_events
from edge.errors import EdgeError
from scripts.fixtures.polling import wait_until

mqtt_mod = pytest.importorskip("edge.capture.mqtt")
pytest.importorskip("paho.mqtt.client")
from edge.capture.mqtt import MqttPublisher, parse_mqtt_url  # noqa: E402


def test_parse_url_password_sources_never_shown(tmp_path, monkeypatch):
    t = parse_mqtt_url("mqtts://op:s3cr%40t@broker.plant:8884/steel/hsm")
    assert (t.host, t.port, t.prefix, t.tls, t.username, t.password) == ("broker.plant", 8884, "steel/hsm", True,
                                                                        "op", "s3cr@t")
    assert "s3cr" not in repr(t) and "s3cr" not in t.safe_url
    assert parse_mqtt_url("mqtt://h/p").port == 1883 and parse_mqtt_url("mqtts://h/p").port == 8883
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "from-env")
    assert parse_mqtt_url("mqtt://u@h/p", str(pw)).password == "from-file"
    assert parse_mqtt_url("mqtt://u@h/p").password == "from-env"
    for bad, msg in [("http://h/p", "mqtt://"), ("mqtt:///p", "no host"), ("mqtt://h", "prefix"),
                     ("mqtt://h/a/#", "must not contain"), ("mqtt://h:99999/p", "port")]:
        with pytest.raises(EdgeError, match=msg):
            parse_mqtt_url(bad)
    with pytest.raises(EdgeError, match="password file"):
        parse_mqtt_url("mqtt://u@h/p", str(tmp_path / "missing"))


def test_config_needs_line_and_camera(tmp_path):
    from edge.capture.config import merge

    base = {"model": "m.onnx", "source": "x", "mqtt": "mqtt://127.0.0.1:1/plant"}
    with pytest.raises(EdgeError, match="--line"):
        merge(base, {"camera": "top"})
    with pytest.raises(EdgeError, match="--camera"):
        merge(base, {"line": "l1", "camera": "a/b"})
    assert merge(base, {"line": "l1", "camera": "top"}).mqtt.endswith("/plant")


def write_events(path, ids, run="r1", **kw):
    w = EventWriter(path, **kw)
    for i in ids:
        w.write({"id": f"{i:08d}", "run": run, "label": "crazing", "confidence": 0.9})
    w.close()


def make_pub(port, events, **kw):
    return MqttPublisher(f"mqtt://127.0.0.1:{port}/plant", events, "l1", "cam", status={"run": "r1", "model": "m"},
                         metrics_interval=kw.pop("metrics_interval", 0), poll=0.02, **kw)


def test_publishes_spool_in_order_with_status_and_resumes_at_cursor(tmp_path, mosquitto, recorder_factory):
    ev = tmp_path / "events.jsonl"
    write_events(ev, range(50))
    rec = recorder_factory(mosquitto.port, "plant/#")
    pub = make_pub(mosquitto.port, ev, metrics_interval=0.2, summary=lambda: {"frames_processed": 7}).start()
    assert rec.wait_for(lambda: len(rec.events()) >= 50, 20)
    assert rec.wait_for(lambda: "plant/l1/cam/metrics" in rec.messages, 5)
    pub.stop()
    got = [e["event_id"] for e in rec.events()]
    assert got == [f"l1/cam/r1/{i:08d}" for i in range(50)]          # in spool order, each once
    assert rec.wait_for(lambda: rec.last("plant/l1/cam/status")["state"] == "offline", 10)  # graceful stop
    online = rec.messages["plant/l1/cam/status"][0]
    assert online["state"] == "online" and online["model"] == "m"
    assert rec.last("plant/l1/cam/metrics")["frames_processed"] == 7
    cur = json.loads((tmp_path / "events.jsonl.mqtt-cursor").read_text())
    assert cur["event_id"] == "l1/cam/r1/00000049" and cur["offset"] == ev.stat().st_size
    assert pub.stats()["published"] == 50 and pub.backlog() == 0

    # a new start sends only what was appended since
    write_events(ev, range(50, 60))
    pub2 = make_pub(mosquitto.port, ev).start()
    assert rec.wait_for(lambda: len(rec.events()) >= 60, 20)
    pub2.stop()
    assert [e["event_id"] for e in rec.events()][50:] == [f"l1/cam/r1/{i:08d}" for i in range(50, 60)]
    assert len(rec.events()) == 60


def test_broker_down_backlog_then_rotation_counts_lost(tmp_path, recorder_factory):
    """Broker away: events stay in the spool (backlog grows); events rotated away unsent are counted lost."""
    from scripts.fixtures.mosquitto import Mosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path / "b")              # not started yet: the publisher starts without a broker
    ev = tmp_path / "events.jsonl"
    from edge.capture.metrics import Metrics

    m = Metrics(["crazing"])
    pub = make_pub(broker.port, ev)
    pub.attach(m)
    pub.start()
    line = len(json.dumps({"id": "00000000", "run": "r1", "label": "crazing", "confidence": 0.9},
                          separators=(",", ":"))) + 1
    w = EventWriter(ev, max_bytes=line * 100, backups=1, flush_interval=0.01)
    for i in range(150):                            # 1.5 files: all kept, nothing lost yet
        w.write({"id": f"{i:08d}", "run": "r1", "label": "crazing", "confidence": 0.9})
    w.flush()
    assert pub.backlog() in (0, 150)                # scanned on the next poll
    assert wait_until(lambda: pub.backlog() == 150, 5) and not pub.connected
    assert not [p for p in m.health()["problems"] if p.startswith("mqtt")]   # an outage alone: healthy
    for i in range(150, 300):                       # two more rotations: the first 100 events are rotated away
        w.write({"id": f"{i:08d}", "run": "r1", "label": "crazing", "confidence": 0.9})
        if i % 50 == 0:
            w.flush()
            # the publisher (polling every 20 ms) has seen every file before the next rotation: each event
            # written is either in its backlog or counted lost
            assert wait_until(lambda: pub.backlog() + pub.lost == i + 1, 5), (i, pub.backlog(), pub.lost)
    w.close()
    assert wait_until(lambda: pub.lost == 100, 5)
    kept = read_events(ev)
    assert [e["id"] for e in kept] == [f"{i:08d}" for i in range(100, 300)]
    broker.start()
    rec = recorder_factory(broker.port, "plant/#")
    try:
        assert rec.wait_for(lambda: len(set(rec.event_ids())) >= 200, 30)
        pub.stop()
        assert set(rec.event_ids()) == {f"l1/cam/r1/{i:08d}" for i in range(100, 300)}
        assert pub.backlog() == 0
        text = m.render()
        assert "rotated out of the spool" in " ".join(m.health()["problems"])   # /healthz degraded
        assert "edge_capture_mqtt_lost_total 100.0" in text and "edge_capture_mqtt_backlog_events 0.0" in text
        assert "edge_capture_mqtt_published_total 200.0" in text
    finally:
        broker.kill()


def _video(path, n, tiles=8, t=32):
    import cv2
    import numpy as np

    from scripts.fixtures.intensity_model import class_level

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25, (tiles * t, t), isColor=False)
    for f in range(n):
        img = np.zeros((t, tiles * t), np.uint8)
        for k in range(tiles):
            img[:, k * t:(k + 1) * t] = class_level((f + k) % 6)
        w.write(img)
    w.release()
    return path


def _daemon(model, video, events, port, *extra):
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "edge.capture.cli", "--model", str(model), "--source", str(video), "--events",
           str(events), "--log-all", "--batch", "8", "--flush-interval", "0.2",
           "--mqtt", f"mqtt://127.0.0.1:{port}/plant", "--line", "l1", "--camera", "top", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_broker_kill_and_daemon_sigkill_lose_nothing(tmp_path, recorder_factory):
    """The issue's test: a real broker SIGKILLed mid-run and restarted, the daemon SIGKILLed and restarted;
    every event id in the spool reached a persistent-session subscriber at least once."""
    import signal

    from scripts.fixtures.intensity_model import make_intensity_model
    from scripts.fixtures.mosquitto import Mosquitto, find_mosquitto, free_port

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (.ci/run installs it with apt-get)")
    model = make_intensity_model(tmp_path / "m.onnx", 32)
    long_video = _video(tmp_path / "long.avi", 1500)    # 60 s at 25 fps with --realtime: SIGKILLed before its end
    short_video = _video(tmp_path / "short.avi", 40)
    events = tmp_path / "ev" / "events.jsonl"
    p_dev, p_sub = free_port(), free_port()
    # the subscriber has its own listener, so after the crash its persistent session can be restored
    # before the daemon's listener opens (persistence saved by a graceful stop in between)
    broker = Mosquitto(tmp_path / "broker", ports=[p_dev, p_sub], persistence=True).start()
    d1 = d2 = None
    try:
        rec = recorder_factory(p_sub, "plant/#", "collector-under-test")
        d1 = _daemon(model, long_video, events, p_dev, "--realtime")
        assert rec.wait_for(lambda: len(rec.events()) >= 200, 60), "no events arrived before the broker kill"
        spooled = events.read_bytes().count(b"\n")
        broker.kill()                                    # broker crash mid-run
        rec.subscribed.clear()
        # the daemon keeps classifying and spooling
        assert wait_until(lambda: events.read_bytes().count(b"\n") >= spooled + 50, 30), "nothing spooled in the outage"
        broker.start(ports=[p_sub])                      # subscriber back first ...
        assert rec.subscribed.wait(20)
        broker.stop()                                    # ... its session saved ...
        broker.start()                                   # ... then the whole broker again
        before = len(rec.events())
        assert rec.wait_for(lambda: len(rec.events()) >= before + 200, 60), "the daemon did not resume sending"
        assert d1.poll() is None, "the first daemon ended before its SIGKILL: " + (d1.stdout.read() or "")
        d1.send_signal(signal.SIGKILL)                   # daemon crash mid-run
        d1.wait(10)
        d2 = _daemon(model, short_video, events, p_dev, "--mqtt-drain", "20")
        out, _ = d2.communicate(timeout=120)
        assert d2.returncode == 0, out
        written = {f"l1/top/{e['run']}/{e['id']}" for e in read_events(events)}
        assert len({e["run"] for e in read_events(events)}) == 2 and len(written) > 400
        rec.wait_for(lambda: written <= set(rec.event_ids()), 30)
        got = rec.event_ids()
        lost = written - set(got)
        dups = sum(n - 1 for n in got.values())
        print(f"\nbroker-kill test: written {len(written)}, received {sum(got.values())} "
              f"({len(got)} unique), lost {len(lost)}, duplicates {dups}")
        assert not lost, f"{len(lost)} event(s) never arrived, e.g. {sorted(lost)[:3]}"
        assert set(got) <= written                        # nothing invented
        cur = json.loads((events.parent / "events.jsonl.mqtt-cursor").read_text())
        assert cur["offset"] == events.stat().st_size     # the second daemon drained the spool before exiting
    finally:
        for d in (d1, d2):
            if d is not None and d.poll() is None:
                d.kill()
                d.wait(10)
        broker.kill()


def test_password_never_in_logs_status_or_stats(tmp_path, caplog):
    """A broker that cannot be reached, a password in the URL: not in any log line, status or summary."""
    import logging
    import threading

    from scripts.fixtures.mosquitto import free_port

    ev = tmp_path / "events.jsonl"
    write_events(ev, range(3))
    caplog.set_level(logging.DEBUG)
    pub = MqttPublisher(f"mqtt://op:Hunter2-secret@127.0.0.1:{free_port()}/plant", ev, "l1", "cam",
                        status={"run": "r1"}, metrics_interval=0, poll=0.02)
    failed = threading.Event()
    pub.client.on_connect_fail = lambda client, userdata: failed.set()   # paho: a connection attempt failed
    pub.start()
    assert failed.wait(20) and wait_until(lambda: pub.backlog() == 3, 5)
    pub.stop(drain_s=0.2)
    seen = caplog.text + repr(pub.target) + pub.target.safe_url + pub._status_payload("online") + json.dumps(pub.stats())
    assert "Hunter2" not in seen and "op@127.0.0.1" in pub.target.safe_url
    assert pub.backlog() == 3 and not pub.connected          # kept in the spool for the next start


def _certs(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")

    def ssl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "line1-top")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.crt", "-days", "2", *(["-extfile", "san.ext"] if name == "server" else []))
    return {k: str(d / f) for k, f in (("ca", "ca.crt"), ("scrt", "server.crt"), ("skey", "server.key"),
                                         ("ccrt", "client.crt"), ("ckey", "client.key"))}


def test_mqtts_with_ca_and_client_certificate(tmp_path):
    """mqtts:// against mosquitto with TLS that requires a client certificate: delivered with the CA and the
    client certificate; refused (nothing acknowledged, events kept) without the client certificate."""
    import paho.mqtt.client as mqtt

    from scripts.fixtures.mosquitto import Mosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "pki").mkdir()
    c = _certs(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "b", tls={"cafile": c["ca"], "certfile": c["scrt"], "keyfile": c["skey"],
                                            "require_certificate": True}).start()
    try:
        got = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub")
        sub.tls_set(ca_certs=c["ca"], certfile=c["ccrt"], keyfile=c["ckey"])
        ready = __import__("threading").Event()
        sub.on_connect = lambda cl, *a: cl.subscribe("plant/+/+/events", qos=1)
        sub.on_subscribe = lambda *a: ready.set()
        sub.on_message = lambda cl, u, m: got.append(json.loads(m.payload)["event_id"])
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        assert ready.wait(10)
        ev = tmp_path / "events.jsonl"
        write_events(ev, range(20))
        url = f"mqtts://127.0.0.1:{broker.port}/plant"
        with pytest.raises(EdgeError, match="use mqtts"):
            MqttPublisher(url.replace("mqtts", "mqtt"), ev, "l1", "top", ca_file=c["ca"])
        bare = MqttPublisher(url, ev, "l1", "top", ca_file=c["ca"], metrics_interval=0, poll=0.02).start()
        bare.stop(drain_s=1.5)
        assert bare.published == 0 and bare.backlog() == 20 and not got   # no client certificate: refused
        pub = MqttPublisher(url, ev, "l1", "top", ca_file=c["ca"], cert_file=c["ccrt"], key_file=c["ckey"],
                            metrics_interval=0, poll=0.02).start()
        pub.stop(drain_s=20)
        assert pub.published == 20 and pub.backlog() == 0
        wait_until(lambda: len(got) >= 20, 10)
        assert sorted(set(got)) == [f"l1/top/r1/{i:08d}" for i in range(20)]
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.kill()
