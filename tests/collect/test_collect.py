"""edge-collect against a real broker, into SQLite and (where installed) PostgreSQL: dedup by event id,
device statuses, models, and the report."""

import json
import threading
import time

import pytest

from edge.capture.events import EventWriter
from edge.errors import EdgeError
from scripts.fixtures.polling import wait_until

pytest.importorskip("paho.mqtt.client")
from collect.report import build_report, parse_since, to_html, to_markdown  # noqa: E402
from collect.store import Store  # noqa: E402
from collect.subscriber import Collector  # noqa: E402
from edge.capture.mqtt import MqttPublisher  # noqa: E402

LABELS = ["crazing", "inclusion", "patches"]


def spool(path, n, run, t0):
    w = EventWriter(path)
    for i in range(n):
        w.write({"id": f"{i:08d}", "run": run, "ts": t0 + i, "label": LABELS[i % 3], "confidence": 0.5 + i / (2 * n),
                 "uncertain": i % 10 == 0, **({"crop": f"{i:08d}_{LABELS[i % 3]}.png"} if i % 2 else {})})
    w.close()


def wait(cond, timeout=30.0):
    return wait_until(cond, timeout, poll=0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "plant.db")
    url = request.getfixturevalue("postgres_url")
    with Store(url) as s, s.transaction() as cur:  # a clean schema per test
        for t in ("events", "devices", "models", "lines"):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    return url


def test_collect_two_lines_dedup_status_and_report(tmp_path, broker, db_url):
    url = f"mqtt://127.0.0.1:{broker.port}/plant"
    t0 = time.time() - 3600
    with Store(db_url) as store:
        col = Collector(url, store, client_id="collector-test").start()
        stop = threading.Event()
        th = threading.Thread(target=col.run, args=(stop,), daemon=True)
        th.start()
        assert col.connected.wait(10)
        pubs = []
        for line, cam, n in (("l1", "top", 120), ("l2", "bottom", 60)):
            ev = tmp_path / line / "events.jsonl"
            spool(ev, n, f"run-{line}", t0)
            pubs.append(MqttPublisher(url, ev, line, cam, status={"run": f"run-{line}", "model": "m.onnx",
                                                                  "sha256": "ab" * 32, "classes": LABELS,
                                                                  "version": "0.1.0"},
                                      metrics_interval=0, poll=0.02).start())
        assert wait(lambda: col.stats["events"] == 180), col.stats
        pubs[1].stop()                                          # l2 goes offline (retained status)
        assert wait(lambda: store.query("SELECT state FROM devices WHERE line = 'l2'") == [("offline",)])
        # the whole l1 spool sent again (cursor lost): every event a duplicate, nothing stored twice
        pubs[0].stop()
        (tmp_path / "l1" / "events.jsonl.mqtt-cursor").unlink()
        again = MqttPublisher(url, tmp_path / "l1" / "events.jsonl", "l1", "top", status={"run": "run-l1"},
                              metrics_interval=0, poll=0.02).start()
        assert wait(lambda: col.stats["duplicates"] == 120), col.stats
        again.stop()
        stop.set()
        th.join(10)
        col.stop()

        assert store.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events") == [(180, 180)]
        assert store.query("SELECT sha256, classes FROM models") == [("ab" * 32, json.dumps(LABELS))]
        assert store.query("SELECT COUNT(*) FROM events WHERE model_sha256 = ?", ("ab" * 32,))[0][0] == 180
        store.set_line_speed("l1", 60.0)                        # 1 m/s
        r = build_report(store)
        assert r["events"] == 180
        per = {(x["line"], x["label"]): x["events"] for x in r["by_class"]}
        assert per == {("l1", "crazing"): 40, ("l1", "inclusion"): 40, ("l1", "patches"): 40,
                       ("l2", "crazing"): 20, ("l2", "inclusion"): 20, ("l2", "patches"): 20}
        assert sum(x["events"] for x in r["by_hour"]) == 180
        l1 = next(x for x in r["per_line"] if x["line"] == "l1")
        assert l1["metres"] == 119.0 and l1["defects_per_m"] == round(120 / 119.0, 4)   # ts span 119 s at 1 m/s
        assert next(x for x in r["per_line"] if x["line"] == "l2")["defects_per_m"] is None  # speed unknown
        assert {(d["line"], d["state"]) for d in r["offline"]} == {("l1", "offline"), ("l2", "offline")}
        top = r["top_confident"]
        assert len(top) == 10 and top[0]["event_id"] == "l1/top/run-l1/00000119" and top[0]["crop"]
        assert [x["confidence"] for x in top] == sorted((x["confidence"] for x in top), reverse=True)
        # filters
        only = build_report(store, line="l2")
        assert only["events"] == 60 and {x["line"] for x in only["by_class"]} == {"l2"}
        recent = build_report(store, since_s=3600 - 100, now=t0 + 3600)   # ts >= t0 + 100: l1's 100..119
        assert recent["events"] == 20
        md, page = to_markdown(r), to_html(r)
        assert "| l1 | top | crazing | 40 |" in md and "<td>l2</td>" in page and "00000119_patches.png" in md


def test_report_cli_formats_and_errors(tmp_path, capsys):
    from collect.cli import main

    db = tmp_path / "plant.db"
    with Store(db) as store, store.transaction() as cur:
        store.insert_event(cur, "l1", "top", {"event_id": "l1/top/r/1", "id": "1", "run": "r", "ts": time.time(),
                                              "label": "crazing", "confidence": 0.9})
        store.upsert_status(cur, "l1", "top", {"state": "online", "sha256": "cd" * 32, "classes": ["crazing"]})
    assert main(["report", "--db", str(db), "--json", "--since", "1h"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["events"] == 1 and r["offline"] == [] and r["by_class"][0]["label"] == "crazing"
    assert main(["report", "--db", str(db), "--html", "-o", str(tmp_path / "r.html")]) == 0
    assert "<table>" in (tmp_path / "r.html").read_text()
    assert main(["line-speed", "--db", str(db), "--line", "l1", "--m-per-min", "120"]) == 0
    assert main(["report", "--db", str(db), "--md"]) == 0
    assert "| l1 | 1 | 120.0 |" in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--since", "soon"]) == 2
    assert "--since must be" in capsys.readouterr().err
    assert main(["report", "--db", "mysql://x/y"]) == 2
    assert main(["line-speed", "--db", str(db), "--line", "l1", "--m-per-min", "-3"]) == 2
    assert main(["report", "--db", str(tmp_path / "missing" / "x.db")]) == 2
    with pytest.raises(EdgeError, match="positive duration"):
        parse_since("0h")


def test_collector_cli_stores_and_exits(tmp_path, broker):
    """edge-collect as a command: runs until --max-messages, prints its counts."""
    import os
    import subprocess
    import sys

    url = f"mqtt://127.0.0.1:{broker.port}/plant"
    ev = tmp_path / "events.jsonl"
    spool(ev, 30, "r", time.time())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "collect.cli", "--mqtt", url, "--db", str(tmp_path / "p.db"),
                             "--max-messages", "31", "--idle-exit", "30", "-v"], env=env, text=True,
                            stderr=subprocess.PIPE)
    try:
        first = proc.stderr.readline()                           # -v: logged once the SUBSCRIBE is sent
        assert "collecting plant/#" in first, first
        pub = MqttPublisher(url, ev, "l1", "top", status={"run": "r"}, metrics_interval=0, poll=0.02).start()
        _, err = proc.communicate(timeout=60)
        err = first + err
        pub.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "events stored 30" in err and "statuses 1" in err
    with Store(tmp_path / "p.db") as s:
        assert s.query("SELECT COUNT(*) FROM events")[0][0] == 30


def test_collector_sigkilled_mid_stream_loses_nothing(tmp_path, broker):
    """The collector acknowledges a message only after its transaction committed: SIGKILLed while
    events stream in and started again (same client id, persistent session), the database ends with
    every event exactly once."""
    import os
    import signal
    import subprocess
    import sys

    url = f"mqtt://127.0.0.1:{broker.port}/plant"
    db = tmp_path / "p.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))

    def collector(*extra):
        p = subprocess.Popen([sys.executable, "-m", "collect.cli", "--mqtt", url, "--db", str(db), "--client-id",
                              "plant-collector", "--batch", "50", "-v", *extra], env=env, text=True,
                             stderr=subprocess.PIPE)
        assert "collecting plant/#" in p.stderr.readline()
        return p

    c1 = collector()
    ev = tmp_path / "events.jsonl"
    spool(ev, 3000, "r", time.time())
    pub = MqttPublisher(url, ev, "l1", "top", status={"run": "r"}, metrics_interval=0, poll=0.02).start()
    try:
        def stored():
            try:
                with Store(db) as s:
                    return s.query("SELECT COUNT(*) FROM events")[0][0]
            except Exception:  # noqa: BLE001 - the file may be mid-creation
                return 0
        assert wait(lambda: stored() >= 300, 60)
        c1.send_signal(signal.SIGKILL)                       # mid-stream
        c1.wait(10)
        assert stored() < 3000
        c2 = collector("--idle-exit", "5")
        _, err = c2.communicate(timeout=120)
        assert c2.returncode == 0, err
    finally:
        pub.stop()
        for p in (c1,):
            if p.poll() is None:
                p.kill()
    with Store(db) as s:
        assert s.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events") == [(3000, 3000)]
