"""Daemon end-to-end throughput (tiles/s) vs the bare runner on the same tiles, in one run, with a per-stage profile.

The bare runner gets the batches the daemon makes (per frame, chunks of ``--batch``), already
decoded, cut and prepared in the artifact's input form (float preprocessed, or uint8 tiles for an
artifact with the preprocessing in its graph), and only inference is timed, two ways each round: one
batch at a time (``runner.infer``: on the ONNX Runtime CPU runner each batch split over the cores)
and the whole stream (``runner.infer_batches``: one batch per runner lane at once); the faster of the
two is the round's bare figure, so the ratio is against the runner at its best. The daemon reads
the same source from disk (decode, tiling, preprocessing, inference, JSONL events). Rounds
alternate bare/daemon in ABBA order so both see the same machine load; the medians and the
per-round (paired) ratios are reported, and the daemon's per-stage time per frame (decode, tiling,
preprocessing, inference, events: each stage's own thread time, the stages overlap) with the
tiles/s each stage alone could sustain.

Example:
    python scripts/daemon_throughput.py --model runs/convert-compact-u8/model.int8cpu.onnx \\
        --source raw://runs/line-tp/frames.npy --batch 16 --rounds 4 -o docs/results/daemon_throughput.json --key raw
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

from edge.errors import EdgeError, cli_entry  # noqa: E402

PROG = "daemon_throughput"

#: What each profiled stage covers (printed with the budget tables).
STAGES_DOC = ("Stages: **decode** = `source.read()` in the grab thread (PNG: `edge.capture.png.decode`, ISA-L inflate; MJPG: "
              "cv2.VideoCapture.read; raw: a view of the memory-mapped array); **tiling** = gray conversion and the "
              "frame's tile grid as one strided view; **preprocessing** = the tiles into the runner's input (uint8 "
              "artifact: one copy into a uint8 batch; float artifact: cv2.resize INTER_AREA + scaling per tile); "
              "**inference** = the runner (with lanes: `runner.infer_lane` in the lane's thread, two lanes at once, so "
              "the wall time per frame is about half of it; for a uint8 artifact it includes the resize and scaling "
              "inside the graph); **events** = labels, metrics and JSONL event lines (with lanes: in the lane that "
              "completes the earliest frame, in frame order).")


def _config(model, source, tile, stride, roi, batch, threads, backend, log_all, events, ok_classes=(), lanes=0):
    from edge.capture.config import CaptureConfig

    return CaptureConfig(model=model, source=source, tile=tile, stride=stride, roi=roi, batch=batch,
                         log_all=log_all, events=str(events), backend=backend, threads=threads, queue=8,
                         ok_classes=list(ok_classes), lanes=lanes)


def bare_batches(runner, cfg) -> tuple:
    """Decode the source and build, with the daemon's own code, the exact batches it will run."""
    from edge.capture.daemon import CaptureDaemon
    from edge.capture.metrics import Metrics
    from edge.capture.sources import END, Grabber

    d = CaptureDaemon(cfg, runner=runner)
    d.runner = runner
    g = Grabber(d._make_source(), Metrics(), queue_size=64).start()
    out: List[np.ndarray] = []
    frames = 0
    while True:
        item = g.queue.get()
        if item is END:
            break
        w = d.prepare(item)
        out += [np.array(b) for b in w.batches]  # own copies: independent of the source's buffers
        frames += 1
    if g.error:
        raise g.error
    return out, frames


def decode_cpu_ms(cfg, frames: int) -> float:
    """CPU ms per frame of reading (decoding) the source alone, on one thread, after the pipeline's own
    pass has put the files in the page cache."""
    from edge.capture.daemon import CaptureDaemon
    from edge.capture.sources import EndOfStream

    src = CaptureDaemon(cfg)._make_source()
    src.open()
    n, c0 = 0, time.thread_time()
    try:
        while n < frames:
            src.read()
            n += 1
    except EndOfStream:
        pass
    finally:
        src.close()
    return (time.thread_time() - c0) * 1e3 / max(n, 1)


def decode_ceiling(cpu_ms_per_tile_bare: float, tiles_per_frame: float, decode_ms: float) -> float:
    """The most the daemon can reach against the bare runner when every core is busy and decoding were
    the only work it adds: the runner's CPU per frame ÷ (that + the decode's CPU per frame)."""
    run = cpu_ms_per_tile_bare * tiles_per_frame
    return run / (run + decode_ms)


def measure(model: str, source: str, tile: Optional[int] = None, stride: Optional[int] = None, roi=None,
            batch: int = 16, threads: int = 0, rounds: int = 4, backend: str = "auto", log_all: bool = True,
            ok_classes=(), lanes: int = 0) -> Dict:
    from bench.environment import cpu_model
    from edge.capture.daemon import STAGES, CaptureDaemon
    from edge.runtime import load_runner

    load0 = [round(v, 2) for v in os.getloadavg()]
    opts = {"threads": threads} if threads else {}
    work = Path(tempfile.mkdtemp(prefix="daemon-tp-"))
    bare, daemon, runs, bare_cpu = [], [], [], []
    bare_modes: Dict[str, List[float]] = {"infer": [], "infer_batches": []}
    with load_runner(model, backend=backend, **opts) as r:
        read_cfg = _config(model, source, tile, stride, roi, batch, threads, backend, log_all, work / "unused.jsonl")
        batches, frames = bare_batches(r, read_cfg)
        tiles = sum(len(b) for b in batches)
        decode_ms = decode_cpu_ms(read_cfg, frames)
        runner_lanes = r.lanes
        if not tiles:
            raise EdgeError(f"{source} gave no tiles")
        for b in batches[:3]:
            r.infer(b)  # warm caches beyond the runner's own warm-up

        def one_at_a_time():
            for b in batches:
                r.infer(b)

        def streamed():
            for _ in r.infer_batches(batches):
                pass

        def run_bare():
            best = None
            for mode, fn in (("infer", one_at_a_time), ("infer_batches", streamed)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                tps, cpu = tiles / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / tiles
                bare_modes[mode].append(round(tps, 1))
                if best is None or tps > best[0]:
                    best = (tps, cpu)
            bare.append(best[0])
            bare_cpu.append(best[1])

        for k in range(rounds):
            if k % 2 == 0:  # ABBA order: neither side always runs first
                run_bare()
            d = CaptureDaemon(_config(model, source, tile, stride, roi, batch, threads, backend, log_all,
                                      work / f"events{k}.jsonl", ok_classes, lanes))
            s = d.run()  # its own runner, loaded before the timed loop starts
            if s["tiles"] != tiles or (log_all and s["events"] != tiles):
                raise EdgeError(f"daemon classified {s['tiles']} tiles / {s['events']} events, expected {tiles}")
            daemon.append(s["tiles"] / s["elapsed_s"])
            runs.append({k2: s[k2] for k2 in ("frames_processed", "tiles", "events", "elapsed_s", "cpu_s", "lanes",
                                             "latency_mean_ms", "latency_p99_ms", "stages_ms_per_frame")})
            if k % 2 == 1:
                run_bare()
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    med_b, med_d = statistics.median(bare), statistics.median(daemon)
    paired = [d / b for d, b in zip(daemon, bare)]
    tpf = tiles / frames
    stage_ms = {st: round(statistics.median(run["stages_ms_per_frame"][st] for run in runs), 3) for st in STAGES}
    wall_ms = round(statistics.median(run["elapsed_s"] for run in runs) * 1e3 / frames, 3)
    cpu_b = statistics.median(bare_cpu)
    cpu_d = statistics.median(run["cpu_s"] * 1e3 / run["tiles"] for run in runs)
    return {"model": model, "input_form": r.input_form, "source": source, "frames": frames, "tiles": tiles,
            "tiles_per_frame": tpf, "batch": batch, "batches": len(batches), "log_all": log_all,
            "ok_classes": list(ok_classes), "events_per_round": runs[0]["events"],
            "threads": threads or "onnxruntime default", "rounds": rounds, "lanes": lanes or "the runner's",
            "runner_lanes": runner_lanes, "bare_modes_tiles_per_s": bare_modes,
            "bare_tiles_per_s": [round(v, 1) for v in bare], "daemon_tiles_per_s": [round(v, 1) for v in daemon],
            "bare_median": round(med_b, 1), "daemon_median": round(med_d, 1), "ratio": round(med_d / med_b, 3),
            "paired_ratios": [round(v, 3) for v in paired], "median_paired_ratio": round(statistics.median(paired), 3),
            "cpu_ms_per_tile_bare": round(cpu_b, 4), "cpu_ms_per_tile_daemon": round(cpu_d, 4),
            "cpu_ratio": round(cpu_b / cpu_d, 3) if cpu_d else None,
            "decode_cpu_ms_per_frame": round(decode_ms, 3),
            "decode_ceiling": round(decode_ceiling(cpu_b, tpf, decode_ms), 3),
            "profile_ms_per_frame": stage_ms, "daemon_wall_ms_per_frame": wall_ms,
            "profile_tiles_per_s": {st: (round(tpf / (ms / 1e3), 1) if ms else None) for st, ms in stage_ms.items()},
            "loadavg_before": load0, "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "daemon_runs": runs,
            "machine": {"cpu": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "definition": "daemon: tiles / wall time of the daemon pipeline (decode in the grab thread; with lanes, "
                          "tiling, preprocessing, inference and the JSONL events in the lane threads, one frame each; "
                          "with --lanes 1 in the prepare, main and emit threads), "
                          "model loading excluded; bare: tiles / wall time over the same prepared batches, "
                          "per round the faster of runner.infer one batch at a time and runner.infer_batches over the "
                          "stream (bare_modes_tiles_per_s has both); profile: each stage's own time per frame (median over rounds; the stages "
                          "run in parallel threads, so they add up to more than the wall time); cpu_ms_per_tile: CPU "
                          "time of the whole process (all threads, onnxruntime's included) per tile over the same "
                          "spans; cpu_ratio = bare / daemon, the overhead measure that does not depend on how much "
                          "of a shared machine each side got; decode_cpu_ms_per_frame: the source read alone on one "
                          "thread (CPU time); decode_ceiling = bare CPU per frame / (that + decode CPU per frame): the "
                          "ratio the daemon could reach with every core busy if decoding were all it added"}


def profile_lines(res: Dict) -> List[str]:
    """The per-stage profile as printed lines."""
    lines = [f"  {'stage':<14}{'ms/frame':>10}{'tiles/s alone':>16}"]
    for st, ms in res["profile_ms_per_frame"].items():
        tps = res["profile_tiles_per_s"][st]
        lines.append(f"  {st:<14}{ms:>10.3f}{(f'{tps:,.0f}' if tps else '-'):>16}")
    lines.append(f"  {'wall (daemon)':<14}{res['daemon_wall_ms_per_frame']:>10.3f}{res['daemon_median']:>16,.0f}")
    return lines


@cli_entry(PROG)
def main(argv=None) -> int:
    from edge.fsutil import write_json

    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--tile", type=int)
    ap.add_argument("--stride", type=int)
    ap.add_argument("--roi")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lanes", type=int, default=0, help="the daemon's --lanes (0: the runner's)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--no-log-all", dest="log_all", action="store_false",
                    help="daemon without --log-all (NEU has no 'ok' class: every tile is still an event)")
    ap.add_argument("--ok-classes", default="", help="comma-separated 'no defect' classes (not logged without --log-all)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--key", help="store the result under this key of an existing JSON output (merge)")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        raise EdgeError(f"--rounds must be >= 1, got {a.rounds}")
    res = measure(a.model, a.source, a.tile, a.stride, a.roi, a.batch, a.threads, a.rounds, a.backend, a.log_all,
                  [c for c in a.ok_classes.split(",") if c], a.lanes)
    from scripts.synthline import merge_into

    write_json(a.output, merge_into(a.output, a.key, res))
    print(f"{PROG}: daemon {res['daemon_median']} tiles/s vs bare runner {res['bare_median']} tiles/s "
          f"(ratio {res['ratio']}, median paired ratio {res['median_paired_ratio']}) over {res['tiles']} tiles x "
          f"{res['rounds']} rounds → {a.output}")
    print(f"CPU per tile: bare {res['cpu_ms_per_tile_bare']} ms, daemon {res['cpu_ms_per_tile_daemon']} ms "
          f"(cpu ratio {res['cpu_ratio']}); decode alone {res['decode_cpu_ms_per_frame']} CPU ms per frame: "
          f"ceiling {res['decode_ceiling']}")
    print("\n".join(profile_lines(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
