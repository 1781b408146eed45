"""Errors shown to the user as one line, their exit codes, and the CLI wrapper that prints them.

Exit codes (every command): 0 done, 1 a quality gate failed (:class:`GateFailed`), 2 bad input
(:class:`EdgeError`, :class:`InputError`), 3 a device or backend failure (:class:`BackendError`),
130 interrupted. Messages name the API's parameters (``warmup``, ``dla``, ``engine="always"``), not CLI
flags: a Python caller never passed a flag. A command that reports a parameter maps it to its flag.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Callable, Mapping, Sequence


class EdgeError(Exception):
    """A user-facing error: printed as one line, exit code 2 (bad input).

    The base of every error below: ``except EdgeError`` catches them all. Raised as is it means bad
    input, as :class:`InputError` does.

    Args:
        message: The one-line message, naming the API's parameters (``max_batch must be ...``,
            ``engine="always": ...``).
        params: The parameter names the message mentions, so a command can name its flags instead
            (:meth:`in_flags`).
    """

    exit_code = 2

    def __init__(self, message: str = "", params: Sequence[str] = ()):
        super().__init__(message)
        self.params = tuple(params)

    def in_flags(self, flags: Mapping[str, str]) -> "EdgeError":
        """The same error worded for a command: each parameter of ``params`` written as its flag.

        ``max_batch`` becomes ``--max-batch``, ``engine="always"`` becomes ``--engine always`` and
        ``force=True`` becomes ``--force``; parameters without a flag in ``flags`` stay as they are.
        """
        text = str(self)
        for p in self.params:
            if p not in flags:
                continue
            pat = re.compile(rf"(?<![\w-]){re.escape(p)}(?:=(\"?)([^\s\"',;:)]+)\1)?(?![\w-])")
            flag = flags[p]
            text = pat.sub(lambda m: flag if m.group(2) in (None, "True") else f"{flag} {m.group(2)}", text)
        err = type(self)(text)
        err.__cause__, err.__traceback__ = self.__cause__, self.__traceback__
        return err


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


def cli_entry(prog: str, log_level: int = logging.INFO) -> Callable:
    """Decorate a ``main(argv) -> int``: logging for the run, EdgeError as ``prog: error: msg`` + exit code.

    The run gets one logging handler (:mod:`edge.log`: its docstring says how library code logs); the
    command's parser adds ``-v`` / ``-q`` with :func:`edge.log.add_log_flags`, which move the level
    from ``log_level`` as they are parsed. An error naming API parameters (``EdgeError.params``) is
    worded with the command's flags of the same name (``max_batch`` → ``--max-batch``).

    Args:
        prog: The command name shown in front of the message.
        log_level: The default level: INFO for a command whose progress lines are its output (on
            stdout), WARNING for a service or a command whose output is a table (all on stderr).
    """
    from edge import log

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(argv=None) -> int:
            owner = log.active() is None  # a command run inside another keeps the outer one's logging
            if owner:
                log.start(prog, log_level)
            try:
                rc = fn(argv)
            except EdgeError as e:
                if e.params:  # a library message in parameter names: the command's flag of the same name
                    e = e.in_flags({p: "--" + p.replace("_", "-") for p in e.params})
                msg = " ".join(str(e).split())  # one line, whatever the message held
                print(f"{prog}: error: {msg}", file=sys.stderr)
                return e.exit_code
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            finally:
                if owner:
                    log.stop()
            return 0 if rc is None else int(rc)

        return wrapper

    return deco
