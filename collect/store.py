"""The plant's event store: one schema on SQLite (a file, embedded) or PostgreSQL (psycopg 3).

Tables:
    events   one row per event, keyed by ``event_id`` (``<line>/<camera>/<run>/<id>``): duplicates
             from at-least-once delivery are dropped by the primary key (``ON CONFLICT DO NOTHING``).
    devices  one row per (line, camera): its last status (online/offline, model, sha256, version)
             and its last metrics summary.
    models   one row per model sha256 seen in a status message (path, classes, software version).
    lines    line speeds in metres per minute (set with ``edge-collect line-speed``), for defect
             rates per metre of strip.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from edge.errors import EdgeError

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        event_id TEXT PRIMARY KEY,
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        run TEXT,
        id TEXT,
        ts DOUBLE PRECISION,
        label TEXT,
        confidence DOUBLE PRECISION,
        uncertain BOOLEAN,
        crop TEXT,
        model_sha256 TEXT,
        payload TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
    "CREATE INDEX IF NOT EXISTS events_line_ts ON events (line, ts)",
    """CREATE TABLE IF NOT EXISTS devices (
        line TEXT NOT NULL,
        camera TEXT NOT NULL,
        state TEXT,
        model TEXT,
        sha256 TEXT,
        version TEXT,
        run TEXT,
        host TEXT,
        status TEXT,
        metrics TEXT,
        last_status DOUBLE PRECISION,
        last_seen DOUBLE PRECISION,
        PRIMARY KEY (line, camera))""",
    """CREATE TABLE IF NOT EXISTS models (
        sha256 TEXT PRIMARY KEY,
        model TEXT,
        classes TEXT,
        version TEXT,
        first_seen DOUBLE PRECISION,
        last_seen DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS lines (
        line TEXT PRIMARY KEY,
        speed_m_per_min DOUBLE PRECISION NOT NULL)""",
]

EVENT_COLUMNS = ("event_id", "line", "camera", "run", "id", "ts", "label", "confidence", "uncertain", "crop",
                 "model_sha256", "payload", "received")


class Store:
    """A DB-API connection with the schema, for ``sqlite:///path``, a plain path, or ``postgresql://...``.

    Args:
        url: ``events.db`` / ``sqlite:///rel.db`` / ``sqlite:////abs/path.db`` (SQLite) or ``postgresql://user@host:port/db`` (psycopg 3).
    """

    def __init__(self, url: str):
        self.url = str(url)
        u = urlsplit(self.url)
        if u.scheme in ("postgresql", "postgres"):
            try:
                import psycopg
            except ImportError:
                raise EdgeError("a postgresql:// database needs psycopg 3 (pip install 'steel-edge[plant]')") from None
            try:
                self.conn = psycopg.connect(self.url, connect_timeout=10)
            except psycopg.Error as e:
                raise EdgeError(f"cannot connect to {self.safe_url}: {' '.join(str(e).split())}") from None
            self.kind = "postgresql"
            self.errors: Tuple[type, ...] = (psycopg.Error,)
        elif u.scheme in ("", "sqlite") or len(u.scheme) == 1:  # len 1: a Windows drive letter
            # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db; or a plain path
            path = self.url[len("sqlite:///"):] if self.url.startswith("sqlite:///") else (
                "" if u.scheme == "sqlite" else self.url)
            if not path:
                raise EdgeError("SQLite URL has no file: sqlite:///relative.db or sqlite:////abs/path.db")
            p = Path(path)
            if p.parent and not p.parent.exists():
                raise EdgeError(f"folder of the database {p} does not exist")
            try:
                self.conn = sqlite3.connect(str(p), timeout=30, check_same_thread=False)
                self.conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as e:
                raise EdgeError(f"cannot open SQLite database {p}: {e}") from None
            self.kind = "sqlite"
            self.errors = (sqlite3.Error,)
        else:
            raise EdgeError(f"database URL must be a SQLite path / sqlite:///path or postgresql://..., "
                            f"got {u.scheme}://")
        self._create()

    @property
    def safe_url(self) -> str:
        u = urlsplit(self.url)
        if u.password:
            return self.url.replace(f":{u.password}@", ":***@")
        return self.url

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.kind == "postgresql" else q

    def _create(self) -> None:
        with self.transaction() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    class _Tx:
        def __init__(self, store: "Store"):
            self.store = store

        def __enter__(self):
            self.cur = self.store.conn.cursor()
            return self.cur

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                self.store.conn.commit()
            else:
                self.store.conn.rollback()
            self.cur.close()

    def transaction(self) -> "_Tx":
        """``with store.transaction() as cur:`` commits on success, rolls back on error."""
        return Store._Tx(self)

    def execute(self, cur, q: str, params: Sequence[Any] = ()) -> Any:
        return cur.execute(self._sql(q), tuple(params))

    def query(self, q: str, params: Sequence[Any] = ()) -> List[Tuple]:
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(q), tuple(params))
            rows = cur.fetchall()
        finally:
            cur.close()
        if self.kind == "postgresql":
            self.conn.commit()  # end the read transaction
        return [tuple(r) for r in rows]

    # -- writes ------------------------------------------------------------------------
    def insert_event(self, cur, line: str, camera: str, ev: Dict[str, Any], model_sha256: Optional[str] = None,
                     received: Optional[float] = None) -> bool:
        """Insert one event; False when its ``event_id`` is already stored (a duplicate)."""
        row = (ev["event_id"], line, camera, ev.get("run"), str(ev.get("id")), _num(ev.get("ts")), ev.get("label"),
               _num(ev.get("confidence")), bool(ev.get("uncertain", False)), ev.get("crop"), model_sha256,
               json.dumps(ev, separators=(",", ":")), received if received is not None else time.time())
        self.execute(cur, f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(row))}) "
                     "ON CONFLICT (event_id) DO NOTHING", row)
        return cur.rowcount == 1

    def upsert_status(self, cur, line: str, camera: str, st: Dict[str, Any], now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        self.execute(cur, "INSERT INTO devices (line, camera, state, model, sha256, version, run, host, status, "
                     "last_status, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (line, camera) "
                     "DO UPDATE SET state = excluded.state, model = excluded.model, sha256 = excluded.sha256, "
                     "version = excluded.version, run = excluded.run, host = excluded.host, status = excluded.status, "
                     "last_status = excluded.last_status, last_seen = excluded.last_seen",
                     (line, camera, st.get("state"), st.get("model"), st.get("sha256"), st.get("version"),
                      st.get("run"), st.get("host"), json.dumps(st, separators=(",", ":")), now, now))
        if st.get("sha256"):
            self.execute(cur, "INSERT INTO models (sha256, model, classes, version, first_seen, last_seen) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET last_seen = excluded.last_seen",
                         (st["sha256"], st.get("model"), json.dumps(st.get("classes") or []), st.get("version"),
                          now, now))

    def upsert_metrics(self, cur, line: str, camera: str, body: Dict[str, Any], now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        self.execute(cur, "INSERT INTO devices (line, camera, metrics, last_seen) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (line, camera) DO UPDATE SET metrics = excluded.metrics, "
                     "last_seen = excluded.last_seen",
                     (line, camera, json.dumps(body, separators=(",", ":"), default=str), now))

    def set_line_speed(self, line: str, m_per_min: float) -> None:
        if not m_per_min > 0:
            raise EdgeError(f"line speed must be > 0 m/min, got {m_per_min}")
        with self.transaction() as cur:
            self.execute(cur, "INSERT INTO lines (line, speed_m_per_min) VALUES (?, ?) ON CONFLICT (line) "
                         "DO UPDATE SET speed_m_per_min = excluded.speed_m_per_min", (line, float(m_per_min)))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _num(v: Any) -> Optional[float]:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def rows_as_dicts(columns: Iterable[str], rows: Iterable[Tuple]) -> List[Dict[str, Any]]:
    cols = list(columns)
    return [dict(zip(cols, r)) for r in rows]
