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
    with pytest.raises(EdgeError, match="class statistics"):
        with_ood_score(m, "mahalanobis")
    with pytest.raises(EdgeError, match="unknown open-set score"):
        with_ood_score(m, "knn5")
    with pytest.raises(EdgeError, match="bank of the training split"):
        with_ood_score(m, "knn")


def _features(m, x):
    import keras

    from train.models import features_of

    return np.asarray(keras.Model(m.inputs, features_of(m))(x), np.float64)


def test_feature_scores_in_graph_match_numpy(tiny_model):
    """Mahalanobis and cosine computed by the graph's constant layers = the numpy reference."""
    from edge.runtime.keras.runner import load_keras_model
    from train.models import with_ood_score

    m = load_keras_model(tiny_model)
    rng = np.random.default_rng(3)
    fit_x = rng.random((40, 64, 64, 1)).astype(np.float32)
    f = _features(m, fit_x)
    stats = O.fit_feature_stats(f, np.arange(40) % 6, 6)
    assert stats["precision"].shape == (f.shape[1],) * 2 and np.all(np.linalg.eigvalsh(stats["precision"]) > 0)
    x = rng.random((5, 64, 64, 1)).astype(np.float32)
    fx = _features(m, x)
    probs = np.asarray(m(x))
    for name, expect in (("mahalanobis", O.mahalanobis(fx, stats["means"], stats["precision"])),
                         ("cosine", O.cosine(fx, stats["means"]))):
        g = with_ood_score(m, name, stats)
        p, s = (np.asarray(a) for a in g(x))
        assert np.array_equal(p, probs) and s.shape == (5, 1), name
        assert s[:, 0] == pytest.approx(expect, rel=1e-4, abs=1e-4), name
        assert not any(w.trainable for layer in g.layers if layer.name.startswith("ood_") for w in layer.weights)
    # a feature far from every class mean scores higher than the class means' own images
    assert O.mahalanobis(stats["means"] + 100, stats["means"], stats["precision"]).min() > \
        O.mahalanobis(stats["means"], stats["means"], stats["precision"]).max()
    with pytest.raises(EdgeError, match="class statistics"):
        with_ood_score(m, "cosine", {"means": stats["means"][:3]})
    # logit_cosine: the centred logits against the class means of the fit images' logits
    import keras

    from train.models import logits_of

    lg = keras.Model(m.inputs, logits_of(m))
    ls = O.fit_feature_stats(np.asarray(lg(fit_x), np.float64), np.arange(40) % 6, 6)
    s = np.asarray(with_ood_score(m, "logit_cosine", ls)(x)[1])
    assert s[:, 0] == pytest.approx(O.cosine(np.asarray(lg(x), np.float64), ls["means"], ls["center"]), abs=1e-4)


def test_knn_score_in_graph_matches_numpy_and_onnxruntime(tiny_model, sample_dir, tmp_path):
    """python -m train.ood --score knn: the bank is the training split's features; the graph's score (Keras,
    safe_mode reload, ONNX Runtime) = edge.ood.knn against it; a training image is its own nearest neighbour."""
    import onnxruntime as ort

    from convert.export import keras_to_onnx
    from edge.data import load_images, select
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model
    from train import ood

    out = tmp_path / "knn"
    assert ood.main([str(tiny_model), "--data", str(sample_dir), "--out", str(out), "--score", "knn"]) == 0
    b = read_meta(out / "model.keras")["ood"]
    train = select(sample_dir, "train", tiny_model.parent / "split.csv")
    assert b["score"] == "knn" and b["class_stats"]["n"] == len(train) and b["class_stats"]["of"] == "penultimate features"
    prep = Preprocess.load(tiny_model.parent / "preprocess.json")
    base = load_keras_model(tiny_model)
    bank = _features(base, prep(load_images(train)))
    g = load_keras_model(out / "model.keras")                       # stock layers: safe_mode loads it
    x = np.concatenate([prep(load_images(train))[:3], np.random.default_rng(4).random((4, 64, 64, 1))]).astype(np.float32)
    expect = O.knn(_features(base, x), bank)
    p, s = (np.asarray(a) for a in g(x))
    assert np.array_equal(p, np.asarray(base(x))) and s[:, 0] == pytest.approx(expect, abs=1e-5)
    assert s[:3, 0] == pytest.approx(-1.0, abs=1e-5)                # training images: similarity 1 to themselves
    assert g.get_layer("ood_knn").get_weights()[0].shape == (bank.shape[1], len(train))
    sess = ort.InferenceSession(str(keras_to_onnx(g, tmp_path / "knn.onnx", (64, 64, 1))),
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    assert got["ood_score"][:, 0] == pytest.approx(expect, abs=1e-5)
    assert b["threshold"] >= -1.0 and b["n"] == len(select(sample_dir, "val", tiny_model.parent / "split.csv"))


@pytest.mark.parametrize("score", ["relative_mahalanobis", "relative_mahalanobis_l2"])
def test_relative_mahalanobis_in_graph_matches_numpy_and_onnxruntime(score, tiny_model, sample_dir, tmp_path):
    """python -m train.ood --score relative_mahalanobis[_l2]: class statistics and the Gaussian of all training
    features from the training split; the graph's score (Keras, safe_mode reload, ONNX Runtime) = the numpy
    reference edge.ood.relative_mahalanobis of (l2-normalised) features; far-off features score higher."""
    import onnxruntime as ort

    from convert.export import keras_to_onnx
    from edge.data import load_images, select
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model
    from train import ood

    l2 = O.RELATIVE_SCORES[score]
    out = tmp_path / score
    assert ood.main([str(tiny_model), "--data", str(sample_dir), "--out", str(out), "--score", score]) == 0
    b = read_meta(out / "model.keras")["ood"]
    train = select(sample_dir, "train", tiny_model.parent / "split.csv")
    assert b["score"] == score and b["class_stats"]["n"] == len(train)
    assert b["class_stats"]["of"] == ("l2-normalised " if l2 else "") + "penultimate features"
    prep = Preprocess.load(tiny_model.parent / "preprocess.json")
    base = load_keras_model(tiny_model)

    def feats(x):
        f = _features(base, x)
        return O.l2_normalise(f) if l2 else f
    stats = O.fit_relative_stats(feats(prep(load_images(train))), train.labels, len(read_meta(tiny_model)["classes"]))
    g = load_keras_model(out / "model.keras")                       # stock layers: safe_mode loads it
    x = np.concatenate([prep(load_images(train))[:3], np.random.default_rng(5).random((4, 64, 64, 1))]).astype(np.float32)
    expect = O.relative_mahalanobis(feats(x), stats)
    tol = 1e-4 * max(1.0, np.abs(expect).max())
    p, s = (np.asarray(a) for a in g(x))
    assert np.array_equal(p, np.asarray(base(x))) and s[:, 0] == pytest.approx(expect, abs=tol)
    assert np.ptp(expect) > 100 * tol                               # the check can tell the rows apart
    sess = ort.InferenceSession(str(keras_to_onnx(g, tmp_path / f"{score}.onnx", (64, 64, 1))),
                                providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    assert got["ood_score"][:, 0] == pytest.approx(expect, abs=tol)
    assert b["n"] == len(select(sample_dir, "val", tiny_model.parent / "split.csv"))
    with pytest.raises(EdgeError, match="precision0"):
        with_stats = {k: v for k, v in stats.items() if k != "precision0"}
        from train.models import with_ood_score

        with_ood_score(base, score, with_stats)


def test_relative_mahalanobis_numpy_reference():
    """min_k d_k - d_0 by hand on a 2-D example; a point far from the classes but near the overall Gaussian's
    centre still scores above the class centres."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    f = np.r_[rng.normal([-5, 0], 1, (50, 2)), rng.normal([5, 0], 1, (50, 2))]
    st = O.fit_relative_stats(f, y, 2)
    assert set(st) >= {"means", "precision", "mean0", "precision0"} and st["mean0"] == pytest.approx(f.mean(0))
    q = np.array([[0.0, 0.0], [-5.0, 0.0]])
    d0 = q - st["mean0"]
    by_hand = O.mahalanobis(q, st["means"], st["precision"]) - np.einsum("nd,de,ne->n", d0, st["precision0"], d0)
    assert O.relative_mahalanobis(q, st) == pytest.approx(by_hand)
    assert O.relative_mahalanobis(q, st)[0] > O.relative_mahalanobis(q, st)[1]


def test_fit_feature_stats_refuses_a_missing_class():
    with pytest.raises(EdgeError, match="class"):
        O.fit_feature_stats(np.ones((4, 3)), [0, 0, 1, 1], 3)


def test_train_ood_writes_threshold_from_val(ood_model, tiny_model, sample_dir):
    """The default score (relative_mahalanobis_l2, chosen by round 4 of the leave-one-class-out rule): its
    statistics are the training split's l2-normalised features', its threshold the 99 % quantile of the val
    images' scores."""
    from edge.data import load_images, select
    from edge.preprocess import Preprocess
    from edge.runtime.keras.runner import load_keras_model

    meta = read_meta(ood_model)
    b = meta["ood"]
    assert b["score"] == "relative_mahalanobis_l2" and b["calibrated_on"] == "val" and b["acceptance"] == 0.99
    assert b["class_stats"]["of"] == "l2-normalised penultimate features"
    val = select(sample_dir, "val", tiny_model.parent / "split.csv")
    train = select(sample_dir, "train", tiny_model.parent / "split.csv")
    assert b["n"] == len(val) > 0 and b["class_stats"]["fit_on"] == "train" and b["class_stats"]["n"] == len(train)
    prep = Preprocess.load(tiny_model.parent / "preprocess.json")
    m = load_keras_model(tiny_model)
    stats = O.fit_relative_stats(O.l2_normalise(_features(m, prep(load_images(train)))), train.labels,
                                 len(meta["classes"]))
    expect = O.relative_mahalanobis(O.l2_normalise(_features(m, prep(load_images(val)))), stats)
    assert b["threshold"] == pytest.approx(O.calibrate(expect, 0.99), abs=1e-4 * max(1.0, abs(b["threshold"])))
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
    assert sk.shape == so.shape == (7,) and np.allclose(so, sk, atol=1e-5 * max(1.0, np.abs(sk).max()))
    assert np.all(np.isfinite(sk)) and np.ptp(sk) > 0                # a score per image, not a constant


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
    assert o["score"] == "relative_mahalanobis_l2" and o["n_out"] == 6
    assert o["threshold"] == read_meta(ood_model)["ood"]["threshold"]
    assert o["accepted_in"] >= 0.99                  # the calibration images themselves
    assert 0.0 <= o["auroc"] <= 1.0 and 0.0 <= o["rejected_out"] <= 1.0
    assert "open set (relative_mahalanobis_l2): AUROC" in capsys.readouterr().out
    # a model without a score or threshold: the baseline from its probabilities, no threshold invented
    assert evaluate.main([str(tiny_model), "--data", str(sample_dir), "--split", "val", "--ood", str(foreign),
                          "--json", str(out)]) == 0
    o2 = json.loads(out.read_text())["ood"]
    assert o2["score"] == "max_softmax" and o2["threshold"] is None and o2["accepted_in"] is None
    assert 0.0 <= o2["auroc"] <= 1.0


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


def test_max_softmax_model_matches_outside_the_graph(tiny_model, sample_dir, foreign, tmp_path):
    """--score max_softmax: edge-eval's in-graph score = the baseline computed from the probabilities."""
    from train import evaluate, ood

    out = tmp_path / "msp"
    assert ood.main([str(tiny_model), "--data", str(sample_dir), "--out", str(out), "--score", "max_softmax"]) == 0
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for model, js in ((out / "model.keras", a), (tiny_model, b)):
        assert evaluate.main([str(model), "--data", str(sample_dir), "--split", "val", "--ood", str(foreign),
                              "--json", str(js)]) == 0
    oa, ob = (json.loads(p.read_text())["ood"] for p in (a, b))
    assert oa["score"] == ob["score"] == "max_softmax" and oa["auroc"] == pytest.approx(ob["auroc"])


def test_edge_convert_gates_the_score_and_keeps_its_head_in_float(ood_model, sample_dir, tmp_path):
    import onnx

    from convert.cli import main
    from convert.quantize import score_nodes, score_tensors

    out = tmp_path / "conv"
    rc = main([str(ood_model), "--fp16", "--int8", "--int8-cpu", "--calib-data", str(sample_dir), "--calib-size", "24",
               "--calib-chunk", "8", "--max-drift", "100", "--min-agreement", "0", "--uint8-tiles", "0", "-o", str(out)])
    fp32 = read_meta(out / "model.onnx")["ood"]
    assert "drift_gate" not in fp32                                  # the reference itself
    # no --calib-method: an open-set model is calibrated with minmax ranges (entropy's clip the score's tails)
    record = json.loads((out / "model.int8.calib.json").read_text())
    assert record["method"] == "minmax"
    score = set(score_tensors(out / "model.onnx"))
    assert score and record["ranges"] and not score & set(record["ranges"])   # the score stays float: not calibrated
    assert {read_meta(out / a)["calibration"]["method"] for a in ("model.int8.onnx", "model.int8cpu.onnx")} == {"minmax"}
    gates = {}
    for art in ("model.fp16.onnx", "model.int8.onnx", "model.int8cpu.onnx"):
        b = read_meta(out / art)["ood"]
        g = gates[art] = b["drift_gate"]
        assert b["fp32_threshold"] == fp32["threshold"] and g["split"] == "val"
        assert g["predictions"] == 4 * b["n"] and {"decision_agreement_pct", "max_abs_diff", "passed"} <= set(g)
        # own threshold only where FP32's failed
        assert (b["threshold"] == fp32["threshold"]) == (g["own_threshold"] is None) == ("calibrated_with" not in b)
    f16 = gates["model.fp16.onnx"]
    # FP16 keeps the score: its largest difference is under 1 % of the FP32 val scores' spread
    assert f16["max_abs_diff"] < 1e-2 * f16["fp32_spread_p1_p99"]
    # with the sample's 9 val images (36 views) the 99 % threshold is the top val score, so one FP16 view
    # crossing it by a little fails the decision criterion (at least 99 %) at FP32's threshold and may fail it at
    # its own; FP16's own threshold may move from FP32's by no more than its scores do
    if f16["own_threshold"] is not None:
        assert abs(f16["own_threshold"] - f16["threshold"]) <= f16["max_abs_diff"]
    assert rc == (0 if all(g["passed"] for g in gates.values()) else 1)
    # the score head is float in both INT8 models: no quantized weight of it, no Q/DQ between its nodes
    # (it reads the logits as the softmax does: quantized where the INT8 model quantizes them)
    head = set(score_nodes(out / "model.onnx"))
    assert head
    for art in ("model.int8.onnx", "model.int8cpu.onnx"):
        g = onnx.load(str(out / art)).graph
        prod = {o: n for n in g.node for o in n.output}
        inits = {t.name for t in g.initializer}

        def source(t):  # the float tensor behind a DequantizeLinear(QuantizeLinear(t)) or a quantized weight
            dq = prod.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                return None
            q = prod.get(dq.input[0])
            return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]

        bad = [n.name for n in g.node if n.name in head for t in n.input
               if source(t) is not None and (source(t) in inits or getattr(prod.get(source(t)), "name", None) in head)]
        assert not bad, (art, bad)


def test_daemon_labels_unknown_with_the_default_score_model(ood_model, sample_dir, tmp_path):
    """edge-capture on an ONNX export of the default (relative_mahalanobis_l2) model: a tile is `unknown` exactly when the graph's
    score passes the metadata's threshold (the threshold set between the tiles' scores to get both kinds)."""
    import shutil

    from convert.export import keras_to_onnx
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon
    from edge.capture.events import read_events
    from edge.metadata import write_meta
    from edge.runtime.keras.runner import load_keras_model

    meta = read_meta(ood_model)
    onnx_path = keras_to_onnx(load_keras_model(ood_model), tmp_path / "model.onnx", (64, 64, 1))
    frames = tmp_path / "frames"
    frames.mkdir()
    for f in sorted(p for p in sample_dir.rglob("*") if p.suffix.lower() in (".bmp", ".png", ".jpg"))[:2]:
        shutil.copy(f, frames / f.name)

    def run(threshold, name):
        write_meta(onnx_path, {**meta, "format": "onnx", "backend": "onnxruntime",
                               "ood": dict(meta["ood"], threshold=threshold)})
        cfg = CaptureConfig(model=str(onnx_path), source=str(frames), events=str(tmp_path / f"{name}.jsonl"),
                            threshold=0.0, ok_classes=[])
        return CaptureDaemon(cfg).run(), read_events(tmp_path / f"{name}.jsonl")

    _, ev = run(1e30, "all-known")                       # no score reaches it: nothing is unknown
    scores = sorted(e["ood_score"] for e in ev)
    assert len(scores) >= 4 and all(e["label"] != "unknown" for e in ev)
    thr = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    s, ev = run(thr, "split")
    assert all((e["label"] == "unknown") == (e["ood_score"] > thr) for e in ev)
    assert s["unknown"] == sum(e["ood_score"] > thr for e in ev) >= 1
