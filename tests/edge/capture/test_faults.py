"""Fault injection: the daemon beside the line under bad frames, a full disk, source loss and stalls,
SIGTERM/SIGKILL at random points, fuzzed settings, mismatched metadata, idle and aborted HTTP
clients, a stop that runs past its deadline, and another user than the one who built the model.

Every case checks: no traceback, a one-line message, the right exit code, the JSONL file holds
only whole lines, and the books add up (tiles = events written + events dropped for the disk;
lines on disk = events written - events dropped by rotation). Waits poll with deadlines (no
fixed sleeps deciding a result).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge.capture.config import SETTINGS, CaptureConfig, load_config_file, merge
from edge.capture.daemon import CaptureDaemon
from edge.capture.events import EventWriter, read_events, repair_tail
from edge.capture.metrics import Metrics, MetricsServer
from edge.capture.sources import EndOfStream, Source, SourceLost
from edge.errors import EdgeError
from scripts.fixtures.intensity_model import class_level, make_intensity_model
from scripts.fixtures.mosquitto import free_port
from scripts.fixtures.polling import wait_until

T = 32
ROOT = Path(__file__).resolve().parents[3]


# -- helpers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_intensity_model(tmp_path_factory.mktemp("m") / "m.onnx", T)


def frame(f: int, cols: int = 4, rows: int = 2) -> np.ndarray:
    img = np.zeros((rows * T, cols * T), np.uint8)
    for k in range(rows * cols):
        y, x = divmod(k, cols)
        img[y * T:(y + 1) * T, x * T:(x + 1) * T] = class_level((f + k) % 6)
    return img


def write_frames(folder: Path, n: int, start: int = 0) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for f in range(start, start + n):
        cv2.imwrite(str(folder / f"f{f:04d}.png"), frame(f))
    return folder


def cli(args, timeout=60, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "edge.capture.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def popen(args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "edge.capture.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def assert_clean_stderr(err: str, rc: int) -> None:
    """No traceback; an error exit has exactly one ``edge-capture: error:`` line."""
    assert "Traceback" not in err, err
    # libpng's own diagnostics on the corrupt PNGs fed on purpose (OpenCV 4.x prints them, 5.x does not)
    errors = [line for line in err.splitlines() if "error:" in line and not line.startswith("libpng ")]
    if rc in (2, 3):
        assert len(errors) == 1 and errors[0].startswith("edge-capture: error:"), err
    elif rc == 0:
        assert errors == [], err


def assert_whole_lines(events: Path) -> int:
    """Every events file (and rotated ones) ends in a newline and every line is JSON; return the count."""
    n = 0
    for p in sorted(events.parent.glob(events.name + "*")):
        data = p.read_bytes()
        assert not data or data.endswith(b"\n"), f"{p.name} ends in a partial line"
        for line in data.splitlines():
            json.loads(line)
            n += 1
    return n


def assert_books(s: dict, events: Path, log_all: bool = True) -> None:
    drop = s.get("events_dropped_by_reason", {})
    lines = assert_whole_lines(events)
    if log_all:
        assert s["tiles"] == s["events"] + drop.get("disk", 0), s
    assert lines == s["events"] - drop.get("rotation", 0), (lines, s)


def wait_for(cond, timeout=20.0) -> bool:
    return wait_until(cond, timeout)


def metric(url: str, name: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return -1.0


class ListSource(Source):
    """Frames from a list (arrays, None for an undecodable one), optionally live, with a hook per read."""

    def __init__(self, frames, live=False, hook=None):
        self.frames, self.live, self.hook, self.i = list(frames), live, hook, 0
        self.name = "list"

    def read(self):
        if self.hook:
            self.hook(self.i)
        if self.i >= len(self.frames):
            raise EndOfStream()
        self.i += 1
        return self.frames[self.i - 1]


def daemon_cfg(model, tmp_path, **kw):
    base = dict(model=str(model), source="list", events=str(tmp_path / "ev" / "events.jsonl"), log_all=True, batch=3)
    base.update(kw)
    return CaptureConfig(**base)


# -- bad frames ----------------------------------------------------------------------------
def test_bad_frames_in_a_folder_are_skipped_named_and_counted(tmp_path, model):
    import cv2

    src = write_frames(tmp_path / "frames", 6)
    cv2.imwrite(str(src / "f0001a.png"), np.zeros((1, 1), np.uint8))            # 1x1: smaller than a tile
    cv2.imwrite(str(src / "f0002a.png"), np.zeros((20, 150), np.uint8))         # too low for one tile
    (src / "f0003a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")          # undecodable
    (src / "f0004a.png").write_bytes(b"")                                       # empty file
    cv2.imwrite(str(src / "f0004b.png"), (frame(4).astype(np.uint16) * 257))    # 16-bit: fine, scaled
    cv2.imwrite(str(src / "f0004c.png"), cv2.cvtColor(frame(4), cv2.COLOR_GRAY2BGRA))  # 4 channels: fine
    ev, summ = tmp_path / "ev.jsonl", tmp_path / "s.json"
    r = cli(["--model", model, "--source", src, "--log-all", "--events", ev, "--summary", summ])
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr, 0)
    assert "f0001a.png" in r.stderr and "too_small" in r.stderr        # named (one warning per reason)
    assert "f0003a.png" in r.stderr and "f0004a.png" in r.stderr
    s = json.loads(summ.read_text())
    assert s["frames_skipped_by_reason"] == {"too_small": 2, "undecodable": 2}
    assert s["frames_processed"] == 8 and s["tiles"] == 8 * 8               # the frames after them go on
    assert_books(s, ev)


def test_malformed_arrays_from_a_source_are_skipped(tmp_path, model):
    weird = [frame(0), np.full((64, 128), np.nan), np.zeros((64, 128, 2), np.uint8), np.zeros((), np.uint8),
             np.zeros((128,), np.uint8), np.zeros((64, 128), bool), frame(1), None, np.zeros((0, 5), np.uint8),
             frame(2)]
    d = CaptureDaemon(daemon_cfg(model, tmp_path), source=ListSource(weird))
    s = d.run()
    assert s["frames_read"] == 10 and s["frames_processed"] + s["frames_skipped"] == 10, s
    assert s["frames_processed"] >= 3 and s["frames_skipped"] >= 4
    assert_books(s, tmp_path / "ev" / "events.jsonl")


def test_a_source_of_only_too_small_frames_ends_with_one_line(tmp_path, model):
    import cv2

    src = tmp_path / "frames"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), np.zeros((8, 8), np.uint8))
    r = cli(["--model", model, "--source", src, "--events", tmp_path / "ev.jsonl"])
    assert r.returncode == 2 and "no frame could be processed (3 skipped)" in r.stderr
    assert_clean_stderr(r.stderr, 2)


# -- the disk --------------------------------------------------------------------------------
class FaultyDisk:
    """Replaces ``os.write`` in edge.capture.events: while ``full`` is set, a write stores half its
    bytes (a torn write) and then fails with ENOSPC."""

    def __init__(self, monkeypatch):
        import edge.capture.events as mod

        self.full = threading.Event()
        self.failures = 0
        real = os.write

        def write(fd, data):
            if self.full.is_set():
                self.failures += 1
                half = bytes(data[:max(1, len(data) // 2)])
                real(fd, half)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(mod.os, "write", write)


def test_disk_full_then_free_again_loses_nothing(tmp_path, model, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    seen = {}

    def hook(i):
        if i == 4:
            disk.full.set()
        if i == 12:
            assert wait_for(lambda: d.metrics.get("frames_processed") >= 6)
            d.writer.flush()                      # a flush while full: fails, keeps the events
            seen["health"] = d.metrics.health()
            seen["pending"] = d.writer.pending
            disk.full.clear()

    cfg = daemon_cfg(model, tmp_path, flush_interval=0.01)
    d = CaptureDaemon(cfg, source=ListSource([frame(i) for i in range(20)], hook=hook))
    s = d.run()
    assert disk.failures >= 1
    assert seen["health"]["status"] == "degraded" and "No space left" in " ".join(seen["health"]["problems"])
    assert seen["pending"] > 0
    ev = tmp_path / "ev" / "events.jsonl"
    assert s["events"] == s["tiles"] == 160 and s["events_dropped"] == 0 and s["event_write_errors"] >= 1
    assert_books(s, ev)
    assert [e["id"] for e in read_events(ev)] == sorted(e["id"] for e in read_events(ev))   # in order


def test_disk_full_for_good_drops_are_counted_and_bounded(tmp_path, model, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    def hook(i):
        if i == 5:
            assert wait_for(lambda: d.metrics.get("frames_processed") >= 2)
            d.writer.flush()                              # what was processed so far is on disk
            disk.full.set()

    cfg = daemon_cfg(model, tmp_path, flush_interval=0.01, retry_events=20)
    d = CaptureDaemon(cfg, source=ListSource([frame(i) for i in range(15)], hook=hook))
    s = d.run()
    drop = s["events_dropped_by_reason"]
    assert drop["disk"] > 0 and s["events"] > 0 and s["events_pending"] == 0
    assert_books(s, tmp_path / "ev" / "events.jsonl")


def test_partial_tail_is_cut_when_the_file_is_reopened(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3, "trunc')
    w = EventWriter(p, flush_interval=60)
    w.write({"a": 4})
    w.close()
    assert [e["a"] for e in read_events(p)] == [1, 2, 4]
    assert repair_tail(p) == 0


def test_rotation_losses_are_counted(tmp_path):
    p = tmp_path / "events.jsonl"
    with EventWriter(p, max_bytes=200, backups=1, flush_interval=60) as w:
        for i in range(100):
            w.write({"frame": i, "label": "scratches"})
    on_disk = len(read_events(p))
    assert w.written == 100 and w.dropped["rotation"] == 100 - on_disk > 0
    p2 = tmp_path / "keep0.jsonl"
    with EventWriter(p2, max_bytes=200, backups=0, flush_interval=60) as w:
        for i in range(50):
            w.write({"frame": i})
    assert w.dropped["rotation"] + len(read_events(p2)) == 50 and not list(tmp_path.glob("keep0.jsonl.*"))


def _set_fsize_limit(limit):
    def pre():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death at the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_size_limited_file_filled_during_a_run(tmp_path, model):
    """A real kernel limit (RLIMIT_FSIZE): writes past 6 kB fail with EFBIG mid-run."""
    src = write_frames(tmp_path / "frames", 30)
    ev, summ = tmp_path / "ev" / "events.jsonl", tmp_path / "s.json"
    r = cli(["--model", model, "--source", src, "--log-all", "--events", ev, "--summary", summ,
             "--flush-interval", "0.05", "--retry-events", "50"], preexec_fn=_set_fsize_limit(6000))
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr, 0)
    assert "cannot write events" in r.stderr and "File too large" in r.stderr
    s = json.loads(summ.read_text())
    assert s["events_dropped_by_reason"]["disk"] > 0 and s["tiles"] == 240
    assert_books(s, ev)
    assert ev.stat().st_size <= 6000


@pytest.fixture
def tmpfs(tmp_path):
    """A 160 kB tmpfs (root only)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the size-limited file case covers a full disk without it)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_tmpfs_filled_during_a_run(tmp_path, model, tmpfs):
    src = write_frames(tmp_path / "frames", 60)
    ev, summ = tmpfs / "events.jsonl", tmp_path / "s.json"
    r = cli(["--model", model, "--source", src, "--log-all", "--probs", "--events", ev, "--summary", summ,
             "--flush-interval", "0.05", "--retry-events", "100", "--save-crops", tmpfs / "crops",
             "--crops-max-mb", "100"])
    assert r.returncode == 0, r.stderr
    assert_clean_stderr(r.stderr, 0)
    s = json.loads(summ.read_text())
    assert s["events_dropped_by_reason"]["disk"] > 0 and s["frames_processed"] == 60
    assert s["crops_skipped_by_reason"].get("error", 0) > 0
    assert_books(s, ev)


def test_crop_write_failure_never_stops_classification(tmp_path, model, monkeypatch):
    import edge.fsutil as fsutil

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fsutil, "atomic_path", refuse)
    seen = {}
    cfg = daemon_cfg(model, tmp_path, save_crops=str(tmp_path / "crops"))
    def hook(i):
        if i == 5:
            assert wait_for(lambda: d.metrics.get("frames_processed") >= 1)
            seen["h"] = d.metrics.health()

    d = CaptureDaemon(cfg, source=ListSource([frame(i) for i in range(6)], hook=hook))
    s = d.run()
    assert s["frames_processed"] == 6 and s["crops_saved"] == 0 and s["crops_skipped_by_reason"]["error"] == 48
    assert seen["h"]["status"] == "degraded" and any("Read-only" in p for p in seen["h"]["problems"])
    assert_books(s, tmp_path / "ev" / "events.jsonl")


def test_crops_budget_size_age_and_sampling(tmp_path):
    from edge.capture.crops import CropStore

    folder = tmp_path / "crops"
    folder.mkdir()
    old = folder / "old.png"
    old.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    counts = {}

    def count(name, n, labels):
        key = name + (f"/{labels['reason']}" if labels else "")
        counts[key] = counts.get(key, 0) + n

    store = CropStore(folder, max_bytes=3000, max_age_s=3600, per_minute=5, count=count)
    assert not old.exists() and counts["crops_deleted/age"] == 1           # the old crop went at start
    tile = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    saved = [store.save(f"e{i}_a", "a", tile) for i in range(8)] + [store.save(f"e{i}_b", "b", tile) for i in range(3)]
    assert saved.count(True) == 5 + 3 and counts["crops_skipped/sampled"] == 3   # 5 per class per minute
    assert store.bytes <= 3000 and sum(f.stat().st_size for f in folder.glob("*.png")) == store.bytes
    assert counts.get("crops_deleted/size", 0) >= 1
    names = sorted(p.name for p in folder.glob("*.png"))
    assert "e2_b.png" in names and "e0_a.png" not in names                  # the oldest went first


# -- the source -------------------------------------------------------------------------------
def test_source_loss_then_stall_turns_health_red_and_stop_is_prompt(tmp_path, model):
    release = threading.Event()

    class Cam(Source):
        live, name = True, "cam"

        def __init__(self):
            self.i, self.lost = 0, False

        def read(self):
            if self.i == 3 and not self.lost:
                self.lost = True
                raise SourceLost("unplugged")
            if self.i >= 6:
                release.wait(30)                  # the stream stalls: no frame, no error
                raise EndOfStream()
            self.i += 1
            time.sleep(0.005)
            return frame(self.i)

    cfg = daemon_cfg(model, tmp_path, queue=50, reconnect_initial=0.01, stale_after=0.3, metrics="127.0.0.1:0")
    d = CaptureDaemon(cfg, source=Cam())
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("s", d.run()))
    t.start()
    try:
        assert wait_for(lambda: d.metrics is not None and d.metrics.get("frames_processed") == 6)
        url = d.server.url + "/healthz"

        def red():
            try:
                urllib.request.urlopen(url, timeout=2)
                return False
            except urllib.error.HTTPError as e:
                return e.code == 503 and "no frame for" in e.read().decode()
        assert wait_for(red, timeout=10)
        t_stop = time.monotonic()
        d.request_stop()
        t.join(10)
        assert not t.is_alive() and time.monotonic() - t_stop < 3       # did not wait for the stalled read
    finally:
        release.set()
        t.join(10)
    s = out["s"]
    assert s["reconnects"] == 1 and s["frames_processed"] == 6 and not s["stopped_at_deadline"]
    assert_books(s, tmp_path / "ev" / "events.jsonl")


def test_stop_while_a_live_source_hangs_in_open_is_prompt(tmp_path, model):
    release, opening = threading.Event(), threading.Event()

    class Cam(Source):
        live, name = True, "cam"

        def open(self):
            opening.set()
            release.wait(30)                      # a camera that never answers the open
            raise SourceLost("no answer")

        def read(self):
            raise SourceLost("not open")

    d = CaptureDaemon(daemon_cfg(model, tmp_path), source=Cam())
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("s", d.run()))
    t.start()
    try:
        assert opening.wait(20)
        t_stop = time.monotonic()
        d.request_stop()
        t.join(10)
        assert not t.is_alive() and time.monotonic() - t_stop < 3
    finally:
        release.set()
        t.join(10)
    assert out["s"]["frames_read"] == 0 and not out["s"]["stopped_at_deadline"]


def test_network_source_gets_open_and_read_timeouts(monkeypatch):
    import cv2

    from edge.capture.sources import open_source, parse_source

    seen = {}

    class FakeCap:
        def __init__(self, *a):
            seen["args"] = a

        def isOpened(self):  # noqa: N802 (OpenCV API)
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCap)
    src = open_source(parse_source("rtsp://cam.invalid/s"), open_timeout=2.5, read_timeout=1.5)
    with pytest.raises(SourceLost):
        src.open()
    params = list(seen["args"][2])
    assert params == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2500, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 1500]


# -- stopping ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sig,seed", [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGKILL, 3),
                                      (signal.SIGKILL, 4)])
def test_sigterm_and_sigkill_at_random_points(tmp_path, model, sig, seed):
    src = write_frames(tmp_path / "frames", 40)
    ev, summ = tmp_path / "ev.jsonl", tmp_path / "s.json"
    port = free_port()
    p = popen(["--model", model, "--source", src, "--log-all", "--events", ev, "--summary", summ, "--realtime",
               "--fps", "40", "--flush-interval", "0.05", "--rotate-mb", "0.004", "--rotate-keep", "3",
               "--metrics", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}/metrics"
    assert wait_for(lambda: p.poll() is not None or metric(url, "edge_capture_frames_processed_total") >= 1), \
        p.communicate()
    time.sleep(random.Random(seed).uniform(0.0, 0.5))      # a random point in the run
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    if sig == signal.SIGTERM:
        assert p.returncode == 0, err
        assert_clean_stderr(err, 0)
        s = json.loads(summ.read_text())
        assert s["frames_read"] == s["frames_processed"] + s["frames_dropped"] + s["frames_skipped"]
        assert_books(s, ev)
    else:
        assert p.returncode == -signal.SIGKILL
        EventWriter(ev, flush_interval=60).close()          # the next start repairs a torn tail, if any
        assert_whole_lines(ev)


def test_stop_deadline_exits_3_with_what_was_flushed(tmp_path, model):
    import cv2

    src = tmp_path / "big"
    src.mkdir()
    cv2.imwrite(str(src / "big.png"), np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))
    ev, summ = tmp_path / "ev.jsonl", tmp_path / "s.json"
    port = free_port()
    p = popen(["--model", model, "--source", src, "--log-all", "--events", ev, "--summary", summ, "--stride", "1",
               "--batch", "64", "--stop-timeout", "0.5", "--metrics", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}/metrics"
    assert wait_for(lambda: p.poll() is not None or metric(url, "edge_capture_frames_read_total") > 0), \
        p.communicate()
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 3, err
    assert time.monotonic() - t0 < 10
    assert_clean_stderr(err, 3)
    assert "stop deadline" in err
    s = json.loads(summ.read_text())
    # the one frame (136,161 tiles, minutes of work) is abandoned between two chunks
    assert s["stopped_at_deadline"] and s["tiles"] < 369 * 369 and s["frames_skipped_by_reason"]["stopped"] == 1
    assert_books(s, ev)


# -- settings ---------------------------------------------------------------------------------
FUZZ = [None, 0, -1, 1, 3, 0.5, -0.5, 2.5, 1e12, float("nan"), float("inf"), True, False, "", "x", "16", "-3",
        "1,2,3,4", "0,0,64,64", "a,b", [], [1, 2], ["a"], [0, 0, 32, 32], {"a": 1}, "127.0.0.1:0", ":9108",
        "host:http", "\x00", "sixteen", "no"]


def test_config_fuzzing_gives_values_or_one_line_errors(tmp_path):
    try:
        import tomllib
    except ImportError:  # Python < 3.11 (JetPack 5/6): the backport the daemon itself uses
        import tomli as tomllib

    rng = random.Random(16)
    accepted = refused = 0
    for case in range(400):
        values = {s.name: rng.choice(FUZZ) for s in rng.sample(SETTINGS, rng.randint(1, 5))}
        values.setdefault("model", "m.onnx")
        values.setdefault("source", "frames/")
        # as a config file
        lines = []
        for k, v in values.items():
            if v is None or (isinstance(v, float) and not np.isfinite(v)) or isinstance(v, dict):
                continue
            lines.append(f"{k} = {json.dumps(v)}")
        f = tmp_path / f"c{case}.toml"
        f.write_text("\n".join(lines) + "\n")
        try:
            tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError:
            continue
        for attempt in ("file", "flags"):
            try:
                if attempt == "file":
                    merge(load_config_file(f), {})
                else:
                    merge({}, {k: str(v) if not isinstance(v, bool) else v for k, v in values.items()
                               if v is not None})
                accepted += 1
            except EdgeError as e:
                refused += 1
                msg = str(e)
                assert "\n" not in msg and len(msg) < 400, msg
    assert accepted > 20 and refused > 100


@pytest.mark.parametrize("args,msg", [
    (["--batch", "sixteen"], "batch must be an integer"),
    (["--threshold", "high"], "threshold must be a number"),
    (["--roi", "5"], "ROI must be x,y,w,h"),
    (["--tile", "0"], "tile must be an integer >= 1"),
    (["--rotate-mb", "-1"], "rotate_mb must be a number > 0"),
    (["--rotate-keep", "-1"], "rotate_keep must be an integer >= 0"),
    (["--fps", "-3"], "fps must be"),
    (["--max-frames", "-1"], "max_frames must be"),
    (["--threads", "-1"], "threads must be"),
    (["--stop-timeout", "0"], "stop_timeout must be"),
    (["--crops-max-mb", "0"], "crops_max_mb must be"),
    (["--metrics", "localhost:70000"], "out of range"),
    (["--reconnect-initial", "20", "--reconnect-max", "1"], "must not exceed reconnect_max"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, model, args, msg):
    from edge.capture.cli import main

    err_lines = _run_main(["--model", str(model), "--source", str(tmp_path), "--events", str(tmp_path / "e.jsonl"),
                           *args])
    assert len(err_lines) == 1 and msg in err_lines[0], err_lines
    assert main is not None


@pytest.mark.parametrize("toml,msg", [
    ('batch = "sixteen"', "batch must be an integer"), ('threshold = "high"', "threshold must be a number"),
    ("roi = 5", "roi must be x,y,w,h"), ("model = 5", "model must be a path"), ('log_all = "no"', "log_all must be true"),
    ('tile = "200"', "tile must be an integer"), ("ok_classes = [1]", "ok_classes must be a list"),
    ("queue = 0", "queue must be"), ("[capture]\nbatch = 2.5", "batch must be an integer"),
])
def test_bad_config_values_are_one_line_exit_2(tmp_path, toml, msg):
    f = tmp_path / "c.toml"
    f.write_text(f'source = "x"\n{toml}\n')
    err_lines = _run_main(["--config", str(f), "--model", "m.onnx"])
    assert len(err_lines) == 1 and msg in err_lines[0] and "c.toml" in err_lines[0], err_lines


def _run_main(argv):
    import contextlib
    import io

    from edge.capture.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        rc = main(argv)
    assert rc == 2
    return buf.getvalue().strip().splitlines()


# -- metadata ---------------------------------------------------------------------------------
def _meta_case(tmp_path, model, change):
    import shutil

    d = tmp_path / "bad"
    d.mkdir()
    m = d / "m.onnx"
    shutil.copy(model, m)
    meta = json.loads(Path(str(model) + ".json").read_text())
    meta = change(meta)
    Path(str(m) + ".json").write_text(json.dumps(meta))
    return m


def _set(path, value):
    def f(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return meta
    return f


@pytest.mark.parametrize("change,msg", [
    (_set(["classes"], ["a", "b", "c", "d", "e"]), "class"),                       # fewer names than outputs
    (_set(["classes"], ["a", "b", "c", "d", "e", "f", "g"]), "class"),             # more
    (lambda m: {**_set(["classes"], ["a", "b", "c", "d", "e"])(m), "output": None}, "5 classes"),
    (_set(["preprocess", "height"], 48), "does not match the preprocessing"),
    (lambda m: {**_set(["preprocess", "height"], 48)(m), "input": None}, "(H, W, C)"),
    (lambda m: {**_set(["preprocess", "channels"], 3)(m), "input": None}, "(H, W, C)"),
    (lambda m: [m], "must be a JSON object"),
    (_set(["classes"], "crazing"), "classes must be a list"),
    (_set(["classes"], ["a", "a", "b", "c", "d", "e"]), "distinct"),
    (_set(["preprocess"], [32, 32]), "preprocess must be an object"),
])
def test_metadata_mismatch_is_refused_in_one_line(tmp_path, model, change, msg):
    m = _meta_case(tmp_path, model, change)
    r = cli(["--model", m, "--source", write_frames(tmp_path / "f", 1), "--events", tmp_path / "e.jsonl"])
    assert r.returncode == 2, r.stderr
    assert_clean_stderr(r.stderr, 2)
    assert msg in r.stderr, r.stderr


# -- the metrics server -----------------------------------------------------------------------
def test_idle_and_aborted_http_clients(capfd, caplog):
    m = Metrics(["a"])
    srv = MetricsServer(m, "127.0.0.1:0", timeout=0.5, max_connections=4)
    host, port = srv.address
    base_threads = threading.active_count()
    idle = []
    try:
        for _ in range(20):                                  # idle clients: connect, send nothing
            idle.append(socket.create_connection((host, port)))
        assert wait_for(lambda: m.get("http_refused") >= 10, timeout=10)
        assert threading.active_count() <= base_threads + 4 + 1
        # the idle ones time out; a real scrape gets through
        assert wait_for(lambda: metric(srv.url + "/metrics", "edge_capture_tiles_total") == 0.0, timeout=10)
        for _ in range(100):                                 # aborted clients: half a request, then RST
            so = socket.create_connection((host, port))
            so.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            so.close()
        for _ in range(50):                                  # clients that go away before the answer
            so = socket.create_connection((host, port))
            so.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            so.close()
        assert wait_for(lambda: metric(srv.url + "/metrics", "edge_capture_tiles_total") == 0.0, timeout=10)
    finally:
        for so in idle:
            so.close()
        srv.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Broken pipe" not in err and "Error" not in err, err
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_non_loopback_bind_is_warned(caplog):
    from edge.capture.metrics import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    with pytest.raises(EdgeError, match="cannot serve metrics on 192.0.2.1"):
        MetricsServer(Metrics(), "192.0.2.1:0")             # TEST-NET: not on this machine, nothing binds
    assert any("reachable from the network" in r.getMessage() for r in caplog.records)


def test_latency_statistics_stay_bounded():
    m = Metrics([], window=100)
    for i in range(10_000):
        m.observe_latency(0.001 * (i % 7))
    s = m.summary()
    assert len(m.latencies) == 100 and s["latency_mean_ms"] == pytest.approx(3.0, rel=0.01)
    assert "edge_capture_latency_seconds_count 10000.0" in m.render()


# -- files and users --------------------------------------------------------------------------
@pytest.mark.parametrize("umask,fmode,dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_atomic_files_and_staged_dirs_follow_the_umask(tmp_path, umask, fmode, dmode):
    from edge.fsutil import staged_dir, write_json

    old = os.umask(umask)
    try:
        p = write_json(tmp_path / "a.json", {"x": 1})
        with staged_dir(tmp_path / "out") as d:
            write_json(d / "m.json", {})
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == fmode
    assert (tmp_path / "out").stat().st_mode & 0o777 == dmode
    assert (tmp_path / "out" / "m.json").stat().st_mode & 0o777 == fmode


def test_daemon_as_another_user_against_an_admin_built_model(tmp_path):
    """An admin (root, umask 022) builds the model folder; the service user runs the daemon on it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to build as one user and run as another")
    import pwd

    from edge.fsutil import staged_dir

    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="edge-user-"))  # pytest's own tmp folders are 0700
    old = os.umask(0o022)
    try:
        with staged_dir(tmp_path / "models") as d:        # what edge-convert does
            make_intensity_model(d / "m.onnx", T)
    finally:
        os.umask(old)
    os.chmod(tmp_path, 0o755)
    frames = write_frames(tmp_path / "frames", 3)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, user.pw_uid, user.pw_gid)
    # The interpreter lives under /root here, which the service user cannot enter: run the daemon in a
    # forked child that drops to the user after the imports (the file accesses are the daemon's own).
    import edge.capture.cli  # noqa: F401  (imported before the fork)
    import edge.capture.crops  # noqa: F401
    import edge.runtime.onnxrt  # noqa: F401
    import onnxruntime  # noqa: F401
    import prometheus_client  # noqa: F401
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 99
        try:
            os.close(r)
            os.dup2(w, 2)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.umask(0o022)
            code = edge.capture.cli.main(["--model", str(tmp_path / "models" / "m.onnx"), "--source", str(frames),
                                          "--events", str(state / "ev.jsonl"), "--save-crops", str(state / "crops"),
                                          "--summary", str(state / "s.json")])
        except BaseException as e:
            os.write(2, f"child: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, err  # (waitstatus_to_exitcode is 3.9+)
    assert_clean_stderr(err, 0)
    assert (tmp_path / "models").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "models" / "m.onnx.json").stat().st_mode & 0o777 == 0o644
    crops = list((state / "crops").glob("*.png"))
    assert crops and all(c.stat().st_mode & 0o777 == 0o644 and c.stat().st_uid == user.pw_uid for c in crops)
    assert (state / "s.json").stat().st_mode & 0o777 == 0o644
    assert json.loads((state / "s.json").read_text())["tiles"] == 24
    import shutil

    shutil.rmtree(tmp_path, ignore_errors=True)


# -- deployment -------------------------------------------------------------------------------
def test_shipped_config_is_valid_and_sets_a_crops_budget():
    vals = load_config_file(ROOT / "jetson" / "capture.toml")
    assert vals["save_crops"] and vals["crops_max_mb"] <= 4096 and vals["crops_per_minute"] <= 60
    assert vals["crops_max_age"] and vals["stop_timeout"] <= 10


def _unit(path):
    import configparser

    cp = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    cp.optionxform = str
    cp.read(path)
    return cp


def test_systemd_unit_is_hardened_and_verifies(tmp_path):
    import shutil

    unit = ROOT / "jetson" / "edge-capture.service"
    cp = _unit(unit)
    svc, top = cp["Service"], cp["Unit"]
    assert "StartLimitIntervalSec" in top and "StartLimitBurst" in top
    assert "StartLimitIntervalSec" not in svc and "StartLimitBurst" not in svc   # ignored there by systemd
    for k, v in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                 "CapabilityBoundingSet": "", "UMask": "0022"}.items():
        assert svc[k] == v, k
    assert svc["ReadWritePaths"] and svc["MemoryMax"] and "127.0.0.1:" in svc["ExecStart"]
    assert float(svc["TimeoutStopSec"]) > 10                   # after the daemon's own stop deadline
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the unit was checked by its keys only")
    # verify needs ExecStart to exist: the same unit with /bin/true in its place
    copy = tmp_path / "edge-capture.service"
    copy.write_text(unit.read_text().replace("/opt/steel-edge/venv/bin/edge-capture", "/bin/true"))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(copy)], capture_output=True, text=True)
    if r.returncode != 0 or "exposure level" not in r.stdout:
        pytest.skip(f"systemd-analyze security --offline does not run here: {r.stderr.strip()[:200]}")
    exposure = float(r.stdout.rsplit("exposure level for", 1)[1].split(":")[1].split()[0])
    assert exposure < 4.0, r.stdout[-500:]


def test_dockerfile_runs_as_non_root_on_the_loopback():
    text = (ROOT / "jetson" / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = [line for line in lines if line.startswith("ENTRYPOINT")][-1]
    assert "0.0.0.0" not in entry and "127.0.0.1:9108" in entry
