"""JSONL event writer: buffered, flushed at least every interval and on close, size-based rotation,
and a disk that refuses writes (full, read-only, gone) survived and counted.

Guarantees:

- The file only ever holds whole lines: a batch of lines is written with ``os.write`` on a
  file opened for appending; when a write fails part-way the file is truncated back to its
  last whole line. A file that ends in a partial line when opened (power loss, SIGKILL in
  the middle of a write) has the partial tail cut off first.
- A failed write never raises into the caller: the lines stay in a bounded queue and are
  retried at every flush; when the queue is full the oldest are dropped. Lines still unwritten
  when the writer closes are dropped too. Every dropped event is counted by reason.
- ``written`` counts events whose lines are on disk; ``dropped`` counts lost ones by reason:
  ``disk`` (never written) and ``rotation`` (written, then deleted with a rotated file beyond
  ``backups``). So events handed to :meth:`EventWriter.write` = written + dropped["disk"].
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edge.errors import EdgeError


def line_encoder(fast: bool = True) -> Callable[[Dict[str, Any]], bytes]:
    """The function that makes an event's line: compact JSON, UTF-8, ending in a newline.

    orjson (a C library, about 10x faster than :mod:`json` on an event: a frame's 16 events with
    ``--log-all`` are ~0.1 ms of the daemon's emit thread with :mod:`json`) where installed and ``fast``;
    else :mod:`json` with the same separators. For the events the daemon makes (str, int, float,
    bool, lists) both write lines that parse to the same event with :func:`json.loads`; they differ
    only in how a float with an exponent is spelled (orjson ``1e-6``, json ``1e-06``).
    """
    if fast:
        try:
            import orjson
        except ImportError:
            pass
        else:
            opts = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
            return lambda event: orjson.dumps(event, option=opts)
    encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder (json.dumps makes one per call)
    return lambda event: (encode(event) + "\n").encode()

log = logging.getLogger(__name__)

#: Seconds between two warnings about the same kind of disk trouble.
WARN_INTERVAL = 10.0


#: Block size of :func:`_count_lines`. Below glibc's default mmap threshold (128 KiB) on purpose:
#: with 1 MiB blocks the daemon's RSS rose by ~1-2 MiB at many rotations (the freed 1 MiB buffers
#: raise glibc's dynamic mmap/trim thresholds and stay in the worker threads' malloc arenas);
#: see docs/results/soak.md, "Where the RSS growth comes from".
COUNT_BLOCK = 1 << 16


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(COUNT_BLOCK), b""):
            n += block.count(b"\n")
    return n


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a partial last line off ``path`` (no trailing newline); return the bytes removed."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos = size
        keep = 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
                break
        f.truncate(keep)
        return size - keep


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
        backups: Rotated files kept (the events of a file rotated beyond them are counted as
            dropped, reason ``rotation``).
        flush_interval: Seconds between flushes at most.
        max_pending: Events kept in memory while the disk refuses them; beyond, the oldest are
            dropped (reason ``disk``).
        on_written: Called with the number of events just written (e.g. to count a metric).
        on_dropped: Called with (reason, number) for events lost.
        on_error: Called at every failed write.
    """

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 << 20, backups: int = 5,
                 flush_interval: float = 1.0, max_pending: int = 100_000,
                 on_written: Optional[Callable[[int], None]] = None,
                 on_dropped: Optional[Callable[[str, int], None]] = None,
                 on_error: Optional[Callable[[], None]] = None):
        self.path = Path(path)
        self.max_bytes, self.backups, self.flush_interval = int(max_bytes), int(backups), float(flush_interval)
        self.max_pending = int(max_pending)
        self._on_written, self._on_dropped, self._on_error = on_written, on_dropped, on_error
        self._buf: "collections.deque[bytes]" = collections.deque()
        self._lock = threading.RLock()
        self._encode = line_encoder()
        self._last_flush = time.monotonic()
        self.written = 0
        self.dropped: Dict[str, int] = {"disk": 0, "rotation": 0}
        self.rotations = 0
        self.write_errors = 0
        self.error: Optional[str] = None      # the last disk error while it lasts (None: healthy)
        self._last_warn: Dict[str, float] = {}
        self._fd: Optional[int] = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut = repair_tail(self.path)
            if cut:
                log.warning("events file %s ended in a partial line: %d byte(s) cut off", self.path, cut)
            self._open()
        except OSError as e:
            raise EdgeError(f"cannot open events file {self.path}: {e.strerror or e}") from None
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="events-flush", daemon=True)
        self._timer.start()

    # -- file handling --------------------------------------------------------------
    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._size = os.fstat(self._fd).st_size

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _rotate(self) -> None:
        self._close_fd()
        last = self.path.with_name(f"{self.path.name}.{self.backups}") if self.backups > 0 else self.path
        if last.exists():  # deleted by this rotation: its events are lost, count them
            n = _count_lines(last)
            self._drop("rotation", n)
            if self.backups > 0:
                last.unlink()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._open()
        self.rotations += 1

    def _write_all(self, data: bytes) -> None:
        """Append ``data`` (whole lines) or raise OSError, leaving the file at its last whole line."""
        if self._fd is None:
            self._open()
        start = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
        except OSError:
            try:
                os.ftruncate(self._fd, start)  # never leave a half line behind
            except OSError:
                self._close_fd()               # reopened (and its tail repaired) at the next try
                try:
                    repair_tail(self.path)
                except OSError:
                    pass
            raise
        self._size = start + len(data)

    # -- public ---------------------------------------------------------------------
    def write(self, event: Dict[str, Any]) -> None:
        """Queue one event (flushes if the interval has passed). Never raises for disk trouble."""
        self.write_many((event,))

    def write_many(self, events) -> None:
        """Queue events in order, under one lock (a frame's events at once); as :meth:`write`."""
        lines = [self._encode(e) for e in events]
        if not lines:
            return
        with self._lock:
            self._buf.extend(lines)
            over = len(self._buf) - max(self.max_pending, 1)
            if over > 0 and self.error is not None:  # the disk refuses: keep only the newest
                for _ in range(over):
                    self._buf.popleft()
                self._drop("disk", over)
            due = time.monotonic() - self._last_flush >= self.flush_interval
        if due:
            self.flush()

    @property
    def pending(self) -> int:
        """Events waiting in memory (buffered or awaiting a retry)."""
        return len(self._buf)

    def _tick(self) -> None:
        while not self._stop.wait(self.flush_interval / 2):
            if time.monotonic() - self._last_flush >= self.flush_interval:
                self.flush()

    def flush(self) -> bool:
        """Write the buffered lines, rotating first when they would overflow the file.

        Returns:
            True when everything buffered is on disk; False when the disk refused (the lines
            stay queued for the next flush).
        """
        with self._lock:
            self._last_flush = time.monotonic()
            try:
                while self._buf:
                    # one os.write per run of lines that fits before the next rotation
                    chunk: List[bytes] = []
                    size = self._size
                    for line in self._buf:
                        if self.max_bytes and (size > 0 or chunk) and size + len(line) > self.max_bytes:
                            break
                        chunk.append(line)
                        size += len(line)
                        if len(chunk) >= 4096:
                            break
                    if not chunk:
                        self._rotate()
                        continue
                    self._write_all(b"".join(chunk))
                    for _ in chunk:
                        self._buf.popleft()
                    self.written += len(chunk)
                    if self._on_written:
                        self._on_written(len(chunk))
            except OSError as e:
                self.write_errors += 1
                if self._on_error:
                    self._on_error()
                self.error = f"{self.path}: {e.strerror or e}"
                self._warn("write", f"cannot write events to {self.error}; {len(self._buf)} event(s) kept for retry, "
                                    f"{self.dropped['disk']} dropped so far")
                return False
            if self.error is not None:
                log.warning("events file %s writable again (%d event(s) written in all)", self.path, self.written)
                self.error = None
            return True

    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        if self._on_dropped:
            self._on_dropped(reason, n)
        if reason != "rotation":
            self._warn("drop-" + reason, f"{self.dropped[reason]} event(s) dropped so far ({reason})")

    def _warn(self, kind: str, msg: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(kind, -1e9) >= WARN_INTERVAL:
            self._last_warn[kind] = now
            log.warning("%s", msg)

    def close(self) -> None:
        """Flush everything and close the file (idempotent). Events the disk still refuses are
        dropped and counted (reason ``disk``)."""
        self._stop.set()
        with self._lock:
            if not self.flush():
                n = len(self._buf)
                self._buf.clear()
                self._last_warn.pop("drop-disk", None)
                self._drop("disk", n)
            self._close_fd()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rotated_chain(path: Path) -> List[Path]:
    """The events file and its rotated copies that exist, oldest first (``.N`` … ``.1``, the file)."""
    out: List[Path] = []
    i = 1
    while path.with_name(f"{path.name}.{i}").exists():
        out.insert(0, path.with_name(f"{path.name}.{i}"))
        i += 1
    if path.exists():
        out.append(path)
    return out


def read_events(path: str | os.PathLike, rotated: bool = True) -> List[Dict[str, Any]]:
    """All events of ``path`` (and its rotated files, oldest first)."""
    path = Path(path)
    files = rotated_chain(path) if rotated else ([path] if path.exists() else [])
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out
