"""The open-set score output (train.models.with_ood_score, python -m train.ood), its runners and edge-eval --ood."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from edge import ood as O  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from edge.metadata import read_meta  # noqa: E402


@pytest.fixture(scope="module")
def ood_model(tiny_model, sample_dir, tmp_path_factory):
    from train import ood

    out = tmp_path_factory.mktemp("ood") / "m"
    assert ood.main([str(tiny_model), "--data", str(sample_dir), "--out", str(out)]) == 0
    return out / "model.keras"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Images of no class, in a nested layout: flat grey, stripes, noise."""
    import cv2

    d = tmp_path_factory.mktemp("foreign")
    rng = np.random.default_rng(0)
    (d / "a" / "b").mkdir(parents=True)
    for i in range(6):
        img = np.full((200, 200), 40 * i, np.uint8) if i < 3 else rng.integers(0, 255, (200, 200), dtype=np.uint8)
        cv2.imwrite(str(d / ("a/b" if i % 2 else "a") / f"x{i}.png"), img)
    (d / "notes.txt").write_text("not an image")
    return d


def test_score_outputs_match_numpy(tiny_model):
    import keras

    from edge.runtime.keras.runner import load_keras_model
    from train.models import logits_of, with_ood_score

    m = load_keras_model(tiny_model)
    x = np.random.default_rng(1).random((5, 64, 64, 1)).astype(np.float32)
    probs = np.asarray(m(x))
    logits = np.asarray(keras.Model(m.inputs, logits_of(m))(x))
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, atol=1e-5)
    for name, expect in (("max_softmax", O.max_softmax(probs)), ("energy", O.energy(logits))):
        p, s = (np.asarray(a) for a in with_ood_score(m, name)(x))
        assert np.array_equal(p, probs) and s.shape == (5, 1)
        assert s[:, 0] == pytest.approx(expect, abs=1e-4), name
    with pytest.raises(EdgeError, match="mahalanobis"):
        with_ood_score(m, "mahalanobis")


def test_train_ood_writes_threshold_from_val(ood_model, tiny_model, sample_dir):
    from edge.data import load_images, select
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model

    meta = read_meta(ood_model)
    b = meta["ood"]
    assert b["score"] == "max_softmax" and b["calibrated_on"] == "val" and b["acceptance"] == 0.99
    val = select(sample_dir, "val", tiny_model.parent / "split.csv")
    assert b["n"] == len(val) > 0
    prep = Preprocess.load(tiny_model.parent / "preprocess.json")
    probs = np.asarray(load_keras_model(tiny_model)(prep(load_images(val))))
    assert b["threshold"] == pytest.approx(O.calibrate(O.max_softmax(probs), 0.99), abs=1e-6)
    assert [o["name"] for o in meta["outputs"]] == ["probs", "ood_score"]
    m = load_keras_model(ood_model)                 # safe_mode loading: stock layers only
    assert len(m.outputs) == 2


def test_runners_return_probs_and_keep_the_score(ood_model, tiny_model, tmp_path):
    from convert.export import check_classifier, keras_to_onnx
    from edge.metadata import write_meta
    from edge.runtime import load_runner
    from edge.runtime.keras.runner import load_keras_model

    m = load_keras_model(ood_model)
    meta = read_meta(ood_model)
    check_classifier(m, meta["classes"], (64, 64, 1))
    onnx_path = keras_to_onnx(m, tmp_path / "model.onnx", (64, 64, 1))
    write_meta(onnx_path, {**meta, "format": "onnx", "backend": "onnxruntime"})
    imgs = np.random.default_rng(2).integers(0, 255, (7, 200, 200), dtype=np.uint8)
    got = {}
    for path in (ood_model, onnx_path, tiny_model):
        with load_runner(path, warmup=0) as r:
            got[path.suffix + str(path.parent.name)] = (r.infer_images(imgs), r.last_score)
    (pk, sk), (po, so), (pt, st) = got.values()
    assert st is None                                # a model without the score output: probabilities only
    assert np.allclose(pk, pt, atol=1e-6) and np.allclose(po, pk, atol=1e-5)
    assert sk.shape == so.shape == (7,) and np.allclose(so, sk, atol=1e-5)
    assert np.allclose(sk, -pk.max(1), atol=1e-6)


def test_check_classifier_refuses_other_second_outputs(tiny_model):
    import keras

    from convert.export import check_classifier
    from edge.runtime.keras.runner import load_keras_model

    m = load_keras_model(tiny_model)
    two = keras.Model(m.inputs, [m.outputs[0], keras.layers.Dense(1, name="other")(m.outputs[0])])
    with pytest.raises(EdgeError, match="ood_score"):
        check_classifier(two, [str(i) for i in range(6)], (64, 64, 1))


def test_eval_ood_report(ood_model, tiny_model, sample_dir, foreign, tmp_path, capsys):
    from train import evaluate

    out = tmp_path / "e.json"
    assert evaluate.main([str(ood_model), "--data", str(sample_dir), "--split", "val", "--ood", str(foreign),
                          "--json", str(out)]) == 0
    o = json.loads(out.read_text())["ood"]
    assert {"auroc", "fpr_at_95tpr", "threshold", "accepted_in", "rejected_out", "n_in", "n_out"} <= set(o)
    assert o["score"] == "max_softmax" and o["n_out"] == 6 and o["threshold"] == read_meta(ood_model)["ood"]["threshold"]
    assert o["accepted_in"] >= 0.99                  # the calibration images themselves
    assert 0.0 <= o["auroc"] <= 1.0 and 0.0 <= o["rejected_out"] <= 1.0
    assert "open set (max_softmax): AUROC" in capsys.readouterr().out
    # a model without a score or threshold: the baseline from its probabilities, no threshold invented
    assert evaluate.main([str(tiny_model), "--data", str(sample_dir), "--split", "val", "--ood", str(foreign),
                          "--json", str(out)]) == 0
    o2 = json.loads(out.read_text())["ood"]
    assert o2["score"] == "max_softmax" and o2["threshold"] is None and o2["accepted_in"] is None
    assert o2["auroc"] == pytest.approx(o["auroc"])  # the same score, computed outside the graph


def test_eval_ood_bad_folders(tiny_model, sample_dir, tmp_path, capsys):
    from train import evaluate

    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, needle in ((tmp_path / "missing", "does not exist"), (empty, "holds no images")):
        rc = evaluate.main([str(tiny_model), "--data", str(sample_dir), "--split", "val", "--ood", str(folder)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and len(err.splitlines()) == 1


def test_recalibrate_an_artifact_on_val(ood_model, sample_dir, tmp_path, capsys):
    from convert.export import keras_to_onnx
    from edge.data import load_images, select
    from edge.metadata import write_meta
    from edge.runtime import load_runner
    from edge.runtime.keras.runner import load_keras_model
    from train import ood

    meta = read_meta(ood_model)
    onnx_path = keras_to_onnx(load_keras_model(ood_model), tmp_path / "model.onnx", (64, 64, 1))
    block = dict(meta["ood"], threshold=123.0)        # a wrong threshold, to be replaced
    write_meta(onnx_path, {**meta, "format": "onnx", "backend": "onnxruntime", "ood": block})
    assert ood.main([str(onnx_path), "--data", str(sample_dir), "--recalibrate"]) == 0
    new = read_meta(onnx_path)["ood"]
    imgs = load_images(select(sample_dir, "val", meta["ood"]["split_file"]))
    with load_runner(onnx_path, warmup=0) as r:
        r.infer_images(imgs)
        expect = O.calibrate(r.last_score, 0.99)
    assert new["threshold"] == pytest.approx(expect) and new["calibrated_with"] == "model.onnx"
    assert new["threshold"] == pytest.approx(meta["ood"]["threshold"], abs=1e-5)  # FP32 ONNX = Keras
    # an artifact without an ood block: one-line error
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(onnx_path.read_bytes())
    write_meta(plain, {k: v for k, v in meta.items() if k != "ood"})
    rc = ood.main([str(plain), "--data", str(sample_dir), "--recalibrate"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no 'ood' block" in err and len(err.splitlines()) == 1
