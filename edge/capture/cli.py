"""``edge-capture``: the capture daemon on the line.

Example:
    edge-capture --model runs/convert-compact/model.int8.onnx --source file://line.mp4 \\
        --tile 200 --stride 200 --batch 16 --threshold 0.5 --events out/events.jsonl --log-all \\
        --metrics 127.0.0.1:9108
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import List, Optional

from edge.errors import cli_entry

PROG = "edge-capture"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(PROG, description="Classify tiles of camera/video frames and log defect events "
                                "(JSONL), with Prometheus metrics. Flags override the --config file.",
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--model", help="artifact with its metadata JSON (.onnx, .engine, .keras)")
    p.add_argument("--source", help="v4l2:///dev/video0, csi://0, rtsp://..., gst://PIPELINE, file://video.mp4, "
                   "file://dir/, or a plain path")
    p.add_argument("--config", help="TOML (or YAML with PyYAML) file with the same settings")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's input size)")
    p.add_argument("--stride", type=int, help="step between tiles (default: the tile size)")
    p.add_argument("--roi", help="x,y,w,h region of the frame to tile (default: whole frame)")
    p.add_argument("--batch", type=int, help="tiles per inference call (default 16)")
    p.add_argument("--threshold", type=float, help="top probability below this marks a tile uncertain (default 0.5)")
    p.add_argument("--events", help="JSONL events file (default events.jsonl)")
    p.add_argument("--log-all", dest="log_all", action="store_true", help="log every tile, not only defects")
    p.add_argument("--probs", action="store_true", help="add all class probabilities to each event")
    p.add_argument("--save-crops", dest="save_crops", help="folder for PNG crops of defect tiles (<event id>_<label>.png)")
    p.add_argument("--ok-classes", dest="ok_classes", help="comma-separated 'no defect' classes, logged only with "
                   "--log-all (NEU has none: every tile is a defect class)")
    p.add_argument("--metrics", help="serve /metrics and /healthz on HOST:PORT (e.g. 127.0.0.1:9108)")
    p.add_argument("--realtime", action="store_true", help="pace a file source at its frame rate, dropping stale frames")
    p.add_argument("--queue", type=int, help="frames the grab queue holds (default 2)")
    p.add_argument("--rotate-mb", dest="rotate_mb", type=float, help="rotate the events file at this size (default 64)")
    p.add_argument("--rotate-keep", dest="rotate_keep", type=int, help="rotated events files kept (default 5)")
    p.add_argument("--flush-interval", dest="flush_interval", type=float, help="seconds between event flushes (default 1)")
    p.add_argument("--max-frames", dest="max_frames", type=int, help="stop after this many frames")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt", "keras"], help="runner (default: from metadata)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--cuda-backend", dest="cuda_backend", choices=["auto", "cuda-python", "pycuda"],
                   help="CUDA memory backend of the TensorRT runner")
    p.add_argument("--cuda-graph", dest="cuda_graph", action="store_true",
                   help="TensorRT: capture the engine launch into a CUDA graph")
    p.add_argument("--zero-copy", dest="zero_copy", action="store_true",
                   help="TensorRT on Jetson: bind mapped pinned memory to the engine (no copies)")
    p.add_argument("--width", type=int, help="CSI capture width (default 1920)")
    p.add_argument("--height", type=int, help="CSI capture height (default 1080)")
    p.add_argument("--fps", type=int, help="CSI capture rate / image-folder rate for --realtime (default 30)")
    p.add_argument("--reconnect-initial", dest="reconnect_initial", type=float,
                   help="first reconnect backoff in s, doubled per failed attempt (default 0.5)")
    p.add_argument("--reconnect-max", dest="reconnect_max", type=float, help="longest reconnect backoff in s (default 10)")
    p.add_argument("--max-reconnects", dest="max_reconnects", type=int, help="give up after N failed attempts in a row")
    p.add_argument("--summary", help="also write the final summary as JSON to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    from edge.capture.config import load_config_file, merge
    from edge.capture.daemon import CaptureDaemon, summary_line
    from edge.fsutil import write_json

    args = vars(build_parser().parse_args(argv))
    verbose = args.pop("verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    file_values = load_config_file(args.pop("config")) if "config" in args else {}
    cfg = merge(file_values, args)
    daemon = CaptureDaemon(cfg)

    def on_signal(signum, _frame):
        logging.getLogger(PROG).warning("%s: stopping", signal.Signals(signum).name)
        daemon.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = daemon.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(f"{PROG}: {summary_line(summary)}", file=sys.stderr, flush=True)
    if cfg.summary:
        write_json(cfg.summary, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
