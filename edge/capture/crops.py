"""Defect crops on disk within a budget: sampled per class per minute, oldest deleted first.

Crops are evidence for a person to look at, not a record of every tile (that is the events
file): at line rate every NEU tile is a defect and a PNG per tile would fill the disk in
hours. :class:`CropStore` saves at most ``per_minute`` crops per class per minute, and keeps the
folder under ``max_bytes`` and ``max_age_s`` by deleting the oldest crops first (crops already in
the folder when the daemon starts count too). A failed write is counted and never raises.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

log = logging.getLogger(__name__)


class CropStore:
    """Writes PNG crops into ``folder`` within a size/age budget.

    Args:
        folder: Where crops go (created).
        max_bytes: Delete the oldest crops while the folder holds more (None: no size limit).
        max_age_s: Delete crops older than this (None: no age limit).
        per_minute: Crops saved per class per minute at most (None: no sampling; 0: none).
        count: ``count(name, n, labels)`` for metrics (``crops_saved``, ``crops_skipped``, ``crops_deleted``).
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: Optional[int] = None, max_age_s: Optional[float] = None,
                 per_minute: Optional[int] = None, count: Optional[Callable[..., None]] = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s, self.per_minute = max_bytes, max_age_s, per_minute
        self._count = count or (lambda *a, **k: None)
        self._lock = threading.Lock()
        self._minute: Dict[str, Tuple[int, int]] = {}   # class → (minute, crops saved in it)
        self.files: "collections.deque[Tuple[float, Path, int]]" = collections.deque()  # (mtime, path, size), oldest first
        self.bytes = 0
        self.error: Optional[str] = None
        self._last_warn = -1e9
        existing = []
        for p in self.folder.glob("*.png"):
            try:
                st = p.stat()
            except OSError:
                continue
            existing.append((st.st_mtime, p, st.st_size))
        for item in sorted(existing):
            self.files.append(item)
            self.bytes += item[2]
        self._enforce(time.time())

    def _sampled_out(self, label: str, now: float) -> bool:
        if self.per_minute is None:
            return False
        minute = int(now // 60)
        m, n = self._minute.get(label, (minute, 0))
        if m != minute:
            m, n = minute, 0
        if n >= self.per_minute:
            return True
        self._minute[label] = (m, n + 1)
        return False

    def save(self, name: str, label: str, tile: np.ndarray) -> bool:
        """Save one crop as ``<name>.png`` unless sampled out; True when written."""
        import cv2

        from edge.fsutil import atomic_path

        now = time.time()
        with self._lock:
            if self._sampled_out(label, now):
                self._count("crops_skipped", 1, {"reason": "sampled"})
                return False
        try:
            ok, png = cv2.imencode(".png", tile)
            if not ok:
                raise OSError("PNG encoding failed")
            path = self.folder / f"{name}.png"
            data = png.tobytes()
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except OSError as e:
            self._count("crops_skipped", 1, {"reason": "error"})
            self.error = f"{self.folder}: {e.strerror or e}"
            if now - self._last_warn >= 10.0:
                self._last_warn = now
                log.warning("cannot save crop %s: %s (classification goes on)", name, e.strerror or e)
            return False
        self.error = None
        self._count("crops_saved", 1, None)
        with self._lock:
            self.files.append((now, path, len(data)))
            self.bytes += len(data)
            self._enforce(now)
        return True

    def expire(self) -> None:
        """Apply the age limit now (called now and then by the daemon, also when nothing is saved)."""
        with self._lock:
            self._enforce(time.time())

    def _enforce(self, now: float) -> None:
        while self.files:
            mtime, path, size = self.files[0]
            if self.max_bytes is not None and self.bytes > self.max_bytes:
                reason = "size"
            elif self.max_age_s is not None and now - mtime > self.max_age_s:
                reason = "age"
            else:
                break
            self.files.popleft()
            self.bytes -= size
            try:
                path.unlink()
                self._count("crops_deleted", 1, {"reason": reason})
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot delete old crop %s: %s", path.name, e.strerror or e)
