"""``edge-capture``: the capture daemon on the line.

Example:
    edge-capture --model runs/convert-compact/model.int8.onnx --source file://line.mp4 \\
        --tile 200 --stride 200 --batch 16 --threshold 0.5 --events out/events.jsonl --log-all \\
        --metrics 127.0.0.1:9108
    edge-capture --model model.int8.onnx --source csi://0 --events /var/lib/steel-edge/events.jsonl \\
        --mqtt mqtt://plant-broker:1883/steel --line hsm1 --camera top
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import List, Optional

from edge.errors import EdgeError, cli_entry
from edge.log import add_log_flags

PROG = "edge-capture"
#: Exit code when the stop deadline passed before the queued work was done.
EXIT_DEADLINE = 3
#: Seconds past the stop deadline after which the process exits whatever blocks it.
HARD_GRACE_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    """The flags: one per row of :data:`edge.capture.config.SETTINGS`, plus --config and -v."""
    from edge.capture.config import add_arguments

    p = argparse.ArgumentParser(PROG, description="Classify tiles of camera/video frames and log defect events "
                                "(JSONL), with Prometheus metrics. Flags override the --config file. Exit codes: "
                                "0 done, 2 bad input, 3 stopped at the stop deadline with work unfinished "
                                "(what was flushed is kept), 130 interrupted.",
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--config", help="TOML (or YAML with PyYAML) file with the same settings")
    add_arguments(p)
    return add_log_flags(p)


def _hard_exit(after: float) -> None:
    print(f"{PROG}: error: still not stopped {after:g} s after the stop request; exiting (events flushed "
          f"so far are kept)", file=sys.stderr, flush=True)
    os._exit(EXIT_DEADLINE)


@cli_entry(PROG, log_level=logging.WARNING)
def main(argv: Optional[List[str]] = None) -> int:
    from edge.capture.config import load_config_file, merge
    from edge.capture.daemon import CaptureDaemon, summary_line
    from edge.fsutil import write_json

    args = vars(build_parser().parse_args(argv))
    verbose = args.pop("verbose", 0) > args.pop("quiet", 0)  # the level itself is set by cli_entry (edge/log.py)
    if not verbose:  # OpenCV's own multi-line decoder errors: the daemon names a skipped frame itself
        try:
            import cv2

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
        except (ImportError, AttributeError):
            pass
    file_values = load_config_file(args.pop("config")) if "config" in args else {}
    cfg = merge(file_values, args)
    if cfg.summary:  # a summary that cannot be written is refused before the run, not after it
        from edge.fsutil import check_writable_dir

        if os.path.isdir(cfg.summary):
            raise EdgeError(f"--summary {cfg.summary} is a folder; give a file name")
        check_writable_dir(os.path.dirname(os.path.abspath(cfg.summary)))
    daemon = CaptureDaemon(cfg)

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if daemon.stop_requested:
            logging.getLogger(PROG).warning("%s again: abandoning the queued work", name)
            daemon.abort()
            return
        logging.getLogger(PROG).warning("%s: stopping (deadline %g s)", name, cfg.stop_timeout)
        daemon.request_stop()
        # last resort when something blocks past the deadline (a hung disk or driver): exit anyway
        t = threading.Timer(cfg.stop_timeout + HARD_GRACE_S, _hard_exit, args=(cfg.stop_timeout + HARD_GRACE_S,))
        t.daemon = True
        t.start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = daemon.run()
    except OSError as e:  # a file or device the daemon may not use (permissions, a missing device)
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        raise EdgeError(f"cannot use{where}: {e.strerror or e}") from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(f"{PROG}: {summary_line(summary)}", file=sys.stderr, flush=True)
    if cfg.summary:
        try:
            write_json(cfg.summary, summary)
        except OSError as e:
            logging.getLogger(PROG).warning("cannot write the summary %s: %s", cfg.summary, e.strerror or e)
    if summary.get("stopped_at_deadline"):
        print(f"{PROG}: error: stopped at the {cfg.stop_timeout:g} s stop deadline with work unfinished "
              f"({summary.get('frames_skipped_by_reason', {}).get('stopped', 0)} frame(s) abandoned); "
              f"events flushed: {summary.get('events', 0)}", file=sys.stderr, flush=True)
        return EXIT_DEADLINE
    return 0


if __name__ == "__main__":
    sys.exit(main())
