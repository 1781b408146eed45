#!/usr/bin/env python3
"""Turn a soak run of ``scripts/soak.py`` (``result.json`` + ``samples.csv``) into a Markdown report.

Example:
    .venv/bin/python scripts/soak_report.py /work/soak-out/run3 --md docs/results/soak.md
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the --out folder of scripts/soak.py")
    ap.add_argument("--md", required=True)
    ap.add_argument("--commit", default="", help="the commit the soak ran")
    ap.add_argument("--started", default="", help="when it started (UTC)")
    args = ap.parse_args(argv)
    run = Path(args.run)
    res = json.loads((run / "result.json").read_text())
    rows = list(csv.DictReader(open(run / "samples.csv")))
    s = res["summary"]
    drop = s.get("events_dropped_by_reason", {})
    skipped = s.get("frames_skipped_by_reason", {})
    every = max(1, len(rows) // 12)
    table = ["| t (min) | RSS (MB) | threads | fds | frames processed | tiles | events written | dropped (rotation) "
             "| pending | crops on disk (kB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows[::every] + ([rows[-1]] if (len(rows) - 1) % every else []):
        table.append(f"| {float(r['t_s']) / 60:.1f} | {int(r['rss_kb']) / 1024:.1f} | {r['threads']} | {r['fds']} | "
                     f"{int(r['frames_processed']):,} | {int(r['tiles']):,} | {int(r['events']):,} | "
                     f"{int(r['events_dropped_rotation']):,} | {r['events_pending']} | {int(r['crops_bytes']) / 1024:.0f} |")
    ok = res.get("tiles_eq_written_plus_dropped_disk") and res.get("lines_eq_written_minus_rotation") \
        and res.get("partial_lines") == 0 and res.get("exit_code") == 0
    md = f"""# Soak: `edge-capture` for {res['minutes']:.0f} minutes

Run with `scripts/soak.py --minutes {res['minutes']:g} --fps {res['fps']}` (report: `scripts/soak_report.py`){
f', commit `{args.commit}`' if args.commit else ''}{f', started {args.started} UTC' if args.started else ''}, on the
2-core development machine ({cpu_name()}), **shared** with other jobs the whole time (the soak is about
resources and books, not speed). Not part of CI.

Set-up: the real CLI process on an image-folder source paced with `--realtime` at {res['fps']} fps (frames of 4 x 2
tiles of 32x32, so {res['fps'] * 8} tiles/s), every tile logged (`--log-all`), a bad frame every 500 (1x1 images
and broken PNGs alternately), events rotated at 8 MB keeping 2, crops saved within a 0.25 MB budget at 20
per class per minute, `/metrics` scraped every 30 s, RSS/threads/fds from `/proc` every 30 s. The model is
the tiny intensity ONNX model of `scripts.fixtures.intensity_model` (ONNX Runtime, 1 thread): light on the CPU.
At the end: SIGTERM.

## Result

| Figure | Value |
|---|---|
| RSS slope (linear fit, {res.get('from_s', 0) / 60:.0f}–{res.get('to_s', 0) / 60:.0f} min) | **{res.get('rss_slope_mb_per_h')} MB/hour** |
| RSS first / last / max after warm-up | {res.get('rss_mb_first')} / {res.get('rss_mb_last')} / {res.get('rss_mb_max')} MB |
| threads min–max after warm-up | {res.get('threads_min')}–{res.get('threads_max')} |
| open file descriptors min–max after warm-up | {res.get('fds_min')}–{res.get('fds_max')} |
| frames read / processed / skipped / dropped (latest-frame) | {s.get('frames_read', 0):,} / {s.get('frames_processed', 0):,} / {s.get('frames_skipped', 0)} ({', '.join(f'{k} {v}' for k, v in skipped.items())}) / {s.get('frames_dropped', 0)} |
| tiles classified | {s.get('tiles', 0):,} |
| events written (`events_total`) | {s.get('events', 0):,} |
| events dropped: disk / rotation | {drop.get('disk', 0):,} / {drop.get('rotation', 0):,} |
| tiles = events written + dropped (disk) | {res.get('tiles_eq_written_plus_dropped_disk')} |
| lines on disk = written − dropped (rotation) | {res.get('lines_eq_written_minus_rotation')} ({res.get('lines_on_disk', 0):,} lines, {res.get('partial_lines')} partial) |
| crops saved / skipped (sampled) / deleted by the budget | {s.get('crops_saved', 0):,} / {s.get('crops_skipped_by_reason', {}).get('sampled', 0):,} / {s.get('crops_deleted', 0):,} ({res.get('crops_files')} files, {res.get('crops_dir_bytes', 0) / 1024:.0f} kB on disk) |
| latency mean / p99 (frame read → events) | {s.get('latency_mean_ms') or 0:.1f} / {s.get('latency_p99_ms') or 0:.1f} ms |
| CPU time of the daemon | {res.get('cpu_s')} s |
| SIGTERM → exit | code {res.get('exit_code')} in {res.get('exit_s')} s |

Verdict: {'the books add up and every line is whole' if ok else 'a check of the books FAILED'}; threads
{'flat' if res.get('threads_max', 0) - res.get('threads_min', 0) <= 2 else 'NOT flat'} and fds {'flat' if res.get('fds_max', 0) - res.get('fds_min', 0) <= 2 else 'NOT flat'}; RSS {'flat' if abs(res.get('rss_slope_mb_per_h') or 0) < 2 else '**NOT flat**: it grows'}.

## Samples

{chr(10).join(table)}

Raw samples: `samples.csv` and `result.json` of the run folder (`/work/soak-out/` on the machine it ran on;
not committed).
"""
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
