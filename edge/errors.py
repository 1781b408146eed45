"""Errors shown to the user as one line, their exit codes, and the CLI wrapper that prints them.

Exit codes (every command): 0 done, 1 a quality gate failed (:class:`GateFailed`), 2 bad input
(:class:`EdgeError`, :class:`InputError`), 3 a device or backend failure (:class:`BackendError`),
130 interrupted. Messages name the API's parameters (``warmup``, ``dla``, ``engine="always"``), not CLI
flags: a Python caller never passed a flag. :func:`param` words them, and inside a command as its flags.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, Mapping, Optional


class EdgeError(Exception):
    """A user-facing error: printed as one line, exit code 2 (bad input).

    The base of every error below: ``except EdgeError`` catches them all. Raised as is it means bad
    input, as :class:`InputError` does. Its message names parameters with :func:`param` (``max_batch
    must be ...``; ``--max-batch must be ...`` inside a command).
    """

    exit_code = 2


class InputError(EdgeError):
    """Bad input: a missing file, a value out of range, parameters that contradict each other (exit 2)."""

    exit_code = 2


class GateFailed(EdgeError):
    """A quality gate (drift, regression) failed: artifacts are kept, exit code 1."""

    exit_code = 1


class BackendError(EdgeError):
    """The device or a runtime failed: CUDA, TensorRT, ONNX Runtime, an engine build (exit code 3).

    The input may be fine: the same call can work on another machine or after fixing the install.
    """

    exit_code = 3


_UNSET = object()
#: How messages name parameters while a command runs (set by :func:`cli_entry`); None: as in Python.
_naming: Optional[Callable[[str], str]] = None


def flag(parameter: str) -> str:
    """A parameter's usual flag: ``batch_size`` -> ``--batch-size``."""
    return "--" + parameter.replace("_", "-")


def param(parameter: str, value: Any = _UNSET) -> str:
    """How a message names a parameter (and optionally its value): the one rule for every message.

    From Python a message names the API's parameter (``max_batch``, ``engine='always'``, ``force=True``);
    inside a command (:func:`cli_entry`) the same call gives its flag (``--max-batch``, ``--engine always``,
    ``--force``), so library code never words a message for one audience only. Used for errors and
    warnings alike.

    Args:
        parameter: The parameter (a field of the stage's config dataclass).
        value: Optional value to show with it.
    """
    if _naming is None:
        return parameter if value is _UNSET else f"{parameter}={value!r}"
    f = _naming(parameter)
    return f if value is _UNSET or value is True else f"{f} {value}"


def cli_entry(prog: str, log_level: int = logging.INFO, flags: Optional[Mapping[str, str]] = None) -> Callable:
    """Decorate a ``main(argv) -> int``: logging for the run, EdgeError as ``prog: error: msg`` + exit code.

    The run gets one logging handler (:mod:`edge.log`: its docstring says how library code logs); the
    command's parser adds ``-v`` / ``-q`` with :func:`edge.log.add_log_flags`, which move the level
    from ``log_level`` as they are parsed. While it runs, :func:`param` words parameters as the command's
    flags (``max_batch`` → ``--max-batch``; ``flags`` for those spelled otherwise).

    Args:
        prog: The command name shown in front of the message.
        log_level: The default level: INFO for a command whose progress lines are its output (on
            stdout), WARNING for a service or a command whose output is a table (all on stderr).
        flags: Parameter -> flag (or metavar) where it is not :func:`flag` of the parameter.
    """
    from edge import log

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(argv=None) -> int:
            global _naming
            owner = log.active() is None  # a command run inside another keeps the outer one's logging
            outer_naming = _naming
            if owner:
                log.start(prog, log_level)
            _naming = (lambda p: flags.get(p) or flag(p)) if flags else flag
            try:
                rc = fn(argv)
            except EdgeError as e:
                msg = " ".join(str(e).split())  # one line, whatever the message held
                print(f"{prog}: error: {msg}", file=sys.stderr)
                return e.exit_code
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            finally:
                _naming = outer_naming
                if owner:
                    log.stop()
            return 0 if rc is None else int(rc)

        return wrapper

    return deco
