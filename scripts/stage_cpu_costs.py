"""CPU time of each daemon stage per frame, measured one stage at a time (single thread).

Wall-clock throughput on a machine shared with other jobs depends on how much of the cores each
side gets; the CPU time an operation takes depends much less on that. This measures, with
``time.process_time``, each stage of the daemon on the frames of a line (scripts/make_line_sources.py):
decode (PNG, MJPG, raw), tiling + packing, host preprocessing (the float artifact's path), inference
(onnxruntime with one intra-op thread, uint8-tile and float artifacts), events (``CaptureDaemon.emit``
with --log-all into a temporary file). The sum per source is the CPU a frame costs; two cores give
at most ``2 / sum`` frames per second, which is the budget against the line's 1,500 tiles/s.

Example:
    python scripts/stage_cpu_costs.py --uint8 runs/convert-compact-u8/model.int8cpu.onnx \\
        --float runs/convert-compact/model.int8cpu.onnx --line runs/line-tp -o docs/results/stage-cpu-costs.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere


def cpu_ms(fn, n: int, repeats: int = 3) -> float:
    """Median over ``repeats`` of the CPU ms per call of ``fn`` over ``n`` calls."""
    out = []
    for _ in range(repeats):
        c0 = time.process_time()
        for i in range(n):
            fn(i)
        out.append((time.process_time() - c0) * 1e3 / n)
    return statistics.median(out)


def main(argv=None) -> int:
    import cv2

    from bench.environment import cpu_model
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon, Work
    from edge.capture.events import EventWriter
    from edge.capture.metrics import Metrics
    from edge.capture.png import decode as decode_png
    from edge.capture.sources import Frame, image_files
    from edge.capture.tiling import Grid, tile_grid
    from edge.fsutil import write_json
    from edge.runtime import load_runner

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uint8", required=True)
    ap.add_argument("--float", required=True)
    ap.add_argument("--line", required=True)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    line = Path(a.line)
    raw = np.load(line / "frames.npy", mmap_mode="r")
    n = min(a.frames, len(raw))
    pngs = image_files(line / "png")[:n]
    res = {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_before": [round(v, 2) for v in os.getloadavg()],
           "frames": n, "frame_shape": list(raw.shape[1:]), "ms_per_frame": {}}
    ms = res["ms_per_frame"]
    # what the daemon's folder source does (edge.capture.png since stop 24), and OpenCV alone (before)
    ms["decode_png"] = cpu_ms(lambda i: decode_png(pngs[i % len(pngs)].read_bytes()), n)
    ms["decode_png_opencv"] = cpu_ms(lambda i: cv2.imread(str(pngs[i % len(pngs)]), cv2.IMREAD_UNCHANGED), n)
    cap = cv2.VideoCapture(str(line / "line.avi"))

    def mjpg(i):
        ok, _ = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    ms["decode_mjpg"] = cpu_ms(mjpg, n)
    cap.release()
    ms["decode_raw"] = cpu_ms(lambda i: np.asarray(raw[i % n]), n)
    grid = Grid(tile_grid(raw.shape[2], raw.shape[1], 200))
    frames = [np.array(raw[i]) for i in range(n)]
    ms["tiling_pack_uint8"] = cpu_ms(lambda i: grid.pack(frames[i % n]), n)
    tpf = len(grid)
    with load_runner(a.uint8, threads=1) as ru, load_runner(a.float, threads=1) as rf:
        ms["preprocess_host_float"] = cpu_ms(lambda i: rf.host_input(grid.tiles(frames[i % n])), n)
        ub = [grid.pack(f) for f in frames]
        fb = [rf.host_input(grid.tiles(f)) for f in frames]
        ms["inference_uint8_tiles_1thread"] = cpu_ms(lambda i: ru.infer(ub[i % n]), n)
        ms["inference_float_1thread"] = cpu_ms(lambda i: rf.infer(fb[i % n]), n)
        tmp = Path(tempfile.mkdtemp(prefix="stage-cpu-"))
        d = CaptureDaemon(CaptureConfig(model=a.uint8, source=str(line / "frames.npy"), log_all=True,
                                        events=str(tmp / "ev.jsonl")))
        d.runner, d.classes = ru, ru.classes
        d.metrics = m = Metrics(ru.classes)
        d.writer = EventWriter(tmp / "ev.jsonl", on_written=lambda k: m.inc("events", k))
        probs = [ru.infer(b) for b in ub]
        works = [Work(Frame(i, time.time(), time.monotonic(), frames[i]), grid, frames[i], [], probs[i])
                 for i in range(n)]
        for w in works:
            w.scores = None
        ms["events_log_all"] = cpu_ms(lambda i: d.emit(works[i % n]), n)
        d.writer.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    ms = {k: round(v, 3) for k, v in ms.items()}
    res["ms_per_frame"] = ms
    common = ms["tiling_pack_uint8"] + ms["events_log_all"]
    budgets = {
        "raw, uint8-tile artifact": ms["decode_raw"] + common + ms["inference_uint8_tiles_1thread"],
        "raw, float artifact (host preprocessing)": ms["decode_raw"] + ms["preprocess_host_float"]
        + ms["events_log_all"] + ms["inference_float_1thread"],
        "PNG folder, uint8-tile artifact": ms["decode_png"] + common + ms["inference_uint8_tiles_1thread"],
        "MJPG video, uint8-tile artifact": ms["decode_mjpg"] + common + ms["inference_uint8_tiles_1thread"],
    }
    res["cpu_ms_per_frame_total"] = {k: round(v, 3) for k, v in budgets.items()}
    res["two_core_capacity_tiles_per_s"] = {k: round(2 * 1000 / v * tpf) for k, v in budgets.items()}
    res["inference_share"] = {k: round((ms["inference_float_1thread"] if "float" in k else ms["inference_uint8_tiles_1thread"]) / v, 3)
                              for k, v in budgets.items()}
    res["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    res["definition"] = ("CPU ms per frame (1600x400, 16 tiles of 200 px) of each stage, time.process_time over "
                         "the calls, median of 3 passes; inference with one onnxruntime thread and batch 16; "
                         "capacity = 2 cores x 1000 / (sum of the stages' CPU ms) x 16 tiles, which assumes the "
                         "stages spread over both cores without loss (an upper bound: the Python parts share the GIL)")
    write_json(a.output, res)
    for k, v in ms.items():
        print(f"{k:<32}{v:>9.3f} ms/frame")
    for k, v in budgets.items():
        print(f"{k:<45} {v:7.2f} CPU ms/frame -> {res['two_core_capacity_tiles_per_s'][k]:,} tiles/s on 2 cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
