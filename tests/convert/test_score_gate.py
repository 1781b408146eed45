"""The drift gate of the open-set score (convert/score_gate.py) and the score head kept in float by INT8."""

from __future__ import annotations

import numpy as np
import pytest

from convert import score_gate as SG
from edge.errors import EdgeError

T = 32


def _with_score(path, threshold):
    """The intensity model plus an ``ood_score`` output = -max(probs), and an ood block in its metadata."""
    import onnx
    from onnx import TensorProto, helper

    from edge.metadata import read_meta, write_meta

    m = onnx.load(str(path))
    m.graph.node.extend([helper.make_node("ReduceMax", ["probs"], ["top"], axes=[1], keepdims=1, name="ood_max"),
                         helper.make_node("Neg", ["top"], ["ood_score"], name="ood_neg")])
    m.graph.output.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N", 1]))
    onnx.save(m, str(path))
    write_meta(path, {**read_meta(path), "ood": {"score": "max_softmax", "output": "ood_score",
                                                 "threshold": threshold, "acceptance": 0.9}})
    return path


def _images(n=40, seed=0):
    # grey levels spread over the classes and between them: some tiles confident, some not
    lv = np.random.default_rng(seed).uniform(0, 1, n).astype(np.float32)
    return np.broadcast_to(lv[:, None, None, None], (n, T, T, 1)).copy()


def test_measure_criteria():
    ref = np.linspace(-1, 0, 200)
    same = SG.measure(ref, ref, threshold=-0.1)
    assert same.passed and same.decision_agreement == 100.0 and same.max_abs_diff == 0.0
    assert same.unknown_fp32 == same.unknown_artifact == pytest.approx(100 * np.mean(ref > -0.1))
    shifted = SG.measure(ref, ref + 0.05, threshold=-0.1)          # 10 of 200 decisions flip
    assert not shifted.passed and shifted.decision_agreement == pytest.approx(95.0, abs=0.6)
    assert SG.measure(ref, ref + 0.05, threshold=-0.1, own_threshold=-0.05).decision_agreement == 100.0
    spike = ref.copy()
    spike[0] += 0.9                                               # one far-off score, no decision changed
    one = SG.measure(ref, spike, threshold=-0.01)
    assert one.decision_agreement == 100.0 and not one.passed and "FAILED" in one.summary()
    assert one.as_dict()["passed"] is False and one.as_dict()["max_abs_diff"] == pytest.approx(0.9)
    with pytest.raises(EdgeError, match="same non-empty"):
        SG.measure(ref, ref[:5], 0.0)


def test_gate_passes_a_faithful_artifact_and_fails_a_different_one(tmp_path):
    from convert.quantize import to_fp16
    from scripts.fixtures.intensity_model import make_intensity_model
    from edge.metadata import read_meta, write_meta

    f32 = _with_score(make_intensity_model(tmp_path / "m.onnx", T), threshold=-0.9)
    f16 = to_fp16(f32, tmp_path / "m.fp16.onnx")
    write_meta(f16, read_meta(f32))
    soft = _with_score(make_intensity_model(tmp_path / "soft.onnx", T, sharpness=60.0), threshold=-0.9)
    x = _images()
    res = SG.gate_scores(f32, {str(f16): "all", str(soft): "all"}, x, threshold=-0.9, views=1)
    assert res[str(f16)].passed and res[str(f16)].max_abs_diff < 1e-2
    g = res[str(soft)]                                            # less peaked probabilities: other decisions
    assert not g.passed and g.unknown_artifact > g.unknown_fp32
    # the ood block of the artifacts is rewritten: own threshold from its val scores, FP32's kept, the gate
    from edge.ood import calibrate

    thr = calibrate(SG.ort_scores(f32, x), 0.9)                   # FP32's, calibrated on the same val images
    write_meta(f32, {**read_meta(f32), "ood": {**read_meta(f32)["ood"], "threshold": thr}})
    out = SG.gate_artifacts(f32, [f16], x, views=1)
    meta = read_meta(f16)["ood"]
    assert out[str(f16)].passed and meta["fp32_threshold"] == meta["threshold"] == thr   # passed at FP32's
    assert meta["drift_gate"]["passed"] and "calibrated_with" not in meta
    write_meta(soft, {**read_meta(soft), "onnxruntime": {"graph_optimization_level": "basic"}})
    out = SG.gate_artifacts(f32, [soft], x, views=1)               # fails at FP32's: its own threshold
    meta = read_meta(soft)["ood"]
    assert meta["calibrated_with"] == "soft.onnx" and meta["fp32_threshold"] == thr
    assert meta["threshold"] == pytest.approx(calibrate(SG.ort_scores(soft, x), 0.9))
    assert "at_fp32_threshold" in meta["drift_gate"] and meta["drift_gate"]["own_threshold"] == meta["threshold"]
    # a model without a score: nothing to gate; an artifact without the output: one line
    plain = make_intensity_model(tmp_path / "plain.onnx", T)
    assert SG.gate_artifacts(plain, [f16], x) == {}
    with pytest.raises(EdgeError, match="no 'ood_score' output"):
        SG.gate_scores(f32, {str(plain): "all"}, x, threshold=-0.9)


def test_int8_leaves_the_score_head_in_float(tmp_path):
    from convert.quantize import output_nodes, score_nodes
    from scripts.fixtures.intensity_model import make_intensity_model

    f32 = _with_score(make_intensity_model(tmp_path / "m.onnx", T), threshold=-0.9)
    assert score_nodes(f32) == ["ood_max", "ood_neg"]                # not the softmax the probabilities share
    assert score_nodes(make_intensity_model(tmp_path / "p.onnx", T)) == []
    assert set(output_nodes(f32)) >= {"ood_neg"}


def test_open_set_models_are_calibrated_with_minmax_by_default():
    from convert import ConvertConfig
    from convert.quantize import default_calib_method

    assert default_calib_method({"classes": ["a", "b"]}) == "entropy"
    assert default_calib_method({"ood": {"score": "logit_cosine", "threshold": -0.8}}) == "minmax"
    assert default_calib_method(None) == "entropy"
    assert ConvertConfig(out="o").checked().calib_method is None          # resolved from the model's metadata
    assert ConvertConfig(out="o", calib_method="percentile").checked().calib_method == "percentile"


def test_the_score_is_not_calibrated_so_percentile_ranges_work_for_a_knn_like_score(tmp_path):
    """A knn score on the training images it stores is 1.0 (within float32 steps) for every calibration image:
    onnxruntime's percentile calibrator cannot histogram that range, so the score (float anyway) is skipped."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from calibrate.ranges import collect_ranges_from_batches
    from convert.quantize import score_nodes, score_tensors
    from scripts.fixtures.intensity_model import make_intensity_model

    f32 = make_intensity_model(tmp_path / "m.onnx", T)
    m = onnx.load(str(f32))
    m.graph.initializer.extend([numpy_helper.from_array(np.array(1e-7, np.float32), "tiny"),
                                numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    m.graph.node.extend([helper.make_node("ReduceMax", ["probs"], ["top"], axes=[1], keepdims=1, name="ood_max"),
                         helper.make_node("Mul", ["top", "tiny"], ["small"], name="ood_mul"),
                         helper.make_node("Add", ["small", "one"], ["ood_score"], name="ood_add")])
    m.graph.output.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N", 1]))
    onnx.save(m, str(f32))
    x = _images()
    assert score_tensors(f32) == ["ood_score", "small", "top"] and len(score_nodes(f32)) == 3
    with pytest.raises(ValueError, match="bins"):                      # what edge-convert hit before
        collect_ranges_from_batches(f32, [x], "percentile")
    for method in ("percentile", "entropy", "minmax"):
        rr = collect_ranges_from_batches(f32, [x], method, skip=score_tensors(f32))
        assert "probs" in rr.ranges and not {"ood_score", "small", "top"} & set(rr.ranges), method
