"""``edge-collect report``: defects per line / camera / class / hour from the plant's event store.

Figures: events per line, camera and class; per hour and line; the defect rate per metre of strip
for lines with a known speed (``edge-collect line-speed``): metres = speed x the span between the
line's first and last event in the window; the devices whose last status is not ``online``; and
the ten most confident events with the crop file the daemon saved for them (on that device, in
its ``--save-crops`` folder).
"""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any, Dict, List, Optional

from collect.store import Store, rows_as_dicts
from edge.errors import EdgeError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: Optional[str]) -> Optional[float]:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` → seconds (None: everything)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise EdgeError(f"--since must be a positive duration like 90s, 30m, 1h, 2d, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def build_report(store: Store, since_s: Optional[float] = None, line: Optional[str] = None,
                 now: Optional[float] = None) -> Dict[str, Any]:
    """The report as a dict (what ``--json`` prints)."""
    now = time.time() if now is None else now
    def where(alias: str = ""):
        conds, params = ["1 = 1"], []
        if since_s is not None:
            conds.append(f"{alias}ts >= ?")
            params.append(now - since_s)
        if line is not None:
            conds.append(f"{alias}line = ?")
            params.append(line)
        return " AND ".join(conds), params

    w, params = where()
    we, _ = where("e.")
    hour = "CAST(ts / 3600 AS INTEGER) * 3600" if store.kind == "sqlite" else "(FLOOR(ts / 3600) * 3600)::BIGINT"

    total = store.query(f"SELECT COUNT(*), MIN(ts), MAX(ts) FROM events WHERE {w}", params)[0]
    by_class = rows_as_dicts(("line", "camera", "label", "events", "uncertain"), store.query(
        f"SELECT line, camera, label, COUNT(*), SUM(CASE WHEN uncertain THEN 1 ELSE 0 END) FROM events WHERE {w} "
        "GROUP BY line, camera, label ORDER BY line, camera, label", params))
    by_hour = rows_as_dicts(("hour", "line", "events"), store.query(
        f"SELECT {hour} AS h, line, COUNT(*) FROM events WHERE {w} GROUP BY h, line ORDER BY h, line", params))
    for r in by_hour:
        r["hour"] = time.strftime("%Y-%m-%d %H:00Z", time.gmtime(int(r["hour"])))
    per_line = rows_as_dicts(("line", "events", "first_ts", "last_ts", "speed_m_per_min"), store.query(
        f"SELECT e.line, COUNT(*), MIN(e.ts), MAX(e.ts), MAX(l.speed_m_per_min) FROM events e "
        f"LEFT JOIN lines l ON l.line = e.line WHERE {we} "
        "GROUP BY e.line ORDER BY e.line", params))
    for r in per_line:
        span = (r["last_ts"] or 0) - (r["first_ts"] or 0)
        if r["speed_m_per_min"] and span > 0:
            r["metres"] = round(r["speed_m_per_min"] * span / 60.0, 1)
            r["defects_per_m"] = round(r["events"] / r["metres"], 4)
        else:
            r["metres"] = r["defects_per_m"] = None
    dwhere, dparams = ("WHERE line = ?", [line]) if line is not None else ("", [])
    devices = rows_as_dicts(("line", "camera", "state", "model", "sha256", "version", "host", "last_status",
                             "last_seen"), store.query(
        f"SELECT line, camera, state, model, sha256, version, host, last_status, last_seen FROM devices {dwhere} "
        "ORDER BY line, camera", dparams))
    offline = [d for d in devices if d["state"] != "online"]
    top = rows_as_dicts(("event_id", "line", "camera", "ts", "label", "confidence", "crop"), store.query(
        f"SELECT event_id, line, camera, ts, label, confidence, crop FROM events WHERE {w} "
        "ORDER BY confidence DESC, ts DESC LIMIT 10", params))
    return {"generated": now, "since_s": since_s, "line": line, "events": total[0], "first_ts": total[1],
            "last_ts": total[2], "by_class": by_class, "by_hour": by_hour, "per_line": per_line,
            "devices": devices, "offline": offline, "top_confident": top}


def _t(ts: Optional[float]) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _tables(r: Dict[str, Any]) -> List[tuple]:
    """(title, header, rows) of every table of the report."""
    return [
        ("Events per line, camera and class", ["line", "camera", "class", "events", "uncertain"],
         [[x["line"], x["camera"], x["label"], x["events"], x["uncertain"]] for x in r["by_class"]]),
        ("Events per hour and line", ["hour (UTC)", "line", "events"],
         [[x["hour"], x["line"], x["events"]] for x in r["by_hour"]]),
        ("Defect rate per metre of strip", ["line", "events", "speed (m/min)", "metres", "defects / m"],
         [[x["line"], x["events"], x["speed_m_per_min"] if x["speed_m_per_min"] else "unknown",
           x["metres"] if x["metres"] is not None else "-",
           x["defects_per_m"] if x["defects_per_m"] is not None else "-"] for x in r["per_line"]]),
        ("Devices not online", ["line", "camera", "state", "last status", "model sha256"],
         [[x["line"], x["camera"], x["state"] or "unknown", _t(x["last_status"]), (x["sha256"] or "-")[:12]]
          for x in r["offline"]]),
        ("Top 10 most confident events", ["event", "class", "confidence", "time", "crop (on the device)"],
         [[x["event_id"], x["label"], f"{x['confidence']:.4f}" if x["confidence"] is not None else "-", _t(x["ts"]),
           x["crop"] or "-"] for x in r["top_confident"]]),
    ]


def _head(r: Dict[str, Any]) -> str:
    window = "all stored events" if r["since_s"] is None else f"the last {r['since_s'] / 3600:g} h"
    scope = f", line {r['line']}" if r["line"] else ""
    return (f"{r['events']} event(s) in {window}{scope} ({_t(r['first_ts'])} to {_t(r['last_ts'])}); "
            f"{len(r['devices'])} device(s), {len(r['offline'])} not online")


def to_markdown(r: Dict[str, Any]) -> str:
    out = ["# Plant report", "", _head(r), ""]
    for title, head, rows in _tables(r):
        out += [f"## {title}", ""]
        if not rows:
            out += ["(none)", ""]
            continue
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def to_html(r: Dict[str, Any]) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>Plant report</title>",
           "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
           "td,th{border:1px solid #999;padding:2px 6px}</style></head><body>",
           "<h1>Plant report</h1>", f"<p>{e(_head(r))}</p>"]
    for title, head, rows in _tables(r):
        out.append(f"<h2>{e(title)}</h2>")
        if not rows:
            out.append("<p>(none)</p>")
            continue
        out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def to_json(r: Dict[str, Any]) -> str:
    return json.dumps(r, indent=2, default=str)
