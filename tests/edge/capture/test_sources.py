"""Source URIs, file sources read completely, a live source that disconnects and comes back,
drop counting with latest-frame semantics."""

import time

import numpy as np
import pytest

from edge.capture.metrics import Metrics
from edge.capture.sources import (END, EndOfStream, Grabber, ImageFolderSource, Source, SourceLost, image_files,
                                  open_source, parse_source)
from edge.errors import EdgeError
from scripts.fixtures.polling import wait_until


def _drain(g, timeout=10.0):
    frames, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        item = g.queue.get(timeout=timeout)
        if item is END:
            return frames
        frames.append(item)
    raise AssertionError("grabber did not finish")


class FlakyCamera(Source):
    """A live source: delivers frames, drops the connection after ``fail_at``, refuses ``refusals``
    reconnects, then delivers again."""

    live = True
    name = "flaky"

    def __init__(self, n=12, fail_at=5, refusals=2, period=0.0):
        self.n, self.fail_at, self.refusals, self.period = n, fail_at, refusals, period
        self.sent, self.opens, self.failed = 0, 0, False

    def open(self):
        self.opens += 1
        if self.failed and self.refusals > 0:
            self.refusals -= 1
            raise SourceLost("camera not answering")

    def read(self):
        if self.period:
            time.sleep(self.period)
        if self.sent == self.fail_at and not self.failed:
            self.failed = True
            raise SourceLost("cable pulled")
        if self.sent >= self.n:
            raise EndOfStream()
        self.sent += 1
        return np.full((8, 8), self.sent, np.uint8)


@pytest.mark.parametrize("uri,kind,live", [
    ("v4l2:///dev/video0", "v4l2", True), ("v4l2://1", "v4l2", True), ("csi://0", "csi", True),
    ("rtsp://cam.local:8554/line", "rtsp", True), ("gst://videotestsrc ! appsink", "gst", True)])
def test_live_uris(uri, kind, live):
    s = parse_source(uri)
    assert (s.kind, s.live) == (kind, live)
    if kind == "csi":
        assert s.target.startswith("nvarguscamerasrc sensor-id=0") and "appsink" in s.target
        assert s.api == "gstreamer"
    if uri == "v4l2:///dev/video0":
        assert s.target == "/dev/video0" and s.api == "v4l2"


def test_file_uris_and_errors(tmp_path):
    import cv2

    (tmp_path / "frames").mkdir()
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / "frames" / f"f_{i}.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "line.mp4").write_bytes(b"")
    assert parse_source(f"file://{tmp_path}/frames/").kind == "images"
    assert parse_source(str(tmp_path / "frames")).kind == "images"
    assert parse_source(str(tmp_path / "line.mp4")).kind == "video"
    assert [p.name for p in image_files(tmp_path / "frames")] == ["f_1.png", "f_2.png", "f_10.png"]
    with pytest.raises(EdgeError, match="does not exist"):
        parse_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(EdgeError, match="unknown source scheme"):
        parse_source("ftp://x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeError, match="no image files"):
        parse_source(str(tmp_path / "empty"))
    with pytest.raises(EdgeError, match="cannot open video"):
        open_source(parse_source(str(tmp_path / "line.mp4"))).open()


def test_video_file_is_read_completely_with_a_slow_consumer(tmp_path):
    import cv2

    p = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(p, cv2.VideoWriter_fourcc(*"FFV1"), 10, (32, 16), isColor=False)
    for i in range(25):
        w.write(np.full((16, 32), i * 10, np.uint8))
    w.release()
    m = Metrics()
    g = Grabber(open_source(parse_source(p)), m, queue_size=2).start()
    # the queue full and one more frame read: the grabber is blocked in put (it must not drop)
    assert wait_until(lambda: g.queue.full() and m.get("frames_read") > 2)
    frames = _drain(g)
    assert [f.index for f in frames] == list(range(25))
    assert all(f.image.ndim == 2 for f in frames)          # a gray stream is delivered as gray (no BGR conversion)
    assert [int(f.image[0, 0]) for f in frames] == [i * 10 for i in range(25)]
    assert m.get("frames_dropped") == 0 and m.get("frames_read") == 25


def test_image_folder_corrupt_files_are_counted_and_skipped(tmp_path):
    import cv2

    for i in range(5):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), np.full((4, 4), i, np.uint8))
    (tmp_path / "frame_002.png").write_bytes(b"not a png")
    (tmp_path / "frame_005.png").write_bytes(b"")
    m = Metrics()
    frames = _drain(Grabber(ImageFolderSource(str(tmp_path)), m).start())
    assert [f.index for f in frames] == [0, 1, 3, 4]          # corrupt frames keep their index
    assert m.get("frames_corrupt") == 2 and m.get("frames_read") == 6


def test_live_source_disconnect_and_come_back_delivers_all_frames():
    m = Metrics()
    cam = FlakyCamera(n=12, fail_at=5, refusals=2)
    t0 = time.monotonic()  # before start(): the first backoff may begin before start() returns
    g = Grabber(cam, m, queue_size=100, reconnect_initial=0.05, reconnect_max=0.1).start()
    got = []
    while len(got) < 12 and time.monotonic() - t0 < 5:
        got.append(g.queue.get(timeout=5))
    g.stop()
    g.join(2)
    assert [int(f.image[0, 0]) for f in got] == list(range(1, 13))
    assert cam.opens >= 4                         # first open, two refused, one accepted (+ after end)
    assert m.get("reconnects") >= 1
    assert time.monotonic() - t0 >= 0.05 + 0.1 + 0.1  # waited the backoff: 0.05, 0.1, then 0.1 (the max)


def test_live_source_drops_stale_frames_and_counts_them():
    m = Metrics()
    cam = FlakyCamera(n=200, fail_at=10_000, refusals=0, period=0.001)
    g = Grabber(cam, m, queue_size=2).start()
    seen = []
    while True:
        item = g.queue.get(timeout=5)
        if item is END:
            break
        seen.append(item)
        time.sleep(0.02)                          # a consumer 20x slower than the camera
        if cam.sent >= 200:
            break
    g.stop()
    g.join(2)
    while not g.queue.empty():
        item = g.queue.get_nowait()
        if item is not END:
            seen.append(item)
    dropped = m.get("frames_dropped")
    assert dropped > 100
    assert len(seen) + dropped == m.get("frames_read")   # every frame read was either delivered or dropped
    idx = [f.index for f in seen]
    assert idx == sorted(idx) and idx[-1] >= 190            # latest-frame: the newest frames get through


def test_grabber_gives_up_after_max_reconnects():
    class Dead(Source):
        live, name = True, "dead"

        def open(self):
            raise SourceLost("no camera")

    m = Metrics()
    g = Grabber(Dead(), m, reconnect_initial=0.01, max_reconnects=2).start()
    assert _drain(g) == []
    assert isinstance(g.error, EdgeError) and "gave up after 2 reconnect attempts" in str(g.error)
