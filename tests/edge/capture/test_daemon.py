"""The daemon end to end on the CPU with a tiny ONNX model whose class follows tile brightness:
file video, image folder, a live source that disconnects, uncertain labelling, crops, ok classes."""

import time

import numpy as np
import pytest

from edge.capture.config import CaptureConfig
from edge.capture.daemon import CaptureDaemon, classify_tiles
from edge.capture.events import read_events
from scripts.fixtures.intensity_model import class_level, make_intensity_model

T = 32                     # model input = tile size
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_intensity_model(tmp_path_factory.mktemp("m") / "m.onnx", T)


def truth(frame, k):
    return (frame + k) % 6


def make_frame(f, cols=4, rows=2):
    img = np.zeros((rows * T, cols * T), np.uint8)
    for k in range(rows * cols):
        y, x = divmod(k, cols)
        img[y * T:(y + 1) * T, x * T:(x + 1) * T] = class_level(truth(f, k))
    return img


def write_video(path, n):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25, (4 * T, 2 * T), isColor=False)
    for f in range(n):
        w.write(make_frame(f))
    w.release()
    return path


def run(cfg, **kw):
    d = CaptureDaemon(cfg, **kw)
    return d, d.run()


def test_classify_tiles_marks_uncertain():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], np.float32)
    out = classify_tiles(probs, ["a", "b", "c"], 0.5)
    assert out[0] == (0, "a", pytest.approx(0.7), False)
    assert out[1][1:] == ("a", pytest.approx(0.4), True)


def test_file_video_log_all_gives_frames_times_tiles_events(tmp_path, model):
    video = write_video(tmp_path / "line.avi", 30)
    cfg = CaptureConfig(model=str(model), source=str(video), events=str(tmp_path / "ev.jsonl"), log_all=True,
                        batch=3, probs=True)
    d, s = run(cfg)
    ev = read_events(tmp_path / "ev.jsonl")
    assert s["frames_read"] == s["frames_processed"] == 30 and s["frames_dropped"] == 0
    assert s["tiles"] == len(ev) == s["events"] == 30 * 8
    assert {e["id"] for e in ev} == {f"{f:08d}-{k:04d}" for f in range(30) for k in range(8)}
    for e in ev:
        x, y, w, h = e["tile"]
        k = (y // T) * 4 + x // T
        assert e["label"] == CLASSES[truth(e["frame"], k)] and not e["uncertain"] and len(e["probs"]) == 6
    assert sum(s["per_class"].values()) == 240 and s["latency_mean_ms"] > 0


def test_image_folder_with_corrupt_frame_roi_stride_and_crops(tmp_path, model):
    import cv2

    src = tmp_path / "frames"
    src.mkdir()
    for f in range(6):
        cv2.imwrite(str(src / f"f{f:02d}.png"), make_frame(f))
    (src / "f03.png").write_bytes(b"\x89PNG broken")
    cfg = CaptureConfig(model=str(model), source=f"file://{src}/", events=str(tmp_path / "ev.jsonl"),
                        roi=f"{T},0,{3 * T},{2 * T}", stride=T, save_crops=str(tmp_path / "crops"))
    d, s = run(cfg)
    ev = read_events(tmp_path / "ev.jsonl")
    assert s["frames_corrupt"] == 1 and s["frames_processed"] == 5
    assert len(ev) == 5 * 6 and {e["frame"] for e in ev} == {0, 1, 2, 4, 5}     # ROI: 3 x 2 tiles
    assert min(e["tile"][0] for e in ev) == T
    crops = sorted(p.name for p in (tmp_path / "crops").iterdir())
    assert len(crops) == len(ev) and all(e["crop"] == f"{e['run']}_{e['id']}_{e['label']}.png" in crops for e in ev)
    # a second run into the same folder (a restart: frame numbers start at 0 again) keeps the first run's crops
    d2, _ = run(cfg)
    assert d2.run_id != d.run_id
    assert len(list((tmp_path / "crops").iterdir())) == 2 * len(ev)


def test_uncertain_tiles_and_ok_classes(tmp_path, model):
    import cv2

    src = tmp_path / "frames"
    src.mkdir()
    img = np.zeros((T, 3 * T), np.uint8)
    img[:, :T] = class_level(0)                                   # crazing, confident
    img[:, T:2 * T] = (class_level(1) + class_level(2)) // 2      # halfway: ~0.5/0.5 → uncertain
    img[:, 2 * T:] = class_level(5)                               # scratches
    cv2.imwrite(str(src / "a.png"), img)
    cfg = CaptureConfig(model=str(model), source=str(src), events=str(tmp_path / "ev.jsonl"), threshold=0.6,
                        ok_classes=["crazing"])
    d, s = run(cfg)
    ev = read_events(tmp_path / "ev.jsonl")
    assert [e["tile"][0] for e in ev] == [T, 2 * T]               # the "ok" crazing tile is not logged
    assert ev[0]["uncertain"] and ev[0]["confidence"] < 0.6
    assert not ev[1]["uncertain"] and ev[1]["label"] == "scratches"
    assert s["uncertain"] == 1 and s["tiles"] == 3 and s["events"] == 2


def test_live_source_disconnect_and_reconnect_through_the_daemon(tmp_path, model):
    from edge.capture.sources import EndOfStream, Source, SourceLost

    class Cam(Source):
        live, name = True, "cam"

        def __init__(self):
            self.i, self.lost = 0, False

        def read(self):
            time.sleep(0.01)
            if self.i == 4 and not self.lost:
                self.lost = True
                raise SourceLost("unplugged")
            if self.i >= 10:
                raise EndOfStream()
            self.i += 1
            return make_frame(self.i)

    cfg = CaptureConfig(model=str(model), source="cam", events=str(tmp_path / "ev.jsonl"), log_all=True,
                        queue=50, max_frames=10, reconnect_initial=0.05)
    d, s = run(cfg, source=Cam())
    assert s["frames_processed"] == 10 and s["reconnects"] == 1 and s["events"] == 80


@pytest.mark.parametrize("lanes", [1, 2])
def test_stop_request_drains_queued_frames(tmp_path, model, lanes):
    from edge.runtime import load_runner

    video = write_video(tmp_path / "line.avi", 200)
    cfg = CaptureConfig(model=str(model), source=str(video), events=str(tmp_path / "ev.jsonl"), log_all=True,
                        queue=8, lanes=lanes)
    d = CaptureDaemon(cfg, runner=load_runner(model, split=2))   # two lanes whatever the cores here
    orig = d.classify
    calls = []

    def slow_classify(work, *a, **k):
        calls.append(work.frame.index)
        if len(calls) == 5:
            d.request_stop()
        return orig(work, *a, **k)

    d.classify = slow_classify
    s = d.run()
    ev = read_events(tmp_path / "ev.jsonl")
    assert 5 <= s["frames_processed"] < 200
    assert len(ev) == s["frames_processed"] * 8                  # every processed frame's events are in the file
    assert sorted({e["frame"] for e in ev}) == list(range(s["frames_processed"]))
