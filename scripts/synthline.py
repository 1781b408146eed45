"""A synthetic rolling-line video from NEU test-split images, with the true label of every tile,
and the checks of the capture daemon on it.

``make``: the images of one split (default ``test``; the split file written by edge-train) are
shuffled and laid out ``cols`` x ``rows`` per frame, written as a lossless video (.avi, raw 8-bit
gray ``Y800`` by default — exact pixels and the cheapest decode — or ``FFV1``, lossless and ~10x
smaller but ~50x slower to decode), so the daemon sees exactly the pixels of the images, and/or PNG frames, with ``labels.csv``
(frame, tile, x, y, w, h, label, file, padded). The last frame is completed with repeats marked
``padded=1`` (not scored).

``score``: per-tile accuracy of an events file against ``labels.csv``.

``check``: the daemon's acceptance checks on a line, written to a JSON file:
per-tile accuracy vs the artifact's own test accuracy on the same images (and the Keras
report's), ``--log-all`` events == frames x tiles, and SIGTERM mid-run → exit 0 with every
processed frame's events in the file.

Example:
    python scripts/synthline.py make --data data/NEU-CLS --split-file runs/compact-s42/split.csv \\
        --cols 4 --rows 2 --out runs/line
    python scripts/synthline.py check --model runs/convert-compact/model.int8.onnx --line runs/line \\
        --data data/NEU-CLS --split-file runs/compact-s42/split.csv -o docs/results/runtime.json
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

from edge.errors import EdgeError, cli_entry  # noqa: E402

PROG = "synthline"
LABEL_FIELDS = ["frame", "tile", "x", "y", "w", "h", "label", "file", "padded"]


def make_line(data: str, out: str | Path, split: str = "test", split_file: Optional[str] = None, cols: int = 4,
              rows: int = 2, tile: int = 200, fmt: str = "video", fps: float = 25.0, seed: int = 0,
              force: bool = False, codec: str = "Y800") -> Dict:
    """Write the line video/frames and labels.csv into ``out``; return the line's description."""
    import cv2

    from edge.data import load_images, select
    from edge.fsutil import staged_dir, write_json

    if fmt not in ("video", "frames", "both"):
        raise EdgeError(f"--format must be video, frames or both, got {fmt!r}")
    if codec not in ("Y800", "FFV1"):
        raise EdgeError(f"--codec must be Y800 (raw gray) or FFV1 (both lossless), got {codec!r}")
    if cols < 1 or rows < 1 or tile < 8:
        raise EdgeError("cols and rows must be >= 1 and tile >= 8")
    ds = select(data, split, split_file)
    if len(ds) == 0:
        raise EdgeError(f"the {split} split of {data} is empty")
    order = np.random.default_rng(seed).permutation(len(ds))
    per = cols * rows
    n_frames = -(-len(ds) // per)
    slots = list(order) + list(order[: n_frames * per - len(ds)])  # pad the last frame with repeats
    images = load_images(ds, size=(tile, tile))
    with staged_dir(out, force=force) as stage:
        writer = None
        if fmt in ("video", "both"):
            writer = cv2.VideoWriter(str(stage / "line.avi"), cv2.VideoWriter_fourcc(*codec), fps,
                                     (cols * tile, rows * tile), isColor=False)
            if not writer.isOpened():
                raise EdgeError(f"OpenCV cannot write {codec} video here; use --format frames")
        if fmt in ("frames", "both"):
            (stage / "frames").mkdir()
        labels: List[dict] = []
        for f in range(n_frames):
            frame = np.zeros((rows * tile, cols * tile), np.uint8)
            for k in range(per):
                j = f * per + k
                i = int(slots[j])
                y, x = divmod(k, cols)
                frame[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = images[i]
                labels.append({"frame": f, "tile": k, "x": x * tile, "y": y * tile, "w": tile, "h": tile,
                               "label": ds.classes[ds.samples[i].label], "file": ds.samples[i].rel(ds.root),
                               "padded": int(j >= len(ds))})
            if writer is not None:
                writer.write(frame)
            if fmt in ("frames", "both"):
                cv2.imwrite(str(stage / "frames" / f"frame_{f:05d}.png"), frame)
        if writer is not None:
            writer.release()
        with open(stage / "labels.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, LABEL_FIELDS)
            w.writeheader()
            w.writerows(labels)
        info = {"data": str(data), "split": split, "split_file": split_file, "images": len(ds), "frames": n_frames,
                "cols": cols, "rows": rows, "tile": tile, "tiles_per_frame": per, "fps": fps, "seed": seed,
                "padded_tiles": n_frames * per - len(ds), "classes": ds.classes, "codec": codec,
                "video": "line.avi" if writer is not None else None,
                "frames_dir": "frames" if fmt in ("frames", "both") else None}
        write_json(stage / "line.json", info)
    return info


def read_labels(path: str | Path) -> Dict[tuple, dict]:
    """labels.csv → {(frame, x, y): row}."""
    with open(path, newline="") as fh:
        return {(int(r["frame"]), int(r["x"]), int(r["y"])): r for r in csv.DictReader(fh)}


def score_events(events: str | Path, labels: str | Path) -> Dict:
    """Per-tile accuracy of daemon events against the line's labels (padded tiles not scored).

    A tile the daemon labelled ``unknown`` counts as not right in ``accuracy``; ``accuracy_of_classified``
    leaves those tiles out.
    """
    from edge.capture.events import read_events

    truth = read_labels(labels)
    ev = read_events(events)
    correct = scored = unmatched = unknown = 0
    seen = set()
    for e in ev:
        x, y = e["tile"][:2]
        key = (int(e["frame"]), int(x), int(y))
        row = truth.get(key)
        if row is None:
            unmatched += 1
            continue
        seen.add(key)
        if row["padded"] == "1":
            continue
        scored += 1
        correct += int(e["label"] == row["label"])
        unknown += int(e["label"] == "unknown")  # open-set score above the model's threshold: not right
    known = scored - unknown
    return {"events": len(ev), "scored_tiles": scored, "correct": correct,
            "accuracy": correct / scored if scored else None, "unknown": unknown,
            "accuracy_of_classified": correct / known if known else None, "unmatched_events": unmatched,
            "tiles_without_event": len(set(truth) - seen), "distinct_event_ids": len({e["id"] for e in ev})}


def artifact_test_accuracy(model: str, data: str, split_file: Optional[str], split: str = "test",
                           threads: int = 0) -> Dict:
    """The artifact's own accuracy on the split's images (same preprocessing, no video)."""
    from edge.data import load_images, select
    from edge.runtime import load_runner

    ds = select(data, split, split_file)
    with load_runner(model, **({"threads": threads} if threads else {})) as r:
        ds = ds.remap(r.classes) if list(ds.classes) != list(r.classes) else ds
        probs = np.concatenate([r.infer_images(load_images(ds.samples[i:i + 64]))
                                for i in range(0, len(ds), 64)])
    pred = probs.argmax(1)
    return {"images": len(ds), "accuracy": float((pred == ds.labels).mean())}


def _keras_report(model: str) -> Optional[Dict]:
    """report.json of the Keras model the artifact was converted from (metadata source_model), if any."""
    from edge.metadata import read_meta

    src = (read_meta(model).get("source_model") or {}).get("path")
    rp = Path(src).parent / "report.json" if src else None
    if rp is None or not rp.is_file():
        return None
    rep = json.loads(rp.read_text())
    return {"path": str(rp), "split": rep.get("split"), "n": rep.get("n"), "accuracy": rep.get("accuracy")}


def _capture_cmd(model: str, source: str, events: Path, summary: Path, extra: List[str]) -> List[str]:
    return [sys.executable, "-m", "edge.capture.cli", "--model", model, "--source", source, "--log-all",
            "--events", str(events), "--summary", str(summary), *extra]


def _metrics_value(url: str, name: str) -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def check_line(model: str, line: str | Path, data: str, split_file: Optional[str], threads: int = 0,
               batch: int = 8, workdir: Optional[str] = None) -> Dict:
    """Run the daemon's acceptance checks on a line made by :func:`make_line`."""
    import socket

    line = Path(line)
    info = json.loads((line / "line.json").read_text())
    source = str(line / (info["video"] or info["frames_dir"]))
    work = Path(workdir or tempfile.mkdtemp(prefix="synthline-"))
    work.mkdir(parents=True, exist_ok=True)
    extra = ["--batch", str(batch), "--tile", str(info["tile"])] + (["--threads", str(threads)] if threads else [])
    out: Dict = {"model": model, "line": info, "source": source}

    # 1. full run with --log-all: events == frames x tiles, accuracy vs labels
    ev, sm = work / "full.jsonl", work / "full.summary.json"
    for p in (ev, sm):
        p.unlink(missing_ok=True)
    t0 = time.monotonic()
    r = subprocess.run(_capture_cmd(model, source, ev, sm, extra), capture_output=True, text=True)
    if r.returncode != 0:
        raise EdgeError(f"edge-capture failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    s = json.loads(sm.read_text())
    sc = score_events(ev, line / "labels.csv")
    expected = info["frames"] * info["tiles_per_frame"]
    ref = artifact_test_accuracy(model, data, split_file or info.get("split_file"), info["split"], threads)
    out["full_run"] = {"summary": s, "score": sc, "expected_events": expected, "wall_s": round(time.monotonic() - t0, 2),
                       "events_equal_frames_x_tiles": sc["events"] == expected == s["events"]
                       and sc["distinct_event_ids"] == expected and sc["unmatched_events"] == 0,
                       "summary_line": r.stderr.strip().splitlines()[-1]}
    out["artifact_test_accuracy"] = ref
    out["accuracy_gap_pp"] = round(100 * (sc["accuracy"] - ref["accuracy"]), 3)
    out["accuracy_within_1pp"] = abs(out["accuracy_gap_pp"]) <= 1.0
    rep = _keras_report(model)
    if rep is not None:  # the trained model's own test accuracy (edge-train's report.json), for reference
        out["keras_report"] = rep
        out["gap_vs_keras_report_pp"] = round(100 * (sc["accuracy"] - rep["accuracy"]), 3)

    # 2. SIGTERM mid-run: --realtime paces the file so the stop lands mid-way; /metrics says when.
    #    Events are flushed only on exit (--flush-interval 30), so the file proves the exit flush.
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    ev2, sm2 = work / "sigterm.jsonl", work / "sigterm.summary.json"
    for p in (ev2, sm2):
        p.unlink(missing_ok=True)
    fps = max(2.0, info["frames"] / 6.0)  # the whole line would take ~6 s
    # a deep queue: pacing without drops, so every frame read before the signal is processed
    cmd = _capture_cmd(model, source, ev2, sm2, extra + ["--realtime", "--fps", str(int(fps)), "--queue", "256",
                                                        "--metrics", f"127.0.0.1:{port}", "--flush-interval", "30"])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    t0 = time.monotonic()
    target = max(1, info["frames"] // 4)
    while p.poll() is None and time.monotonic() - t0 < 120:
        if _metrics_value(url, "edge_capture_frames_processed_total") >= target:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    t_sig = time.monotonic()
    _, err = p.communicate(timeout=30)
    exit_s = time.monotonic() - t_sig
    from edge.capture.events import read_events

    s2 = json.loads(sm2.read_text()) if sm2.exists() else {}
    events2 = read_events(ev2) if ev2.exists() else []
    frames_in_file = sorted({e["frame"] for e in events2})
    per_frame = {}
    for e in events2:
        per_frame[e["frame"]] = per_frame.get(e["frame"], 0) + 1
    complete = all(n == info["tiles_per_frame"] for n in per_frame.values())
    out["sigterm_run"] = {"returncode": p.returncode, "exit_after_signal_s": round(exit_s, 3),
                          "frames_processed": s2.get("frames_processed"), "frames_read": s2.get("frames_read"),
                          "frames_dropped": s2.get("frames_dropped"), "events": len(events2),
                          "frames_with_events": len(frames_in_file), "every_frame_complete": complete,
                          "stopped_mid_run": bool(s2) and 0 < s2.get("frames_processed", 0) < info["frames"],
                          "all_events_present": bool(s2) and len(events2) == s2["frames_processed"] * info["tiles_per_frame"]
                          and len(frames_in_file) == s2["frames_processed"] and complete,
                          "summary_line": err.strip().splitlines()[-1] if err.strip() else ""}
    out["passed"] = bool(out["accuracy_within_1pp"] and out["full_run"]["events_equal_frames_x_tiles"]
                         and p.returncode == 0 and out["sigterm_run"]["all_events_present"]
                         and out["sigterm_run"]["stopped_mid_run"])
    return out


def merge_into(path: str | Path, key: Optional[str], result: Dict) -> Dict:
    """``result``, or the JSON already at ``path`` with ``result`` stored under ``key``."""
    if not key:
        return result
    p = Path(path)
    data = json.loads(p.read_text()) if p.is_file() else {}
    if not isinstance(data, dict):
        raise EdgeError(f"{p} does not hold a JSON object to merge into")
    data[key] = result
    return data


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a synthetic line (video/frames + labels.csv)")
    m.add_argument("--data", required=True)
    m.add_argument("--split", default="test")
    m.add_argument("--split-file")
    m.add_argument("--cols", type=int, default=4)
    m.add_argument("--rows", type=int, default=2)
    m.add_argument("--tile", type=int, default=200)
    m.add_argument("--format", dest="fmt", default="video", choices=["video", "frames", "both"])
    m.add_argument("--fps", type=float, default=25.0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--codec", default="Y800", choices=["Y800", "FFV1"], help="lossless video codec (default Y800)")
    m.add_argument("--force", action="store_true")
    m.add_argument("--out", required=True)
    s = sub.add_parser("score", help="per-tile accuracy of an events file")
    s.add_argument("--events", required=True)
    s.add_argument("--labels", required=True)
    c = sub.add_parser("check", help="the daemon's acceptance checks on a line → JSON")
    c.add_argument("--model", required=True)
    c.add_argument("--line", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--split-file")
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--workdir")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--key", help="store the result under this key of an existing JSON output (merge)")
    return ap


@cli_entry(PROG)
def main(argv=None) -> int:
    from edge.fsutil import write_json

    a = build_parser().parse_args(argv)
    if a.cmd == "make":
        info = make_line(a.data, a.out, a.split, a.split_file, a.cols, a.rows, a.tile, a.fmt, a.fps, a.seed, a.force, a.codec)
        print(f"{PROG}: {info['frames']} frames x {info['tiles_per_frame']} tiles from {info['images']} "
              f"{info['split']} images ({info['padded_tiles']} padded) → {a.out}")
        return 0
    if a.cmd == "score":
        print(json.dumps(score_events(a.events, a.labels), indent=2))
        return 0
    res = check_line(a.model, a.line, a.data, a.split_file, a.threads, a.batch, a.workdir)
    write_json(a.output, merge_into(a.output, a.key, res))
    print(f"{PROG}: accuracy {res['full_run']['score']['accuracy']:.4f} vs artifact test {res['artifact_test_accuracy']['accuracy']:.4f} "
          f"({res['accuracy_gap_pp']:+.2f} pp), events {res['full_run']['score']['events']}/{res['full_run']['expected_events']}, "
          f"SIGTERM rc {res['sigterm_run']['returncode']} with {res['sigterm_run']['events']} events for "
          f"{res['sigterm_run']['frames_processed']} frames → {'PASS' if res['passed'] else 'FAIL'}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
