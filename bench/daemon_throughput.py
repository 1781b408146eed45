"""Daemon end-to-end throughput (tiles/s) vs the bare runner on the same batches, in one run.

The bare runner gets the tile batches the daemon makes (per frame, chunks of ``--batch``),
already decoded, cut and preprocessed, and only ``runner.infer`` is timed. The daemon reads the
same source from disk (decode in the grab thread, tiling, the model's preprocessing, inference,
events JSONL with --log-all). Rounds alternate bare/daemon in ABBA order so both see the same
machine load; the medians and the per-round (paired) ratios are reported.

Example:
    python -m bench.daemon_throughput --model runs/convert-compact/model.int8.onnx \\
        --source runs/line/line.avi --tile 200 --batch 8 --rounds 5 -o docs/results/daemon_throughput.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edge.errors import EdgeError, cli_entry

PROG = "daemon_throughput"


def _batches(model: str, source: str, tile: Optional[int], stride: Optional[int], roi, batch: int, threads: int):
    """Decode the source and build the exact batches the daemon will run."""
    from edge.capture.sources import END, Grabber, open_source, parse_source
    from edge.capture.metrics import Metrics
    from edge.capture.tiling import cut, parse_roi, tile_grid, to_gray
    from edge.metadata import preprocess_of, read_meta

    prep = preprocess_of(read_meta(model))
    g = Grabber(open_source(parse_source(source)), Metrics(), queue_size=64).start()
    out: List[np.ndarray] = []
    frames = 0
    while True:
        item = g.queue.get()
        if item is END:
            break
        gray = to_gray(item.image)
        boxes = tile_grid(gray.shape[1], gray.shape[0], tile or (prep.width, prep.height), stride, parse_roi(roi))
        tiles = cut(gray, boxes)
        out += [prep(tiles[a:a + batch]) for a in range(0, len(tiles), batch)]
        frames += 1
    if g.error:
        raise g.error
    return out, frames


def measure(model: str, source: str, tile: Optional[int] = None, stride: Optional[int] = None, roi=None,
            batch: int = 8, threads: int = 0, rounds: int = 5, backend: str = "auto") -> Dict:
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon
    from edge.runtime import load_runner

    load0 = [round(v, 2) for v in os.getloadavg()]
    batches, frames = _batches(model, source, tile, stride, roi, batch, threads)
    tiles = sum(len(b) for b in batches)
    if not tiles:
        raise EdgeError(f"{source} gave no tiles")
    opts = {"threads": threads} if threads else {}
    bare, daemon, daemon_summaries = [], [], []
    work = Path(tempfile.mkdtemp(prefix="daemon-tp-"))
    with load_runner(model, backend=backend, **opts) as r:
        for b in batches[:3]:
            r.infer(b)  # warm caches beyond the runner's own warm-up
        def run_bare():
            t0 = time.perf_counter()
            for b in batches:
                r.infer(b)
            bare.append(tiles / (time.perf_counter() - t0))

        for k in range(rounds):
            if k % 2 == 0:  # ABBA order: neither side always runs first
                run_bare()
            cfg = CaptureConfig(model=model, source=source, tile=tile, stride=stride, roi=roi, batch=batch,
                                log_all=True, events=str(work / f"events{k}.jsonl"), backend=backend,
                                threads=threads, queue=8)
            d = CaptureDaemon(cfg)
            s = d.run()  # its own runner, loaded before the timed loop starts
            if s["tiles"] != tiles or s["events"] != tiles:
                raise EdgeError(f"daemon classified {s['tiles']} tiles / {s['events']} events, expected {tiles}")
            daemon.append(s["tiles"] / s["elapsed_s"])
            daemon_summaries.append({k2: s[k2] for k2 in ("frames_processed", "tiles", "events", "elapsed_s",
                                                           "latency_mean_ms", "latency_p99_ms")})
            if k % 2 == 1:
                run_bare()
    med_b, med_d = statistics.median(bare), statistics.median(daemon)
    paired = [d / b for d, b in zip(daemon, bare)]  # each round: daemon right after bare, same load
    return {"model": model, "source": source, "frames": frames, "tiles": tiles, "batch": batch,
            "batches": len(batches), "threads": threads or "onnxruntime default", "rounds": rounds,
            "bare_tiles_per_s": [round(v, 1) for v in bare], "daemon_tiles_per_s": [round(v, 1) for v in daemon],
            "bare_median": round(med_b, 1), "daemon_median": round(med_d, 1), "ratio": round(med_d / med_b, 3),
            "paired_ratios": [round(v, 3) for v in paired], "median_paired_ratio": round(statistics.median(paired), 3),
            "loadavg_before": load0, "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "daemon_runs": daemon_summaries,
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count()},
            "definition": "daemon: tiles / wall time of the daemon loop (decode in the grab thread, tiling, "
                          "preprocessing, inference, JSONL events with --log-all), model loading excluded; bare: "
                          "tiles / wall time of runner.infer over the same preprocessed batches"}


@cli_entry(PROG)
def main(argv=None) -> int:
    from edge.fsutil import write_json

    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--tile", type=int)
    ap.add_argument("--stride", type=int)
    ap.add_argument("--roi")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--key", help="store the result under this key of an existing JSON output (merge)")
    a = ap.parse_args(argv)
    res = measure(a.model, a.source, a.tile, a.stride, a.roi, a.batch, a.threads, a.rounds, a.backend)
    from bench.synthline import merge_into

    write_json(a.output, merge_into(a.output, a.key, res))
    print(f"{PROG}: daemon {res['daemon_median']} tiles/s vs bare runner {res['bare_median']} tiles/s "
          f"(ratio {res['ratio']}, median paired ratio {res['median_paired_ratio']}) over {res['tiles']} tiles x {res['rounds']} rounds → {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
