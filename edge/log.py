"""Logging for the library and the commands: one handler, set up by the command, ``-v`` / ``-q``.

How a library module logs (every module of ``edge``, ``convert``, ``calibrate``, ``bench``, ``train``,
``collect``): it never prints and never configures logging, it takes a module logger::

    import logging

    log = logging.getLogger(__name__)

    log.info("calibration: %d images", n)   # progress a command shows by default (its output)
    log.debug("ranges: %s", ranges)          # details, shown with -v
    log.warning("no split file: ...")        # something the user should know even with -q

Progress bars stay tqdm (on stderr, only on a terminal). A Python caller sees nothing below WARNING
until it configures logging itself, e.g. ``logging.basicConfig(format="%(message)s")`` and
``logging.getLogger("convert").setLevel(logging.INFO)`` for the lines ``edge-convert`` prints.
Errors are raised, not logged: :mod:`edge.errors` (one line, in the API's parameter names).

Only a command configures logging: :func:`edge.errors.cli_entry` installs one handler
(:class:`CliHandler`) for the run and :func:`add_log_flags` gives its parser ``-v/--verbose`` and
``-q/--quiet`` (each repeatable, one level per use). The level applies to the project's loggers
(:data:`PACKAGES` and the command's own name); other libraries' loggers (tf2onnx, TensorFlow, ...) stay
at WARNING (ERROR with enough ``-q``).

Two kinds of command (the ``log_level`` of :func:`edge.errors.cli_entry`):

* default INFO (edge-convert, edge-train, edge-eval, edge-doctor): the INFO lines are the command's
  output, written bare on stdout as ``print`` did; warnings and errors go to stderr as
  ``prog: WARNING: message``. ``-q``: warnings only, ``-qq``: errors only, ``-v``: DEBUG too.
* default WARNING (the services edge-capture, edge-collect, and edge-bench, whose output is its
  table): every record on stderr as ``prog: LEVEL: message``; ``-v``: INFO, ``-vv``: DEBUG,
  ``-q``: errors only. edge-bench's ``-q`` keeps its meaning (no table), its ``-qq`` logs errors only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Dict, Iterator, Optional

#: Top-level packages (and the script namespace) whose loggers the command's level applies to.
PACKAGES = ("edge", "convert", "calibrate", "bench", "train", "collect", "scripts", "__main__")

_active: Optional["_Run"] = None


class CliHandler(logging.Handler):
    """The one handler of a command run.

    Records below WARNING go to stdout as the bare message when ``info_to_stdout`` (the command's
    output), every other record to stderr as ``prog: LEVEL: message``. The streams are looked up
    at each record, so a caller (or pytest) that swaps ``sys.stdout`` still gets the lines.
    """

    def __init__(self, prog: str, info_to_stdout: bool):
        super().__init__(logging.NOTSET)
        self.info_to_stdout = info_to_stdout
        self._bare = logging.Formatter("%(message)s")
        self._tagged = logging.Formatter(prog.replace("%", "%%") + ": %(levelname)s: %(message)s")
        self._closed: set = set()

    def emit(self, record: logging.LogRecord) -> None:
        out = self.info_to_stdout and record.levelno < logging.WARNING
        stream = sys.stdout if out else sys.stderr
        if id(stream) in self._closed:
            return
        try:
            text = (self._bare if out else self._tagged).format(record)
            stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:  # the reader went away (edge-doctor | head): stop writing there, quietly
            self._closed.add(id(stream))
        except Exception:  # pragma: no cover - logging's own rule: never raise from emit
            self.handleError(record)


class _Run:
    """What one command run changed in the logging tree, to set the level and to undo it."""

    def __init__(self, prog: str, default: int):
        self.prog = prog
        self.default = default
        self.names = tuple(dict.fromkeys(PACKAGES + (prog,)))
        self.handler = CliHandler(prog, info_to_stdout=default <= logging.INFO)
        root = logging.getLogger()
        self.saved: Dict[str, int] = {n: logging.getLogger(n).level for n in self.names}
        self.saved_root = root.level
        root.addHandler(self.handler)

    def set_level(self, level: int) -> None:
        level = min(max(level, logging.DEBUG), logging.CRITICAL)
        for n in self.names:
            logging.getLogger(n).setLevel(level)
        # other libraries (tf2onnx, TensorFlow, ...): warnings at most, their INFO chatter is not our output
        logging.getLogger().setLevel(max(level, logging.WARNING))

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.saved_root)
        for n, lv in self.saved.items():
            logging.getLogger(n).setLevel(lv)


def active() -> Optional[str]:
    """The command whose logging is installed (None outside a command run)."""
    return None if _active is None else _active.prog


def start(prog: str, default: int = logging.INFO) -> None:
    """Install the command's handler at its default level (called by :func:`edge.errors.cli_entry`)."""
    global _active
    stop()
    _active = _Run(prog, default)
    _active.set_level(default)


def stop() -> None:
    """Remove the handler and restore the levels :func:`start` changed."""
    global _active
    if _active is not None:
        _active.close()
        _active = None


@contextlib.contextmanager
def muted(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Within the block, the loggers ``names`` (and their children) log only from ``level`` up.

    For a caller that runs another module's work as a step of its own and reports the result
    itself (edge-doctor building engines).
    """
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        lg = logging.getLogger(n)
        lg.setLevel(max(lg.getEffectiveLevel(), level))
    try:
        yield
    finally:
        for n, lv in saved.items():
            logging.getLogger(n).setLevel(lv)


def level_for(default: int, verbose: int = 0, quiet: int = 0) -> int:
    """The level after ``verbose`` ``-v`` and ``quiet`` ``-q``: one logging level (10) per flag."""
    return min(max(default + 10 * (int(quiet) - int(verbose)), logging.DEBUG), logging.CRITICAL)


class _Shift(argparse.Action):
    """``-v`` / ``-q``: count the flag and move the running command's level at once."""

    def __init__(self, option_strings, dest, own_quiet: int = 0, **kwargs):
        self.own_quiet = own_quiet
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, int(getattr(namespace, self.dest, 0) or 0) + 1)
        if _active is not None:
            quiet = max(int(getattr(namespace, "quiet", 0) or 0) - self.own_quiet, 0)
            _active.set_level(level_for(_active.default, getattr(namespace, "verbose", 0) or 0, quiet))


def add_log_flags(parser: argparse.ArgumentParser, quiet_help: Optional[str] = None) -> argparse.ArgumentParser:
    """Give ``parser`` the shared ``-v/--verbose`` and ``-q/--quiet`` flags (``args.verbose``, ``args.quiet``: counts).

    Args:
        parser: The command's parser.
        quiet_help: For a command whose ``-q`` already had a meaning of its own (edge-bench: no
            table): its help text. The first ``-q`` then keeps only that meaning, as before, and
            the log level moves from the second (``-qq``).

    Returns:
        The parser.
    """
    own = 1 if quiet_help else 0
    parser.add_argument("-v", "--verbose", action=_Shift, default=0, own_quiet=own,
                        help="more log output (repeatable: -vv); see edge/log.py")
    parser.add_argument("-q", "--quiet", action=_Shift, default=0, own_quiet=own,
                        help=quiet_help or "less log output (repeatable: -qq: errors only)")
    return parser
