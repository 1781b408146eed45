"""Atomic writes: nothing half-written is ever left where a user looks for a result."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edge.errors import EdgeError, param


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 for umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir()`` gives a new folder under the current umask (0755 for umask 022)."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the mode of an ordinary new file under the process umask (``mkstemp`` alone
    would make it 0600, unreadable to the service user of an admin-built model).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def staged_dir(outdir: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Build an output folder in a staging folder and move it into place only on success.

    The folder gets the mode of an ordinary new folder under the process umask (0755 for 022).

    An existing ``outdir`` is refused unless ``force``; with ``force`` it is replaced only
    once the new one is complete. On any exception the staging folder is removed, so the user
    never finds a half-written ``outdir``.

    Args:
        outdir: The final folder.
        force: Replace an existing folder.

    Raises:
        EdgeError: ``outdir`` exists (without force) or its parent is not writable.
    """
    outdir = Path(outdir)
    if outdir.exists() and not force:
        raise EdgeError(f"output folder {outdir} already exists (use {param('force', True)} to replace it)")
    if outdir.exists() and not outdir.is_dir():
        raise EdgeError(f"output path {outdir} exists and is not a folder")
    parent = outdir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".partial", dir=parent))
        os.chmod(stage, dir_mode())  # mkdtemp makes 0700; the finished folder follows the umask
    except OSError as e:
        raise EdgeError(f"output folder {outdir} is not writable: {e.strerror or e}") from None
    try:
        yield stage
        if outdir.exists():
            old = parent / f".{outdir.name}.old-{os.getpid()}"
            os.replace(outdir, old)
            os.replace(stage, outdir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, outdir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def check_writable_dir(path: str | os.PathLike) -> None:
    """Raise EdgeError if files cannot be created in ``path`` (or its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise EdgeError(f"{path} is not writable: {p} is a file, not a folder")
    if not os.access(p, os.W_OK):
        raise EdgeError(f"{path} is not writable")
    try:  # access() says yes to root on a read-only mount of some kinds: try for real
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise EdgeError(f"{path} is not writable: {e.strerror or e}") from None
