#!/usr/bin/env python3
"""Soak test of ``edge-capture``: run the daemon for an hour or more on a generated stream and
watch its resources and its books.

The daemon runs as its own process (the real CLI) on an image-folder source paced with
``--realtime`` (default 20 fps), logging every tile, with rotation and a crops budget small
enough to be exercised many times, and bad frames (1x1 images and broken PNGs) mixed in. The
model is the tiny intensity ONNX model of :mod:`scripts.fixtures.intensity_model` (light on the CPU; the
soak is about the daemon, not the model). Every ``--every`` seconds the script samples the
process's RSS, threads and open file descriptors (``/proc``) and the daemon's counters
(``/metrics``). At the end it sends SIGTERM and checks the exit code and the books:

- tiles classified = events written + events dropped for the disk;
- lines on disk = events written - events dropped by rotation;
- every line on disk is whole JSON.

Writes ``samples.csv``, ``result.json`` and ``daemon.log`` into ``--out``.

Example:
    nohup .venv/bin/python scripts/soak.py --minutes 60 --out /work/soak-out > /work/soak-out/soak.log 2>&1 &
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

T = 32            # model input = tile size
COLS, ROWS = 4, 2  # 8 tiles per frame


def make_stream(folder: Path, n_frames: int, bad_every: int) -> int:
    """``n_frames`` PNGs (hard links to 60 distinct frames) with a bad frame every ``bad_every``."""
    import cv2

    from scripts.fixtures.intensity_model import class_level

    folder.mkdir(parents=True, exist_ok=True)
    base = folder / ".base"
    base.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    protos = []
    for i in range(60):
        img = np.zeros((ROWS * T, COLS * T), np.uint8)
        for k in range(ROWS * COLS):
            y, x = divmod(k, COLS)
            img[y * T:(y + 1) * T, x * T:(x + 1) * T] = class_level(int(rng.integers(0, 6)))
        p = base / f"p{i:02d}.png"
        cv2.imwrite(str(p), img)
        protos.append(p)
    tiny = base / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1), np.uint8))
    broken = base / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad = 0
    for f in range(n_frames):
        dst = folder / f"f{f:07d}.png"
        if dst.exists():
            continue
        if bad_every and f % bad_every == bad_every - 1:
            src = tiny if (f // bad_every) % 2 == 0 else broken
            bad += 1
        else:
            src = protos[f % len(protos)]
        os.link(src, dst)
    return bad


def scrape(url: str) -> dict:
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
    except OSError:
        pass
    return out


def proc_stats(pid: int) -> dict:
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                st[k] = int(v.split()[0])
    st["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    st["cpu_s"] = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    return st


def count_whole_lines(events: Path) -> tuple:
    """(lines, partial lines) over the events file and its rotated files."""
    n, bad = 0, 0
    for p in sorted(events.parent.glob(events.name + "*")):
        with open(p, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            bad += 1
        for line in data.splitlines():
            try:
                json.loads(line)
                n += 1
            except ValueError:
                bad += 1
    return n, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--fps", type=int, default=20)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--out", default="/work/soak-out")
    ap.add_argument("--bad-every", type=int, default=500, help="a bad frame every N frames")
    ap.add_argument("--variant", default=None,
                    help="run the daemon through scripts/soak_variant.py with this variant (A/B runs)")
    ap.add_argument("--warm-s", type=float, default=300.0, help="the RSS slope is fitted after this many seconds")
    args = ap.parse_args(argv)

    from scripts.fixtures.intensity_model import make_intensity_model
    from scripts.fixtures.mosquitto import free_port

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = make_intensity_model(out / "model" / "intensity.onnx", T)
    n_frames = int(args.minutes * 60 * args.fps * 1.1) + 200   # more than the run needs: it is stopped by SIGTERM
    t0 = time.time()
    bad = make_stream(out / "frames", n_frames, args.bad_every)
    print(f"stream: {n_frames} frames ({bad} bad) in {time.time() - t0:.0f} s", flush=True)
    work = out / "run"
    for p in work.glob("**/*"):
        if p.is_file():
            p.unlink()
    work.mkdir(exist_ok=True)
    port = free_port()
    events = work / "events" / "events.jsonl"
    entry = ["-m", "edge.capture.cli"] if args.variant is None else \
        [str(Path(__file__).resolve().parent / "soak_variant.py"), args.variant]
    cmd = [sys.executable, *entry, "--model", str(model), "--source", str(out / "frames"),
           "--realtime", "--fps", str(args.fps), "--log-all", "--events", str(events),
           "--rotate-mb", "8", "--rotate-keep", "2", "--save-crops", str(work / "crops"),
           "--crops-max-mb", "0.25", "--crops-per-minute", "20", "--threads", "1",
           "--metrics", f"127.0.0.1:{port}", "--summary", str(work / "summary.json"), "--batch", "8"]
    log = open(out / "daemon.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/metrics"
    fields = ["t_s", "rss_kb", "threads", "fds", "cpu_s", "frames_read", "frames_processed", "frames_skipped",
              "tiles", "events", "events_dropped_rotation", "events_dropped_disk", "events_pending", "crops_saved",
              "crops_deleted", "crops_bytes"]
    rows = []
    start = time.monotonic()
    end = start + args.minutes * 60
    with open(out / "samples.csv", "w", newline="") as fcsv:
        w = csv.DictWriter(fcsv, fieldnames=fields)
        w.writeheader()
        next_t = start + 5
        while time.monotonic() < end:
            time.sleep(max(0.0, min(next_t, end) - time.monotonic()))
            next_t += args.every
            if p.poll() is not None:
                print(f"daemon exited early with {p.returncode}", flush=True)
                break
            m = scrape(url)
            try:
                st = proc_stats(p.pid)
            except OSError:
                break
            g = lambda k: int(m.get(f"edge_capture_{k}", 0))  # noqa: E731
            row = {"t_s": round(time.monotonic() - start, 1), "rss_kb": st["VmRSS"], "threads": st["Threads"],
                   "fds": st["fds"], "cpu_s": round(st["cpu_s"], 1), "frames_read": g("frames_read_total"),
                   "frames_processed": g("frames_processed_total"),
                   "frames_skipped": sum(int(v) for k, v in m.items() if k.startswith("edge_capture_frames_skipped_total")),
                   "tiles": g("tiles_total"), "events": g("events_total"),
                   "events_dropped_rotation": g('events_dropped_total{reason="rotation"}'),
                   "events_dropped_disk": g('events_dropped_total{reason="disk"}'),
                   "events_pending": g("events_pending"), "crops_saved": g("crops_saved_total"),
                   "crops_deleted": sum(int(v) for k, v in m.items() if k.startswith("edge_capture_crops_deleted_total")),
                   "crops_bytes": g("crops_bytes")}
            rows.append(row)
            w.writerow(row)
            fcsv.flush()
    t_sig = time.monotonic()
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "killed after 60 s"
    exit_s = time.monotonic() - t_sig
    log.close()
    s = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else {}
    lines, partial = count_whole_lines(events)
    drop = s.get("events_dropped_by_reason", {})
    res = {"minutes": args.minutes, "fps": args.fps, "variant": args.variant or "cli", "exit_code": rc, "exit_s": round(exit_s, 2),
           "samples": len(rows), "summary": s, "lines_on_disk": lines, "partial_lines": partial,
           "crops_files": len(list((work / "crops").glob("*.png"))),
           "crops_dir_bytes": sum(f.stat().st_size for f in (work / "crops").glob("*.png"))}
    if s:
        res["tiles_eq_written_plus_dropped_disk"] = s["tiles"] == s["events"] + drop.get("disk", 0)
        res["lines_eq_written_minus_rotation"] = lines == s["events"] - drop.get("rotation", 0)
    warm = [r for r in rows if r["t_s"] >= args.warm_s] or rows
    if len(warm) >= 3:
        t_h = np.array([r["t_s"] for r in warm]) / 3600.0
        rss_mb = np.array([r["rss_kb"] for r in warm]) / 1024.0
        slope = float(np.polyfit(t_h, rss_mb, 1)[0])
        res.update(rss_mb_first=round(float(rss_mb[0]), 1), rss_mb_last=round(float(rss_mb[-1]), 1),
                   rss_mb_max=round(float(rss_mb.max()), 1), rss_slope_mb_per_h=round(slope, 2),
                   threads_min=min(r["threads"] for r in warm), threads_max=max(r["threads"] for r in warm),
                   fds_min=min(r["fds"] for r in warm), fds_max=max(r["fds"] for r in warm),
                   cpu_s=rows[-1]["cpu_s"], from_s=warm[0]["t_s"], to_s=warm[-1]["t_s"])
    (out / "result.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
