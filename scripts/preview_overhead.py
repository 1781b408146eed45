"""Does ``edge-capture --preview`` slow classification? Daemon tiles/s with the preview off and on.

Paired rounds in ABBA order (off, on, on, off, ...) on the same raw recording (``raw://``, a
uint8 N x H x W .npy: no codec in the way, so the daemon runs at the speed of its runner and any
cost of the preview shows). With the preview on, a client polls ``/preview.jpg`` every
``--poll`` seconds for the whole run (a browser on the ``/`` page asks once a second; the preview
encodes at most once per 0.5 s however often it is asked) and ``/preview.json`` once a second, from a
separate process (as a browser would be). Each run is an in-process :class:`edge.capture.daemon.CaptureDaemon` with the metrics server on a free
127.0.0.1 port. Reported: tiles/s per run, the medians, the per-pair ratio on/off, the CPU time of
the daemon's process per tile (user + sys of every thread, the viewer not included: on a shared
machine the cost shows there even when the wall-clock throughput is noise), and how many JPEGs were
encoded and served.

Example:
    python scripts/preview_overhead.py --model runs/demo/convert/model.int8cpu.onnx \\
        --frames-from runs/demo/line/frames --repeat 40 --rounds 4 -o docs/results/preview-overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.errors import EdgeError, cli_entry  # noqa: E402

PROG = "preview_overhead"


def make_raw(frames_dir: Path, repeat: int, out: Path) -> Path:
    """Stack the PNG frames of a line ``repeat`` times into a raw .npy recording."""
    from edge.data import read_gray

    files = sorted(frames_dir.glob("*.png"))
    if not files:
        raise EdgeError(f"no PNG frames in {frames_dir}")
    imgs = np.stack([read_gray(f) for f in files])
    np.save(out, np.concatenate([imgs] * repeat))
    return out


#: The viewer: a separate process (as a browser would be), polling until SIGTERM, then printing its counts.
POLLER = r"""
import json, signal, sys, time, urllib.request
url, every, want = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
counts, t_json = {}, 0.0
while not stop:
    paths = [p for p in want if p != "/preview.json" or time.monotonic() - t_json >= 1.0]
    for path in paths:
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                r.read()
                counts[path] = counts.get(path, 0) + int(r.status == 200)
        except OSError:
            counts["errors"] = counts.get("errors", 0) + 1
        if path == "/preview.json":
            t_json = time.monotonic()
    time.sleep(every)
print(json.dumps(counts))
"""


def run_once(model: str, source: str, tile: int, batch: int, preview: bool, poll: float, threads: int,
             paths: str = "/preview.jpg,/preview.json") -> Dict:
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon

    with tempfile.TemporaryDirectory(prefix="preview-") as tmp:
        cfg = CaptureConfig(model=model, source=source, tile=tile, batch=batch, log_all=True,
                            events=str(Path(tmp) / "ev.jsonl"), metrics="127.0.0.1:0", preview=preview,
                            threads=threads, queue=8)
        d = CaptureDaemon(cfg)
        poller = None
        if preview:
            orig = d.emit

            def emit(work):  # start the viewer once the server is up and the first frame is out
                nonlocal poller
                orig(work)
                if poller is None and poll > 0:
                    poller = subprocess.Popen([sys.executable, "-c", POLLER, d.server.url, str(poll), paths],
                                              stdout=subprocess.PIPE, text=True)

            d.emit = emit
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            s = d.run()
        finally:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            counts: Dict[str, int] = {}
            if poller is not None:
                poller.terminate()
                out_text, _ = poller.communicate(timeout=10)
                counts = json.loads(out_text.strip().splitlines()[-1]) if out_text.strip() else {}
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # every thread of this process
    out = {"preview": preview, "tiles": s["tiles"], "elapsed_s": s["elapsed_s"], "tiles_per_s": s["tiles_per_s"],
           "frames": s["frames_processed"], "cpu_s": round(cpu, 3),
           "cpu_ms_per_tile": round(1e3 * cpu / max(1, s["tiles"]), 4)}
    if preview:
        out.update(served=counts, encodes=d.preview.encodes)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames-from", required=True, help="folder of PNG frames (e.g. runs/demo/line/frames)")
    ap.add_argument("--repeat", type=int, default=40, help="times the frames are repeated in the recording")
    ap.add_argument("--tile", type=int, default=200)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=4, help="pairs (off, on), in ABBA order")
    ap.add_argument("--poll", type=float, default=0.2,
                    help="seconds between /preview.jpg requests (0: preview on but nobody watching)")
    ap.add_argument("--paths", default="/preview.jpg,/preview.json",
                    help="what the viewer asks for (comma-separated; /preview.json at most once a second)")
    ap.add_argument("-o", "--out", required=True, help="JSON result file")
    return ap


@cli_entry(PROG)
def main(argv=None) -> int:
    from bench.environment import environment
    from edge.fsutil import write_json

    a = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="preview-rec-") as tmp:
        raw = make_raw(Path(a.frames_from), a.repeat, Path(tmp) / "frames.npy")
        source = f"raw://{raw}"
        run_once(a.model, source, a.tile, a.batch, False, a.poll, a.threads)  # warm-up (not counted)
        runs: List[Dict] = []
        for r in range(a.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            pair = {p: run_once(a.model, source, a.tile, a.batch, p, a.poll, a.threads, a.paths) for p in order}
            runs += [pair[False], pair[True]]
            print(f"round {r + 1}: off {pair[False]['tiles_per_s']:.0f} tiles/s ({pair[False]['cpu_ms_per_tile']:.2f} "
                  f"CPU ms/tile), on {pair[True]['tiles_per_s']:.0f} tiles/s ({pair[True]['cpu_ms_per_tile']:.2f} CPU ms/tile)"
                  f",  ({pair[True]['encodes']} JPEGs encoded, {pair[True]['served']})", flush=True)
    off = [x["tiles_per_s"] for x in runs if not x["preview"]]
    on = [x["tiles_per_s"] for x in runs if x["preview"]]
    ratios = [b / a_ for a_, b in zip(off, on)]
    cpu_off = [x["cpu_ms_per_tile"] for x in runs if not x["preview"]]
    cpu_on = [x["cpu_ms_per_tile"] for x in runs if x["preview"]]
    res = {"model": a.model, "recording": {"frames_from": a.frames_from, "repeat": a.repeat, "tile": a.tile,
                                           "frames": runs[0]["frames"], "tiles": runs[0]["tiles"]},
           "batch": a.batch, "poll_s": a.poll, "paths": a.paths, "rounds": a.rounds, "runs": runs,
           "median_tiles_per_s": {"off": statistics.median(off), "on": statistics.median(on)},
           "paired_ratio_on_off": {"per_round": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3)},
           "cpu_ms_per_tile": {"off": cpu_off, "on": cpu_on, "median_off": statistics.median(cpu_off),
                               "median_on": statistics.median(cpu_on)},
           "machine": platform.processor() or platform.machine(), "environment": environment(),
           "command": "python scripts/preview_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_json(a.out, res)
    print(f"median CPU ms per tile off {res['cpu_ms_per_tile']['median_off']:.3f}, "
          f"on {res['cpu_ms_per_tile']['median_on']:.3f}; "
          f"median tiles/s off {res['median_tiles_per_s']['off']:.0f}, on {res['median_tiles_per_s']['on']:.0f}; "
          f"paired ratio on/off median {res['paired_ratio_on_off']['median']:.3f} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
