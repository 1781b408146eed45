"""``edge-collect``: one store for the plant.

Examples:
    edge-collect --mqtt mqtt://plant-broker:1883/steel --db /var/lib/steel-edge/plant.db
    edge-collect --mqtt mqtt://collector@plant-broker/steel --db postgresql://edge@dbhost/plant \\
        --mqtt-password-file /etc/steel-edge/mqtt.pw
    edge-collect line-speed --db plant.db --line hsm1 --m-per-min 300
    edge-collect report --db plant.db --since 1h --line hsm1 --md
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import List, Optional

from edge.errors import EdgeError, cli_entry
from edge.log import add_log_flags

PROG = "edge-collect"


def _collect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(PROG, description="Subscribe PREFIX/# (QoS 1, persistent session) and store every "
                                "line's events, device statuses and metrics in one database, deduplicated by event "
                                "id. Subcommands: 'report', 'line-speed'.")
    p.add_argument("--mqtt", required=True, help="mqtt[s]://[user[:password]@]host[:port]/PREFIX")
    p.add_argument("--db", default="plant.db", help="SQLite file (default plant.db) or postgresql://... (psycopg 3)")
    p.add_argument("--client-id", help="MQTT client id of the persistent session (default from the prefix)")
    p.add_argument("--mqtt-password-file", help="file with the broker password (else $EDGE_MQTT_PASSWORD)")
    p.add_argument("--mqtt-ca", help="CA bundle for mqtts://")
    p.add_argument("--mqtt-cert", help="client certificate for mqtts://")
    p.add_argument("--mqtt-key", help="client key for mqtts://")
    p.add_argument("--batch", type=int, default=500, help="messages per database transaction at most (default 500)")
    p.add_argument("--max-messages", type=int, help="exit after storing this many messages")
    p.add_argument("--idle-exit", type=float, help="exit when no message came for this many seconds")
    return add_log_flags(p)


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"{PROG} report", description="Defects per line / camera / class / hour, defects "
                                "per metre where the line speed is known, devices not online, top-10 events.")
    p.add_argument("--db", required=True, help="SQLite file or postgresql://...")
    p.add_argument("--since", help="only events of the last 90s / 30m / 1h / 2d (default: all)")
    p.add_argument("--line", help="only this line")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--md", dest="fmt", action="store_const", const="md", help="Markdown (default)")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="JSON")
    fmt.add_argument("--html", dest="fmt", action="store_const", const="html", help="HTML")
    p.add_argument("-o", "--out", help="write to this file instead of stdout")
    return add_log_flags(p)


def _speed_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(f"{PROG} line-speed", description="Record a line's strip speed (for defects per metre).")
    p.add_argument("--db", required=True, help="SQLite file or postgresql://...")
    p.add_argument("--line", required=True)
    p.add_argument("--m-per-min", type=float, required=True, help="strip speed in metres per minute")
    return add_log_flags(p)


@cli_entry(PROG, log_level=logging.WARNING)
def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from collect.store import Store

    if argv and argv[0] == "report":
        from collect.report import build_report, parse_since, to_html, to_json, to_markdown

        a = _report_parser().parse_args(argv[1:])
        since = parse_since(a.since)
        with Store(a.db) as store:
            r = build_report(store, since, a.line)
        text = {"json": to_json, "html": to_html}.get(a.fmt, to_markdown)(r)
        if a.out:
            from edge.fsutil import atomic_path

            with atomic_path(a.out) as tmp:
                tmp.write_text(text + "\n")
        else:
            print(text)
        return 0
    if argv and argv[0] == "line-speed":
        a = _speed_parser().parse_args(argv[1:])
        with Store(a.db) as store:
            store.set_line_speed(a.line, a.m_per_min)
        return 0

    from collect.subscriber import Collector

    a = _collect_parser().parse_args(argv)
    if a.batch < 1:
        raise EdgeError(f"--batch must be >= 1, got {a.batch}")
    stop = threading.Event()
    with Store(a.db) as store:
        c = Collector(a.mqtt, store, a.client_id, a.mqtt_password_file, a.mqtt_ca, a.mqtt_cert, a.mqtt_key,
                      batch=a.batch).start()
        old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            c.run(stop, a.max_messages, a.idle_exit)
        finally:
            c.stop()
            for s, h in old.items():
                signal.signal(s, h)
    st = c.stats
    print(f"{PROG}: messages {st['messages']}, events stored {st['events']}, duplicates dropped {st['duplicates']}, "
          f"statuses {st['statuses']}, metrics {st['metrics']}, ignored {st['ignored']}, bad {st['bad']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
