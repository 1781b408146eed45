"""Errors shown to the user as one line, and the CLI wrapper that prints them."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class EdgeError(Exception):
    """A user-facing error: printed as one line, exit code 2 (bad input)."""

    exit_code = 2


class GateFailed(EdgeError):
    """A quality gate (drift, regression) failed: artifacts are kept, exit code 1."""

    exit_code = 1


def cli_entry(prog: str) -> Callable:
    """Decorate a ``main(argv) -> int`` so that EdgeError becomes ``prog: error: msg`` + exit code.

    Args:
        prog: The command name shown in front of the message.
    """

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(argv=None) -> int:
            try:
                rc = fn(argv)
            except EdgeError as e:
                msg = " ".join(str(e).split())  # one line, whatever the message held
                print(f"{prog}: error: {msg}", file=sys.stderr)
                return e.exit_code
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            return 0 if rc is None else int(rc)

        return wrapper

    return deco
