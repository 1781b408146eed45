"""JSONL event writer: buffered, flushed at least every second and on close, size-based rotation."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from edge.errors import EdgeError


class EventWriter:
    """Appends one JSON object per line to ``path``.

    Lines are buffered in memory and written by :meth:`flush`, which runs when ``flush_interval``
    seconds have passed since the last flush (checked on every write and by a background timer,
    so a quiet line still gets its last events on disk within the interval) and on :meth:`close`.
    When the file would grow past ``max_bytes`` it is rotated like logrotate: ``events.jsonl`` →
    ``events.jsonl.1`` → ``.2`` ... keeping ``backups`` old files.

    Args:
        path: The JSONL file (its folder is created).
        max_bytes: Rotate when the file reaches this size (0: never).
        backups: Rotated files kept.
        flush_interval: Seconds between flushes at most.
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 << 20, backups: int = 5,
                 flush_interval: float = 1.0):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise EdgeError(f"cannot open events file {self.path}: {e.strerror or e}") from None
        self.max_bytes, self.backups, self.flush_interval = int(max_bytes), int(backups), float(flush_interval)
        self._buf: List[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.written = 0
        self.rotations = 0
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="events-flush", daemon=True)
        self._timer.start()

    def write(self, event: Dict[str, Any]) -> None:
        """Queue one event (flushes if the interval has passed)."""
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._buf.append(line)
            due = time.monotonic() - self._last_flush >= self.flush_interval
        if due:
            self.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.flush_interval / 2):
            if time.monotonic() - self._last_flush >= self.flush_interval:
                self.flush()

    def flush(self) -> None:
        """Write the buffered lines, rotating first when they would overflow the file."""
        with self._lock:
            lines, self._buf = self._buf, []
            if lines and self._f is not None:
                for line in lines:
                    if self.max_bytes and self._f.tell() > 0 and self._f.tell() + len(line.encode()) > self.max_bytes:
                        self._rotate()
                    self._f.write(line)
                self._f.flush()
                self.written += len(lines)
            self._last_flush = time.monotonic()

    def _rotate(self) -> None:
        self._f.flush()
        self._f.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._f = open(self.path, "a", encoding="utf-8")
        self.rotations += 1

    def close(self) -> None:
        """Flush everything and close the file (idempotent)."""
        self._stop.set()
        self.flush()
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | os.PathLike, rotated: bool = True) -> List[Dict[str, Any]]:
    """All events of ``path`` (and its rotated files, oldest first)."""
    path = Path(path)
    files: List[Path] = []
    if rotated:
        i = 1
        while path.with_name(f"{path.name}.{i}").exists():
            files.insert(0, path.with_name(f"{path.name}.{i}"))
            i += 1
    if path.exists():
        files.append(path)
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out
