"""edge-capture labels a tile "unknown" when the model's open-set score passes its threshold (issue 15):
counted in the metrics, an event with its score, a crop saved; distinct from "uncertain"."""

import numpy as np
import pytest

from edge.capture.config import CaptureConfig
from edge.capture.daemon import CaptureDaemon
from edge.capture.events import read_events
from scripts.fixtures.intensity_model import class_level, make_intensity_model

T = 32


def _with_score(path, threshold):
    """The intensity model plus an ``ood_score`` output = -max(probs), and an ood block in its metadata."""
    import onnx
    from onnx import TensorProto, helper

    from edge.metadata import read_meta, write_meta

    m = onnx.load(str(path))
    g = m.graph
    g.node.extend([helper.make_node("ReduceMax", ["probs"], ["top"], axes=[1], keepdims=1),
                   helper.make_node("Neg", ["top"], ["ood_score"])])
    g.output.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N", 1]))
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    meta = read_meta(path)
    meta["ood"] = {"score": "max_softmax", "output": "ood_score", "threshold": threshold, "acceptance": 0.99}
    write_meta(path, meta)
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import cv2

    src = tmp_path_factory.mktemp("frames")
    img = np.zeros((T, 3 * T), np.uint8)
    img[:, :T] = class_level(0)                                   # crazing, confident
    img[:, T:2 * T] = (class_level(1) + class_level(2)) // 2      # halfway between two classes: top prob ~0.5
    img[:, 2 * T:] = class_level(5)                               # scratches, confident
    cv2.imwrite(str(src / "a.png"), img)
    return src


def test_unknown_tiles_are_labelled_counted_logged_and_cropped(tmp_path, frames):
    model = _with_score(make_intensity_model(tmp_path / "m.onnx", T), threshold=-0.8)
    cfg = CaptureConfig(model=str(model), source=str(frames), events=str(tmp_path / "ev.jsonl"), threshold=0.6,
                        ok_classes=["crazing"], save_crops=str(tmp_path / "crops"))
    d = CaptureDaemon(cfg)
    s = d.run()
    ev = read_events(tmp_path / "ev.jsonl")
    assert [e["tile"][0] for e in ev] == [T, 2 * T]               # the ok crazing tile is not logged
    unk, known = ev
    assert unk["label"] == "unknown" and unk["top_class"] in ("inclusion", "patches")
    assert not unk["uncertain"]                                   # unknown, not uncertain
    assert unk["ood_score"] > -0.8 and unk["ood_score"] == pytest.approx(-unk["confidence"], abs=1e-5)
    assert known["label"] == "scratches" and known["ood_score"] < -0.8 and "top_class" not in known
    assert s["unknown"] == 1 and s["uncertain"] == 0 and s["per_class"].get("unknown") == 1
    assert unk["crop"] == f"{unk['run']}_{unk['id']}_unknown.png"
    assert unk["crop"] in {p.name for p in (tmp_path / "crops").iterdir()}
    assert "edge_capture_unknown_total 1.0" in d.metrics.render()


def test_without_a_score_output_tiles_stay_uncertain(tmp_path, frames):
    model = make_intensity_model(tmp_path / "plain.onnx", T)
    cfg = CaptureConfig(model=str(model), source=str(frames), events=str(tmp_path / "ev.jsonl"), threshold=0.6,
                        ok_classes=["crazing"])
    s = CaptureDaemon(cfg).run()
    ev = read_events(tmp_path / "ev.jsonl")
    assert ev[0]["uncertain"] and ev[0]["label"] != "unknown" and "ood_score" not in ev[0]
    assert s.get("unknown", 0) == 0 and s["uncertain"] == 1
