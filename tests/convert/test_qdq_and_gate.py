"""Q/DQ structure TensorRT accepts, and the drift gate on a model built to need it."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from calibrate.ranges import collect_ranges_from_batches  # noqa: E402
from convert.export import ort_predict, ort_session  # noqa: E402
from convert.gate import flip_views, rank_sensitive_nodes, run_gate  # noqa: E402
from convert.quantize import qdq_summary, stem_nodes, to_cpu_int8, to_qdq_int8, with_float_inputs  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from edge.metrics import accuracy  # noqa: E402


def _conv_gemm_model(path, rng):
    """NHWC input → Transpose → Conv(+bias) → Relu → Conv → Relu → GAP → Flatten → Gemm → MatMul → Softmax."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8, 8, 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (6, 4, 3, 3)).astype(np.float32), "w2")
    wg = numpy_helper.from_array(rng.normal(0, 0.5, (5, 6)).astype(np.float32), "wg")  # Gemm transB=1: (N_out, K)
    bg = numpy_helper.from_array(np.zeros(5, np.float32), "bg")
    wm = numpy_helper.from_array(rng.normal(0, 0.5, (5, 3)).astype(np.float32), "wm")
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["g"], transB=1, name="gemm"),
        helper.make_node("MatMul", ["g", "wm"], ["logits"], name="matmul"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax"),
    ]
    g = helper.make_graph(nodes, "t", [x], [y], [w1, b1, w2, wg, bg, wm])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("qdq")
    f32 = _conv_gemm_model(d / "model.onnx", rng)
    x = rng.uniform(0, 1, (48, 8, 8, 1)).astype(np.float32)
    rr = collect_ranges_from_batches(f32, [x[i:i + 16] for i in range(0, 48, 16)], "minmax")
    return d, f32, x, rr


def test_qdq_structure_is_what_tensorrt_builds(small):
    d, f32, x, rr = small
    q = to_qdq_int8(f32, d / "model.int8.onnx", "minmax", rr.ranges, float_stem=False)
    s = qdq_summary(q)
    # every weighted layer quantized, zero points all 0 and int8 (symmetric)
    assert set(s["quantized_nodes"]) == {"conv1", "conv2", "gemm", "matmul"} and not s["float_nodes"]
    assert s["zero_points_nonzero"] == [] and s["activation_dtypes"] == {"int8"}
    # per-channel weights along the output channels
    assert s["weights"]["conv1"] == {"per_channel": True, "axis": 0, "dtype": "int8", "channels": 4}
    assert s["weights"]["conv2"] == {"per_channel": True, "axis": 0, "dtype": "int8", "channels": 6}
    assert s["weights"]["gemm"]["per_channel"] and s["weights"]["gemm"]["axis"] == 0 and s["weights"]["gemm"]["channels"] == 5
    assert s["weights"]["matmul"]["per_channel"] and s["weights"]["matmul"]["axis"] == 1 and s["weights"]["matmul"]["channels"] == 3
    g = onnx.load(str(q)).graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    # weights: float initializer → QuantizeLinear → DequantizeLinear (the form TensorRT 8.5 imports)
    for conv in (n for n in g.node if n.op_type == "Conv"):
        dq = producer[conv.input[1]]
        qn = producer[dq.input[0]]
        assert dq.op_type == "DequantizeLinear" and qn.op_type == "QuantizeLinear" and qn.input[0] in inits
        # activations of the conv input also pass a Q/DQ pair
        assert producer[conv.input[0]].op_type == "DequantizeLinear"
    # bias stays float (no DequantizeLinear in front of it)
    conv1 = next(n for n in g.node if n.name == "conv1")
    assert conv1.input[2] == "b1" and conv1.input[2] in inits
    # Q/DQ on activations is per tensor (scalar scale)
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            scale = next(i for i in g.initializer if i.name == n.input[1])
            assert numpy_helper.to_array(scale).size == 1
    ref = ort_predict(ort_session(f32), x)
    got = ort_predict(ort_session(q, level="basic"), x)
    assert np.abs(ref - got).max() < 0.05


def test_qdq_default_leaves_only_the_stem_in_float(small):
    """The default Q/DQ model (float_stem): the convolution reading the image (conv1) keeps its float
    weights and takes the float image, no DequantizeLinear in front; every other weighted layer is
    quantized exactly as with float_stem=False, and the same stem_nodes() decides it as for CPU int8."""
    d, f32, x, rr = small
    q = to_qdq_int8(f32, d / "stem.int8.onnx", "minmax", rr.ranges)
    full = to_qdq_int8(f32, d / "full.int8.onnx", "minmax", rr.ranges, float_stem=False)
    s, s_full = qdq_summary(q), qdq_summary(full)
    assert stem_nodes(f32) == ["conv1"]
    assert s["float_nodes"] == ["conv1"] and set(s["quantized_nodes"]) == {"conv2", "gemm", "matmul"}
    assert set(s_full["quantized_nodes"]) == {"conv1", "conv2", "gemm", "matmul"}
    assert {k: v for k, v in s_full["weights"].items() if k != "conv1"} == s["weights"]
    assert s["zero_points_nonzero"] == [] and s["activation_dtypes"] == {"int8"}
    g = onnx.load(str(q)).graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    conv1 = next(n for n in g.node if n.name == "conv1")
    assert conv1.input[1] in inits and inits[conv1.input[1]].data_type == TensorProto.FLOAT   # float weights
    src_w1 = next(i for i in onnx.load(str(f32)).graph.initializer if i.name == "w1")
    np.testing.assert_array_equal(numpy_helper.to_array(inits[conv1.input[1]]), numpy_helper.to_array(src_w1))
    assert producer[conv1.input[0]].op_type == "Transpose"            # the float image, not Q/DQ-rounded
    conv2 = next(n for n in g.node if n.name == "conv2")
    assert producer[conv2.input[0]].op_type == "DequantizeLinear" and producer[conv2.input[1]].op_type == "DequantizeLinear"
    ref = ort_predict(ort_session(f32), x)
    got = ort_predict(ort_session(q, level="basic"), x)
    assert np.abs(ref - got).max() < 0.05
    # the gate's exclusions add to the stem, they do not replace it
    ex = qdq_summary(to_qdq_int8(f32, d / "stem_ex.onnx", "minmax", rr.ranges, exclude=["matmul"]))
    assert set(ex["float_nodes"]) == {"conv1", "matmul"} and set(ex["quantized_nodes"]) == {"conv2", "gemm"}


def test_excluded_nodes_stay_float(small):
    d, f32, x, rr = small
    q = to_qdq_int8(f32, d / "ex.onnx", "minmax", rr.ranges, exclude=["conv2", "matmul"], float_stem=False)
    s = qdq_summary(q)
    assert set(s["float_nodes"]) == {"conv2", "matmul"} and set(s["quantized_nodes"]) == {"conv1", "gemm"}


def test_cpu_int8_keeps_probabilities_float(small):
    d, f32, x, rr = small
    c = to_cpu_int8(f32, d / "cpu.onnx", "minmax", rr.ranges)
    g = onnx.load(str(c)).graph
    producer = {o: n for n in g.node for o in n.output}
    assert producer["probs"].op_type == "Softmax"
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in g.node)
    ref = ort_predict(ort_session(f32), x)
    assert np.abs(ort_predict(ort_session(c), x) - ref).max() < 0.1


def test_domains_clamp_non_negative_tensors(small):
    """Relu outputs and what pools/reshapes them are [0, hi]; the input only when its range says so."""
    from convert.quantize import clamp_activation_ranges

    _, f32, _, rr = small
    assert rr.ranges["gap"][0] < 0 and rr.ranges["input"][0] < 0    # symmetric minmax: (-a, a)
    unknown = clamp_activation_ranges(f32, rr.ranges)
    assert unknown["r1"] == [0.0, rr.ranges["r1"][1]] and unknown["gap"][0] == 0.0 and unknown["flat"][0] == 0.0
    assert unknown["input"][0] < 0 and unknown["nchw"][0] < 0      # no input range: nothing assumed
    assert unknown["g"] == list(rr.ranges["g"])                     # a Gemm output can be negative
    unit = clamp_activation_ranges(f32, rr.ranges, input_range=(0.0, 1.0))
    assert unit["input"] == [0.0, rr.ranges["input"][1]] and unit["nchw"][0] == 0.0
    signed = clamp_activation_ranges(f32, rr.ranges, input_range=(-1.0, 1.0))
    assert signed["input"][0] < 0


def test_with_float_inputs_walks_back_to_the_previous_weighted_layer(small):
    _, f32, _, _ = small
    assert with_float_inputs(f32, ["conv2"]) == ["conv2", "relu1", "conv1"]
    assert with_float_inputs(f32, ["gemm"]) == ["gemm", "flat", "gap", "relu2", "conv2"]
    assert with_float_inputs(f32, ["conv1"]) == ["conv1", "to_nchw"]      # then the graph input: stop
    assert with_float_inputs(f32, []) == []


def _zero_points(path):
    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    return {n.input[0]: inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_cpu_int8_gives_non_negative_activations_all_eight_bits(small):
    d, f32, x, rr = small
    # all-int8 variant: the stem (conv1) input is quantized too (the default leaves the stem in float)
    zp = _zero_points(to_cpu_int8(f32, d / "cpu-unit.onnx", "minmax", rr.ranges, input_range=(0.0, 1.0),
                                  variant="qdq-u8s8-pc"))
    assert zp["nchw"] == 0 and zp["gap"] == 0 and zp["flat"] == 0   # the conv1 input, the pooled features
    assert zp["g"] == 128                                              # a Gemm output keeps its sign
    zp_unknown = _zero_points(to_cpu_int8(f32, d / "cpu-unk.onnx", "minmax", rr.ranges, variant="qdq-u8s8-pc"))
    assert zp_unknown["nchw"] == 128 and zp_unknown["gap"] == 0


def test_cpu_int8_u8u8_weights_are_uint8_full_range(small):
    """qdq-u8u8-pc: uint8 weights with zero point 128 per channel, 8 bits (no reduce_range), close to FP32."""
    d, f32, x, rr = small
    c = to_cpu_int8(f32, d / "u8u8.onnx", "minmax", rr.ranges, variant="qdq-u8u8-pc", input_range=(0.0, 1.0))
    g = onnx.load(str(c)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    w1q = next(a for n, a in inits.items() if n.startswith("w1") and a.dtype == np.uint8 and a.ndim == 4)
    zps = [a for n, a in inits.items() if n.startswith("w1") and "zero_point" in n]
    assert zps and np.all(zps[0] == 128) and zps[0].size == 4          # per output channel
    assert w1q.max() - w1q.min() > 128                                  # uses more than 7 bits
    ref = ort_predict(ort_session(f32), x)
    assert np.abs(ort_predict(ort_session(c), x) - ref).max() < 0.1
    with pytest.raises(EdgeError, match="unknown CPU int8 variant"):
        to_cpu_int8(f32, d / "bad.onnx", "minmax", rr.ranges, variant="qdq-u4u4")


def test_cpu_int8_float_stem_leaves_only_the_input_convolution_in_float(small):
    """qdq-u8s8-pc-fs: the weighted layer fed by the graph input (conv1) is float, the rest as qdq-u8s8-pc."""
    d, f32, x, rr = small
    fs = to_cpu_int8(f32, d / "fs.onnx", "minmax", rr.ranges, variant="qdq-u8s8-pc-fs", input_range=(0.0, 1.0))
    pc = to_cpu_int8(f32, d / "pc.onnx", "minmax", rr.ranges, variant="qdq-u8s8-pc", input_range=(0.0, 1.0))
    s_fs, s_pc = qdq_summary(fs), qdq_summary(pc)
    assert "conv1" in s_fs["float_nodes"] and "conv1" in s_pc["quantized_nodes"]
    assert set(s_fs["quantized_nodes"]) == set(s_pc["quantized_nodes"]) - {"conv1"}
    g = onnx.load(str(fs)).graph
    producer = {o: n for n in g.node for o in n.output}
    conv1 = next(n for n in g.node if n.name == "conv1")
    assert producer[conv1.input[0]].op_type != "DequantizeLinear"     # its input is the float image, not Q/DQ-rounded
    ref = ort_predict(ort_session(f32), x)
    assert np.abs(ort_predict(ort_session(fs), x) - ref).max() < 0.1


# ----------------------------------------------------------------------------- drift gate
# The gate's mechanics on toy graphs whose first layer is only a "stem" by position: every layer
# quantized (float_stem=False), so that each is a candidate.

def _outlier_model(path, rng, k=4):
    """A classifier where one activation has an outlier channel that ruins per-tensor int8.

    h = x @ A, where A's column 0 is huge (h[:, 0] ~ 1e4) and the rest ~1; logits = h @ B with B's
    row 0 zero. FP32 ignores h[:, 0]; with int8 h, the step is ~1e4/127, so every other channel
    rounds to 0 and the prediction collapses. Leaving the node that consumes h in float fixes it.
    """
    d_in, d_h = 16, 12
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", d_in])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", k])
    a = rng.normal(0, 0.5, (d_in, d_h)).astype(np.float32)
    a[:, 0] = 1e4
    b = rng.normal(0, 1.0, (d_h, k)).astype(np.float32)
    b[0] = 0
    c = rng.normal(0, 0.5, (k, k)).astype(np.float32) + np.eye(k, dtype=np.float32) * 3
    nodes = [helper.make_node("MatMul", ["input", "A"], ["h"], name="mm_a"),
             helper.make_node("MatMul", ["h", "B"], ["z"], name="mm_b"),
             helper.make_node("MatMul", ["z", "C"], ["logits"], name="mm_c"),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax")]
    inits = [numpy_helper.from_array(a, "A"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C")]
    m = helper.make_model(helper.make_graph(nodes, "outlier", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    rng = np.random.default_rng(1)
    d = tmp_path_factory.mktemp("gate")
    f32 = _outlier_model(d / "model.onnx", rng)
    x_cal = rng.uniform(0, 1, (64, 16)).astype(np.float32)
    x_val = rng.uniform(0, 1, (96, 16)).astype(np.float32)
    y_val = ort_predict(ort_session(f32), x_val).argmax(1)  # FP32 is 100% right by construction
    rr = collect_ranges_from_batches(f32, [x_cal[:32], x_cal[32:]], "minmax")
    return d, f32, x_val, y_val, rr


def test_sensitivity_ranking_finds_the_outlier_tensor(outlier):
    d, f32, x_val, y_val, rr = outlier
    q = to_qdq_int8(f32, d / "rank.onnx", "minmax", rr.ranges, float_stem=False)
    ranking = rank_sensitive_nodes(f32, q, x_val[:32])
    assert ranking[0]["node"] == "mm_b"  # the node whose int8 input lost the small channels
    assert ranking[0]["loss_db"] > max(r["loss_db"] for r in ranking[1:]) + 10
    assert {r["node"] for r in ranking} == {"mm_a", "mm_b", "mm_c"}


def test_gate_excludes_layers_and_remeasures(outlier):
    d, f32, x_val, y_val, rr = outlier
    q = to_qdq_int8(f32, d / "model.int8.onnx", "minmax", rr.ranges, float_stem=False)
    assert accuracy(y_val, ort_predict(ort_session(q, level="basic"), x_val)) < 0.8  # really broken
    calls = []

    def requant(exclude, dst):
        calls.append(list(exclude))
        return to_qdq_int8(f32, dst, "minmax", rr.ranges, exclude=exclude, float_stem=False)

    res = run_gate(f32, q, requant, x_val, y_val, max_drift_pp=2.0, min_agreement=0.0, views=1)
    assert res.drift_before_pp > 20
    assert res.passed and res.drift_after_pp <= 2.0
    assert "mm_b" in res.excluded and len(res.steps) == len(calls) + 1 >= 2
    assert calls[-1] == res.excluded
    # the final file on disk is the re-quantized one, with the excluded node in float
    assert "mm_b" in qdq_summary(q)["float_nodes"]
    meas = accuracy(y_val, ort_predict(ort_session(q, level="basic"), x_val))
    assert abs((1.0 - meas) * 100 - res.drift_after_pp) < 1e-3  # drift is rounded to 3 decimals
    rep = res.as_dict()
    assert rep["drift_before_pp"] > rep["drift_after_pp"] and rep["excluded_nodes"] == res.excluded


def test_gate_on_the_cpu_int8_model_at_level_all(outlier):
    """The same gate judges the CPU int8 model (uint8 activations) as onnxruntime runs it."""
    d, f32, x_val, y_val, rr = outlier
    # the all-int8 variant: with the default (stem in float) mm_a, fed by the input, would be float already
    pc = "qdq-u8s8-pc"
    c = to_cpu_int8(f32, d / "model.int8cpu.onnx", "minmax", rr.ranges, variant=pc)
    assert accuracy(y_val, ort_predict(ort_session(c), x_val)) < 0.8  # the outlier breaks it too
    # in the CPU format mm_a quantizes its output h, so mm_b alone in float still gets a rounded h
    alone = to_cpu_int8(f32, d / "alone.onnx", "minmax", rr.ranges, exclude=["mm_b"], variant=pc)
    assert accuracy(y_val, ort_predict(ort_session(alone), x_val)) < 0.8
    assert with_float_inputs(f32, ["mm_b"]) == ["mm_b", "mm_a"] and with_float_inputs(f32, ["mm_a"]) == ["mm_a"]
    res = run_gate(f32, c, lambda e, p: to_cpu_int8(f32, p, "minmax", rr.ranges, exclude=with_float_inputs(f32, e), variant=pc),
                   x_val, y_val, max_drift_pp=2.0, min_agreement=0.0, views=1, level="all",
                   name="CPU int8 gate")
    assert res.drift_before_pp > 20 and res.passed and res.drift_after_pp <= 2.0
    assert res.excluded == ["mm_b"] and res.as_dict()["ort_graph_optimization_level"] == "all"
    meas = accuracy(y_val, ort_predict(ort_session(c), x_val))
    assert abs((1.0 - meas) * 100 - res.drift_after_pp) < 1e-3


def test_gate_within_budget_does_nothing(small):
    d, f32, x, rr = small
    q = to_qdq_int8(f32, d / "ok.onnx", "minmax", rr.ranges, float_stem=False)
    y = ort_predict(ort_session(f32), x).argmax(1)
    res = run_gate(f32, q, lambda e, p: pytest.fail("re-quantized without need"), x, y, max_drift_pp=50,
                   min_agreement=0.0, views=1)
    assert res.passed and res.excluded == [] and len(res.steps) == 1


def test_gate_reports_failure_when_budget_unreachable(outlier):
    d, f32, x_val, y_val, rr = outlier
    q = to_qdq_int8(f32, d / "fail.onnx", "minmax", rr.ranges, float_stem=False)
    res = run_gate(f32, q, lambda e, p: to_qdq_int8(f32, p, "minmax", rr.ranges, exclude=e, float_stem=False), x_val, y_val,
                   max_drift_pp=0.0, max_rounds=0, min_agreement=0.0, views=1)
    assert not res.passed and res.drift_after_pp > 0 and res.excluded == []


# ----------------------------------------------------------------------------- fp16 tolerance

def _fp16_fragile_model(path):
    """logits_k = x * (w_k - 1000) computed as [x, x] @ [[w_k], [-1000]] with w_k = 1000.65, 1001.85,
    1001.05: in FP16 (step 0.5 at 1000) the weights round to 1000.5, 1002, 1001, so the logits
    change by up to 0.15 * x; in FP32 the cancellation is exact."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])
    dup = numpy_helper.from_array(np.ones((1, 2), np.float32), "D")
    w = numpy_helper.from_array(np.array([[1000.65, 1001.85, 1001.05], [-1000, -1000, -1000]], np.float32) * 1.0, "W")
    nodes = [helper.make_node("MatMul", ["input", "D"], ["u"], name="mm_dup"),
             helper.make_node("MatMul", ["u", "W"], ["z"], name="mm_w"),
             helper.make_node("Mul", ["z", "ten"], ["logits"], name="scale"),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax")]
    ten = numpy_helper.from_array(np.array(10.0, np.float32), "ten")
    m = helper.make_model(helper.make_graph(nodes, "fragile", [x], [y], [dup, w, ten]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(m, str(path))
    return path


def test_fp16_keeps_the_damaged_node_in_fp32(tmp_path):
    from convert.quantize import fp16_with_tolerance, to_fp16

    f32 = _fp16_fragile_model(tmp_path / "model.onnx")
    x = np.linspace(0.1, 1.0, 32, dtype=np.float32)[:, None]
    ref = ort_predict(ort_session(f32), x)
    plain = ort_predict(ort_session(to_fp16(f32, tmp_path / "plain.onnx")), x)
    assert np.abs(plain - ref).max() > 5e-3  # FP16 really breaks it
    res = fp16_with_tolerance(f32, tmp_path / "model.fp16.onnx", x, tolerance=5e-3)
    assert res["kept_fp32"] == ["mm_w"] and res["passed"]
    assert res["max_abs_diff_before"] > 5e-3 >= res["max_abs_diff"]
    got = ort_predict(ort_session(tmp_path / "model.fp16.onnx"), x)
    assert abs(np.abs(got - ref).max() - res["max_abs_diff"]) < 1e-7
    g = onnx.load(str(tmp_path / "model.fp16.onnx")).graph
    assert any(i.data_type == TensorProto.FLOAT16 for i in g.initializer)  # the rest is FP16


def test_gate_never_leaves_more_than_the_allowed_fraction_in_float(outlier):
    d, f32, x_val, y_val, rr = outlier
    q = to_qdq_int8(f32, d / "cap.onnx", "minmax", rr.ranges, float_stem=False)
    # budget -1 pp can never be met: the gate must stop at the cap (1 of 3 nodes), not float everything
    res = run_gate(f32, q, lambda e, p: to_qdq_int8(f32, p, "minmax", rr.ranges, exclude=e, float_stem=False), x_val, y_val,
                   max_drift_pp=-1.0, max_float_frac=0.5, min_agreement=0.0, views=1)
    assert not res.passed and res.total_weighted == 3 and len(res.excluded) == 1
    assert len(qdq_summary(q)["quantized_nodes"]) == 2
    res0 = run_gate(f32, to_qdq_int8(f32, d / "cap0.onnx", "minmax", rr.ranges, float_stem=False), lambda e, p: pytest.fail("no room"),
                    x_val, y_val, max_drift_pp=2.0, max_float_frac=0.0, min_agreement=0.0, views=1)
    assert not res0.passed and res0.excluded == []


def test_gate_acts_on_agreement_when_accuracy_is_within_budget(outlier):
    """A drift budget that always holds (100 pp) does not let a model through whose top-1 answers
    differ from FP32's: the agreement criterion alone makes the gate exclude the culprit."""
    d, f32, x_val, y_val, rr = outlier
    q = to_qdq_int8(f32, d / "agree.onnx", "minmax", rr.ranges, float_stem=False)
    res = run_gate(f32, q, lambda e, p: to_qdq_int8(f32, p, "minmax", rr.ranges, exclude=e, float_stem=False), x_val, y_val,
                   max_drift_pp=100.0, min_agreement=95.0, views=1)
    assert res.agreement_before < 95.0 <= res.agreement_after
    assert res.passed and "mm_b" in res.excluded
    top32 = ort_predict(ort_session(f32), x_val).argmax(1)
    top8 = ort_predict(ort_session(q, level="basic"), x_val).argmax(1)
    assert abs(np.mean(top8 == top32) * 100 - res.agreement_after) < 1e-3
    rep = res.as_dict()
    assert rep["min_agreement_pct"] == 95.0 and rep["predictions"] == len(x_val)
    off = run_gate(f32, to_qdq_int8(f32, d / "agree0.onnx", "minmax", rr.ranges, float_stem=False), lambda e, p: pytest.fail("off"),
                   x_val, y_val, max_drift_pp=100.0, min_agreement=0.0, views=1)
    assert off.passed and off.excluded == []


def test_flip_views_order_and_labels():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    v = flip_views(x, 4)
    assert v.shape == (8, 3, 4, 1) and v.flags.c_contiguous
    np.testing.assert_array_equal(v[:2], x)
    np.testing.assert_array_equal(v[2:4], x[:, :, ::-1])      # horizontal
    np.testing.assert_array_equal(v[4:6], x[:, ::-1])         # vertical
    np.testing.assert_array_equal(v[6:], x[:, ::-1, ::-1])    # both
    assert flip_views(x, 1).shape == x.shape and flip_views(x, 2).shape == (4, 3, 4, 1)
    with pytest.raises(EdgeError, match="1, 2 or 4"):
        flip_views(x, 3)
    with pytest.raises(EdgeError, match="NHWC"):
        flip_views(np.zeros((2, 16), np.float32), 4)


def test_fp16_always_tries_the_node_fed_by_the_input(tmp_path):
    """The first weighted node is a candidate even when its weights survive FP16 best."""

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])
    w = [numpy_helper.from_array(np.eye(2, dtype=np.float32), f"W{i}") for i in range(3)]
    nodes = [helper.make_node("Transpose", ["input"], ["t"], perm=[0, 1], name="tr"),
             helper.make_node("MatMul", ["t", "W0"], ["a"], name="first"),
             helper.make_node("MatMul", ["a", "W1"], ["b"], name="second"),
             helper.make_node("MatMul", ["b", "W2"], ["c"], name="third"),
             helper.make_node("Softmax", ["c"], ["probs"], axis=1, name="softmax")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], w), opset_imports=[helper.make_opsetid("", 17)],
                          ir_version=8)
    onnx.save(m, str(tmp_path / "m.onnx"))
    assert stem_nodes(tmp_path / "m.onnx") == ["first"]
