"""edge-capture --preview: /preview.jpg (latest annotated frame), /preview.json and / on the metrics server."""

import json
import urllib.error
import urllib.request
from html.parser import HTMLParser

import numpy as np
import pytest

from edge.capture.annotate import class_colors
from edge.capture.config import CaptureConfig, merge
from edge.capture.daemon import CaptureDaemon
from edge.capture.preview import Preview
from edge.errors import EdgeError
from scripts.fixtures.intensity_model import class_level, make_intensity_model

T = 32          # model input
TILE = 96       # camera tile (resized to T by the model's preprocessing)
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_intensity_model(tmp_path_factory.mktemp("m") / "m.onnx", T)


def frames_dir(path, n):
    import cv2

    path.mkdir()
    for f in range(n):
        img = np.zeros((TILE, 4 * TILE), np.uint8)
        for k in range(4):
            img[:, k * TILE:(k + 1) * TILE] = class_level((f + k) % 6)
        cv2.imwrite(str(path / f"f_{f:03d}.png"), img)
    return path


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_preview_serves_the_latest_annotated_frame_and_counters(tmp_path, model):
    import cv2

    src = frames_dir(tmp_path / "frames", 12)
    cfg = CaptureConfig(model=str(model), source=str(src), events=str(tmp_path / "ev.jsonl"), log_all=True,
                        metrics="127.0.0.1:0", preview=True, batch=4, tile=TILE)
    d = CaptureDaemon(cfg)
    orig = d.emit
    got = {}

    def emit(work):
        orig(work)
        if work.frame.index == 5:  # ask while the daemon runs (served by the metrics thread)
            url = d.server.url
            got["jpg"] = get(url + "/preview.jpg")
            got["json"] = get(url + "/preview.json")
            got["page"] = get(url + "/")

    d.emit = emit
    s = d.run()
    assert s["frames_processed"] == 12
    code, ctype, body = got["jpg"]
    assert code == 200 and ctype == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] == 4 * TILE and img.shape[0] > TILE    # the frame plus the legend band
    colors = class_colors(CLASSES)
    for k in range(4):                                         # frame 5: tile k is class (5 + k) % 6
        rgb = np.array(colors[CLASSES[(5 + k) % 6]][::-1])
        assert np.abs(img[TILE // 2, k * TILE + 1].astype(int) - rgb).max() < 60, k   # outline colour (JPEG)
    code, ctype, body = got["json"]
    st = json.loads(body)
    assert code == 200 and st["frame"] == 5 and st["counters"]["frames_processed"] >= 6
    assert sum(st["per_class"].values()) == st["counters"]["tiles"] >= 24
    code, ctype, body = got["page"]
    assert code == 200 and ctype.startswith("text/html")

    class P(HTMLParser):
        imgs, scripts = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs).get("src"))
            self.scripts += tag == "script"

    p = P()
    p.feed(body.decode())
    assert p.imgs == ["/preview.jpg"] and p.scripts == 1 and "frames_processed" in body.decode()


def test_preview_off_by_default_no_route(tmp_path, model):
    src = frames_dir(tmp_path / "frames", 2)
    cfg = CaptureConfig(model=str(model), source=str(src), events=str(tmp_path / "ev.jsonl"), metrics="127.0.0.1:0",
                        tile=TILE)
    d = CaptureDaemon(cfg)
    orig = d.emit
    got = []

    def emit(work):
        orig(work)
        got.append(get(d.server.url + "/preview.jpg")[0])

    d.emit = emit
    d.run()
    assert d.preview is None and got == [404, 404]


def test_preview_needs_the_metrics_server():
    with pytest.raises(EdgeError, match="preview.*metrics"):
        merge({}, {"model": "m.onnx", "source": "x", "preview": True})


def test_encoding_is_lazy_and_rate_limited():
    p = Preview(CLASSES, min_interval=3600)
    assert p.jpeg() is None and p.routes()["/preview.jpg"]({})[0] == 503
    img = np.zeros((T, 2 * T), np.uint8)
    boxes = [(0, 0, T, T), (T, 0, T, T)]
    probs = [np.eye(6, dtype=np.float32)[[0, 5]]]
    for i in range(50):                    # the daemon's side: no drawing, no encoding
        p.submit(i, img, boxes, probs)
    assert p.encodes == 0 and p.submitted == 50
    first = p.jpeg()
    p.submit(50, img, boxes, probs)
    assert p.jpeg() is first and p.encodes == 1     # within min_interval: the cached JPEG
    p.min_interval = 0
    p.jpeg()
    assert p.encodes == 2
    p.close()


def test_in_process_and_encoding_process_draw_the_same():
    import cv2

    img = (np.arange(2 * T * T, dtype=np.uint32).reshape(T, 2 * T) % 251).astype(np.uint8)
    boxes = [(0, 0, T, T), (T, 0, T, T)]
    probs = [np.eye(6, dtype=np.float32)[[1, 4]]]
    out = []
    for process in (True, False):
        p = Preview(CLASSES, min_interval=0, process=process)
        p.submit(3, img, boxes, probs)
        out.append(cv2.imdecode(np.frombuffer(p.jpeg(), np.uint8), cv2.IMREAD_COLOR))
        assert p.process is process       # the process path worked (no fallback)
        p.close()
    assert out[0].shape == out[1].shape and np.array_equal(out[0], out[1])


def test_tiles_uncertain_and_cut_short():
    p = Preview(CLASSES, threshold=0.6)
    probs = [np.array([[0.9, 0.1, 0, 0, 0, 0], [0.5, 0.4, 0.1, 0, 0, 0]], np.float32)]
    t = p.tiles([(0, 0, 8, 8), (8, 0, 8, 8), (16, 0, 8, 8)], probs)
    assert (t[0].label, t[0].uncertain) == ("crazing", False)
    assert (t[1].label, t[1].uncertain) == ("crazing", True) and t[1].confidence == pytest.approx(0.5)
    assert t[2].label is None                        # not classified: drawn as unknown
    t = p.tiles([(0, 0, 8, 8), (8, 0, 8, 8)], probs, unknown=np.array([False, True]))
    assert t[0].label == "crazing" and (t[1].label, t[1].uncertain) == ("unknown", False)   # the daemon's open-set label


def test_wide_frames_are_scaled_down_before_drawing():
    import cv2

    p = Preview(CLASSES, max_width=400, min_interval=0)
    img = np.zeros((200, 800), np.uint8)
    p.submit(0, img, [(0, 0, 200, 200), (600, 0, 200, 200)], [np.eye(6, dtype=np.float32)[[0, 5]]])
    out = cv2.imdecode(np.frombuffer(p.jpeg(), np.uint8), cv2.IMREAD_COLOR)
    p.close()
    assert out.shape[1] == 400 and out.shape[0] > 100          # 800x200 -> 400x100, plus the legend band
    colors = class_colors(CLASSES)
    assert np.abs(out[50, 301].astype(int) - np.array(colors["scratches"][::-1])).max() < 60  # box scaled too
