"""The overlapped daemon: raw recordings, tiles as strided views packed with one copy, an artifact
with the preprocessing in its graph (uint8 tiles) through the whole pipeline, stage errors that
surface, the per-stage clock; the Jetson hardware-decode pipelines and the no-GStreamer error."""

import numpy as np
import pytest

from edge.capture.config import CaptureConfig
from edge.capture.daemon import STAGES, CaptureDaemon, SkipFrame
from edge.capture.events import read_events
from edge.capture.metrics import Metrics
from edge.capture.sources import (END, Grabber, RawSource, gstreamer_available, nv_decode_pipeline, open_source,
                                  parse_source)
from edge.capture.tiling import Grid, cut, tile_grid
from edge.errors import EdgeError
from scripts.fixtures.intensity_model import class_level, make_intensity_model

T = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from convert.fold import fold_preprocess

    d = tmp_path_factory.mktemp("m")
    f = make_intensity_model(d / "m.onnx", T)
    u = d / "m.u8.onnx"
    fold_preprocess(f, u, (2 * T, 2 * T))   # takes 64 px tiles, averages them down to 32 in the graph
    return f, u


def truth(f, k):
    return (f + k) % 6


def raw_line(path, n, tile, cols=4, rows=2):
    frames = np.zeros((n, rows * tile, cols * tile), np.uint8)
    for f in range(n):
        for k in range(rows * cols):
            y, x = divmod(k, cols)
            frames[f, y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = class_level(truth(f, k))
    np.save(path, frames)
    return path


def test_raw_source_is_memory_mapped_and_read_in_order(tmp_path):
    p = raw_line(tmp_path / "frames.npy", 5, 8)
    for uri in (f"raw://{p}", str(p), f"file://{p}"):
        assert parse_source(uri).kind == "raw"
    src = open_source(parse_source(f"raw://{p}"))
    g = Grabber(src, Metrics(), queue_size=2).start()
    frames = []
    while (item := g.queue.get(timeout=10)) is not END:
        frames.append(item)
    assert [f.index for f in frames] == list(range(5)) and g.error is None
    assert isinstance(frames[0].image, np.memmap) or isinstance(frames[0].image.base, np.memmap)  # a view, no copy
    assert all(int(f.image[0, 0]) == class_level(truth(f.index, 0)) for f in frames)


@pytest.mark.parametrize("arr,msg", [(np.zeros((2, 4, 4), np.float32), "uint8 array"),
                                     (np.zeros((4, 4), np.uint8), "uint8 array"), (None, "not a readable")])
def test_raw_source_bad_files_are_one_line_errors(tmp_path, arr, msg):
    p = tmp_path / "bad.npy"
    if arr is None:
        p.write_bytes(b"not numpy")
    else:
        np.save(p, arr)
    with pytest.raises(EdgeError, match=msg):
        RawSource(str(p)).open()
    with pytest.raises(EdgeError, match="does not exist"):
        parse_source(f"raw://{tmp_path}/nope.npy")
    with pytest.raises(EdgeError, match="reads a .npy"):
        parse_source(f"raw://{tmp_path}/x.bin")


def test_grid_views_and_pack_equal_cut():
    gray = np.random.default_rng(0).integers(0, 256, (300, 700), dtype=np.uint8)
    for stride, roi in ((None, None), (50, (10, 20, 600, 250)), ((70, 40), None)):
        boxes = tile_grid(700, 300, (100, 80), stride, roi)
        g = Grid(boxes)
        want = np.stack(cut(gray, boxes))
        v = g.view(gray)
        assert v.shape == (g.rows, g.cols, 80, 100) and np.shares_memory(v, gray)    # a view of the frame
        assert np.array_equal(np.stack(g.tiles(gray)), want)
        assert np.array_equal(g.pack(gray)[..., 0], want)
    with pytest.raises(EdgeError, match="smaller than its tile grid"):
        Grid(tile_grid(700, 300, 100)).view(gray[:150])
    with pytest.raises(EdgeError, match="regular row-major grid"):
        Grid([(0, 0, 10, 10), (30, 0, 10, 10), (40, 0, 10, 10)])


@pytest.mark.parametrize("which", ["float", "uint8"])
def test_daemon_on_a_raw_recording_with_either_input_form(tmp_path, models, which):
    model = models[0] if which == "float" else models[1]
    tile = T if which == "float" else 2 * T
    p = raw_line(tmp_path / "frames.npy", 12, tile)
    cfg = CaptureConfig(model=str(model), source=f"raw://{p}", events=str(tmp_path / "ev.jsonl"), log_all=True,
                        batch=3, queue=2)
    d = CaptureDaemon(cfg)
    s = d.run()
    assert s["frames_processed"] == 12 and s["tiles"] == 96 and s["events"] == 96
    ev = read_events(tmp_path / "ev.jsonl")
    labels = d.classes
    assert all(e["label"] == labels[truth(e["frame"], (e["tile"][1] // tile) * 4 + e["tile"][0] // tile)] for e in ev)
    assert [e["frame"] for e in ev] == sorted(e["frame"] for e in ev)            # frames stay in order
    assert all(e["tile"][2] == tile for e in ev)
    st = s["stages_ms_per_frame"]
    assert set(st) == set(STAGES) and st["inference"] > 0 and st["events"] > 0 and st["preprocessing"] > 0


def test_a_tile_size_the_uint8_artifact_does_not_take_is_refused(tmp_path, models):
    p = raw_line(tmp_path / "frames.npy", 2, T)
    cfg = CaptureConfig(model=str(models[1]), source=f"raw://{p}", events=str(tmp_path / "ev.jsonl"), tile=T)
    with pytest.raises(EdgeError, match="takes 64x64 uint8 tiles"):
        CaptureDaemon(cfg).run()
    assert not (tmp_path / "ev.jsonl").exists() or read_events(tmp_path / "ev.jsonl") == []


def test_an_error_in_the_emit_stage_stops_the_pipeline_and_surfaces(tmp_path, models):
    p = raw_line(tmp_path / "frames.npy", 50, T)
    cfg = CaptureConfig(model=str(models[0]), source=f"raw://{p}", events=str(tmp_path / "ev.jsonl"), log_all=True)
    d = CaptureDaemon(cfg)
    orig = d.emit

    def broken(work):
        if work.frame.index == 3:
            raise RuntimeError("disk on fire")
        orig(work)

    d.emit = broken
    with pytest.raises(EdgeError, match="emit stage failed: disk on fire"):
        d.run()
    assert 3 <= len({e["frame"] for e in read_events(tmp_path / "ev.jsonl")}) < 50


def test_nv_decode_pipelines():
    r = nv_decode_pipeline("rtsp", "rtsp://cam/line", "h265", latency_ms=100)
    assert r == ('rtspsrc location="rtsp://cam/line" latency=100 ! rtph265depay ! h265parse ! nvv4l2decoder ! '
                 "nvvidconv ! video/x-raw, format=GRAY8 ! appsink drop=true max-buffers=1 sync=false")
    f = nv_decode_pipeline("video", "/data/line 1.mp4", "h264")
    assert f == ('filesrc location="/data/line 1.mp4" ! qtdemux ! h264parse ! nvv4l2decoder ! nvvidconv ! '
                 "video/x-raw, format=GRAY8 ! appsink sync=false max-buffers=4 drop=false")
    assert " ! h265parse ! nvv4l2decoder" in nv_decode_pipeline("video", "x.h265", "h265")
    assert "matroskademux ! h264parse" in nv_decode_pipeline("video", "x.mkv", "h264")
    with pytest.raises(EdgeError, match="supports h264, h265"):
        nv_decode_pipeline("rtsp", "rtsp://x", "vp9")
    with pytest.raises(EdgeError, match="not .avi"):
        nv_decode_pipeline("video", "x.avi", "h264")
    with pytest.raises(EdgeError, match="double quote"):
        nv_decode_pipeline("video", 'x".mp4', "h264")


def test_hw_decode_sources_use_gstreamer_and_fail_clearly_without_it(tmp_path):
    s = parse_source("rtsp://cam/line", hw_decode="h264")
    assert s.api == "gstreamer" and s.live and s.target.startswith('rtspsrc location="rtsp://cam/line"')
    (tmp_path / "line.mp4").write_bytes(b"")
    v = parse_source(str(tmp_path / "line.mp4"), hw_decode="h265")
    assert v.kind == "video" and not v.live and "qtdemux ! h265parse ! nvv4l2decoder" in v.target
    assert parse_source("csi://1").target.startswith("nvarguscamerasrc sensor-id=1")
    with pytest.raises(EdgeError, match="--hw-decode takes"):
        parse_source("rtsp://cam/line", hw_decode="mjpeg")
    with pytest.raises(EdgeError, match="not http://"):
        parse_source("http://cam/line", hw_decode="h264")
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer: the missing-backend error cannot be shown here")
    with pytest.raises(EdgeError, match="no GStreamer backend"):
        open_source(v).open()


class MixedSource:
    """File-like source: good frames, one too small to tile, one not an image, then the end."""

    live, name, fps = False, "mixed", None

    def __init__(self, frames):
        self.frames, self.i = frames, 0

    def open(self):
        pass

    def read(self):
        from edge.capture.sources import EndOfStream

        if self.i >= len(self.frames):
            raise EndOfStream()
        self.i += 1
        return self.frames[self.i - 1]

    def close(self):
        pass


def test_bad_frames_are_skipped_and_counted_in_the_pipeline(tmp_path, models):
    good = np.full((T, 4 * T), class_level(2), np.uint8)
    frames = [good, np.zeros((T // 2, T), np.uint8), np.zeros((T, 4 * T, 7), np.float32), good]
    cfg = CaptureConfig(model=str(models[0]), source="mixed", events=str(tmp_path / "ev.jsonl"), log_all=True)
    s = CaptureDaemon(cfg, source=MixedSource(frames)).run()
    assert s["frames_processed"] == 2 and s["tiles"] == 8 and s["frames_skipped"] == 2
    assert {e["frame"] for e in read_events(tmp_path / "ev.jsonl")} == {0, 3}
    cfg2 = CaptureConfig(model=str(models[0]), source="mixed", events=str(tmp_path / "ev2.jsonl"))
    with pytest.raises(EdgeError, match="no frame could be processed"):
        CaptureDaemon(cfg2, source=MixedSource([np.zeros((4, 4), np.uint8)] * 3)).run()


@pytest.mark.parametrize("which", ["float", "uint8"])
def test_lanes_classify_frames_at_once_and_keep_their_order(tmp_path, models, which):
    """Two runner lanes: two frames classified at once, the first one slowest, yet the events are the same
    as one frame at a time and in frame order; a frame whose inference fails on its lane is skipped and
    counted, the others go on; more lanes than the runner has is refused in one line."""
    import threading

    from edge.runtime import load_runner

    model = models[0] if which == "float" else models[1]
    tile = T if which == "float" else 2 * T
    p = raw_line(tmp_path / "frames.npy", 10, tile)

    def run(lanes, name, slow=(), fail=()):
        cfg = CaptureConfig(model=str(model), source=f"raw://{p}", events=str(tmp_path / name), log_all=True,
                            batch=8, lanes=lanes)
        r = load_runner(model, split=2)
        orig, calls, lock = r.infer_lane, {"n": 0, "now": 0, "most": 0}, threading.Lock()

        def lane(batch):
            with lock:
                calls["n"] += 1
                calls["now"] += 1
                calls["most"] = max(calls["most"], calls["now"])
            try:
                threading.Event().wait(0.02)   # a model slow enough for the two lanes to overlap
                return orig(batch)
            finally:
                with lock:
                    calls["now"] -= 1

        r.infer_lane = lane
        d = CaptureDaemon(cfg, runner=r)
        classify = d.classify

        def spy(work, *a, **k):
            if work.frame.index in fail:
                raise SkipFrame("inference", "RuntimeError: lane fell over")
            out = classify(work, *a, **k)
            if work.frame.index in slow:   # done last: the later frames are ready before it
                threading.Event().wait(0.3)
            return out

        d.classify = spy
        return d, d.run(), read_events(tmp_path / name), calls

    d1, s1, ev1, c1 = run(1, "one.jsonl")
    d2, s2, ev2, c2 = run(0, "lanes.jsonl", slow={0})
    assert d1.lanes == 1 and c1["n"] == 0                       # one frame at a time: infer_batches, split
    assert d2.lanes == 2 and c2["n"] == 10 and c2["most"] == 2   # a frame per lane, two at once
    assert s2["frames_processed"] == 10 and s2["events"] == 80 and s2["lanes"] == 2
    key = [(e["frame"], e["tile"], e["label"], e["confidence"]) for e in ev1]
    assert [(e["frame"], e["tile"], e["label"], e["confidence"]) for e in ev2] == key   # same events, same order
    labels = d2.classes
    assert all(e["label"] == labels[truth(e["frame"], (e["tile"][1] // tile) * 4 + e["tile"][0] // tile)] for e in ev2)
    _, s3, ev3, _ = run(2, "fail.jsonl", slow={2}, fail={3})
    assert s3["frames_processed"] == 9 and s3["frames_skipped_by_reason"] == {"inference": 1}
    assert [e["frame"] for e in ev3] == sorted(e["frame"] for e in ev3)
    assert sorted({e["frame"] for e in ev3}) == [f for f in range(10) if f != 3]
    with pytest.raises(EdgeError, match="--lanes 3: .* at most 2 batch"):
        run(3, "three.jsonl")
    assert not (tmp_path / "three.jsonl").exists() or read_events(tmp_path / "three.jsonl") == []


def test_turns_emit_in_frame_order_never_two_lanes_at_once():
    """Lanes hand frames on out of order from four threads: every frame is emitted once, in order, by
    one thread at a time; a skipped frame (None) is passed over; an emit that raises leaves the turns
    usable by the next lane."""
    import random
    import threading

    from edge.capture.daemon import _Turns

    turns, lock = _Turns(), threading.Lock()
    got, now, most = [], [0], [0]

    def emit(w):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        threading.Event().wait(0.0005)
        got.append(w)
        with lock:
            now[0] -= 1

    order = list(range(400))
    random.Random(0).shuffle(order)

    def lane(ns):
        for n in ns:
            turns.hand_on(n, None if n % 7 == 3 else n, emit)

    ts = [threading.Thread(target=lane, args=(order[k::4],)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == [n for n in range(400) if n % 7 != 3] and most[0] == 1

    def broken(w):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        turns.hand_on(400, 400, broken)
    turns.hand_on(401, 401, emit)          # frame 400 was taken out before its emit failed
    assert got[-1] == 401


def test_frame_queue_wakes_a_blocked_producer_only_when_half_empty():
    """The grab thread of a file source refills the queue in bursts: one frame taken from a full queue
    does not wake it; the queue down to half does, and it fills it again."""
    import threading
    import time

    from edge.capture.sources import FrameQueue

    q = FrameQueue(4)
    for k in range(4):
        q.put(k)
    put = []

    def producer():
        for k in range(4, 6):
            q.put(k)
            put.append(k)

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    time.sleep(0.05)
    assert put == [] and q.get() == 0
    time.sleep(0.1)
    assert put == [] and q.qsize() == 3       # 3 > half: the producer sleeps on
    assert q.get() == 1                       # 2 = half: woken, it refills the queue
    t.join(2.0)
    assert put == [4, 5] and q.qsize() == 4 and [q.get() for _ in range(4)] == [2, 3, 4, 5]
