"""scripts/cpu_int8_speed.py and scripts/cpu_int8_parity.py on a tiny convolutional model, CPU int8 in
both variants (all-int8 and float stem), folded to take uint8 200 px tiles."""

import json
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def _tiny_cnn(path, rng):
    """NHWC (N, 16, 16, 1) → Transpose → Conv 1→4 (3x3, stride 2) → Relu → Conv 4→8 → Relu → GAP → MatMul → Softmax."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16, 16, 1])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 6])
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.5, (8, 6)).astype(np.float32), "wm"),
             numpy_helper.from_array(np.array([-1, 8], np.int64), "flat_shape")]
    nodes = [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
             helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="stem"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
             helper.make_node("Reshape", ["gap", "flat_shape"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "wm"], ["logits"], name="matmul"),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax")]
    m = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """{variant: folder} with model.onnx (FP32, float input) and model.int8cpu.onnx (uint8 200 px tiles in)."""
    from calibrate.ranges import collect_ranges_from_batches
    from convert.fold import fold_preprocess
    from convert.quantize import to_cpu_int8
    from edge.metadata import write_meta
    from edge.preprocess import Preprocess

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("cpu-int8")
    base = {"format": "onnx", "backend": "onnxruntime", "classes": CLASSES,
            "preprocess": Preprocess(16, 16, 1, "unit").to_dict()}
    f32 = _tiny_cnn(root / "model.onnx", rng)
    write_meta(f32, {**base, "precision": "fp32"})
    x = rng.uniform(0, 1, (32, 16, 16, 1)).astype(np.float32)
    rr = collect_ranges_from_batches(f32, [x[:16], x[16:]], "minmax")
    out = {}
    for variant in ("qdq-u8s8-pc", "qdq-u8s8-pc-fs"):
        d = root / variant
        d.mkdir()
        shutil.copy(f32, d / "model.onnx")
        shutil.copy(str(f32) + ".json", str(d / "model.onnx") + ".json")
        art = to_cpu_int8(f32, d / "model.int8cpu.onnx", "minmax", rr.ranges, variant=variant, input_range=(0.0, 1.0))
        write_meta(art, {**base, "precision": "int8-cpu", "quantization": {"variant": variant}})
        fold_preprocess(art, art, (200, 200))
        out[variant] = d
    return out


def test_speed_ab_profile_and_conv_rates(tmp_path, artifacts):
    from scripts.cpu_int8_speed import conv_macs, main, tile_batches

    frames = np.random.default_rng(1).integers(0, 256, (3, 200, 400), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    batches = tile_batches(str(tmp_path / "frames.npy"), 200, 4, 3)
    assert [b.shape for b in batches] == [(4, 200, 200, 1), (2, 200, 200, 1)]
    assert np.array_equal(batches[0][1, ..., 0], frames[0, :, 200:400])    # row-major tile order
    macs = conv_macs(str(artifacts["qdq-u8s8-pc"] / "model.onnx"))
    assert macs == {"stem": 4 * 1 * 9 * 8 * 8, "conv2": 8 * 4 * 9 * 8 * 8}

    out = tmp_path / "speed.json"
    assert main(["--uint8", str(artifacts["qdq-u8s8-pc"] / "model.int8cpu.onnx"),
                 "--float-stem", str(artifacts["qdq-u8s8-pc-fs"] / "model.int8cpu.onnx"),
                 "--frames", str(tmp_path / "frames.npy"), "--batch", "4", "--rounds", "2", "--profile-runs", "3",
                 "-o", str(out), "--md", str(tmp_path / "speed.md")]) == 0
    res = json.loads(out.read_text())
    cases = res["cases"]
    assert list(cases) == ["intra-op", "split", "split + float stem"]
    assert cases["intra-op"]["parts"] == 1
    assert cases["split"]["max_abs_diff_vs_first"] == 0.0                  # the split changes no output
    assert all(len(c["tiles_per_s"]) == 2 and min(c["cpu_ms_per_tile"]) >= 0 for c in cases.values())
    ops = {label: {n["op"] for n in p["nodes"].values()} for label, p in res["profiles"].items()}
    assert "QLinearConv" in ops["int8 stem"] and "Conv" in ops["float stem"]   # the stem really is float there
    rates = {r["node"].split("_token")[0].split(":")[0]: r for r in res["conv_rates"]["int8 stem"]}
    assert rates and all(r["gmac_per_s"] > 0 for r in rates.values())
    assert res["kernel_peak"]["gmac_per_s"] > 0
    assert set(res["levels_ms_per_batch"]["float stem"]) == {"all", "extended", "basic"}
    md = (tmp_path / "speed.md").read_text()
    assert "| split |" in md and "GMAC/s" in md and "practical ceiling" in md


def test_parity_against_fp32_and_between_forms(tmp_path, artifacts, sample_dir):
    from scripts.cpu_int8_parity import main

    out = tmp_path / "parity.json"
    arts = [str(artifacts[v] / "model.int8cpu.onnx") for v in ("qdq-u8s8-pc", "qdq-u8s8-pc-fs")]
    assert main(arts + ["--data", str(sample_dir), "--splits", "val", "-o", str(out), "--md", str(tmp_path / "p.md")]) == 0
    res = json.loads(out.read_text())
    val = res["splits"]["val"]
    assert val["images"] > 0
    first, fs = (val["artifacts"][a] for a in arts)
    assert first["split_vs_intra_op_max_abs_diff"] == 0.0 and fs["split_vs_intra_op_max_abs_diff"] == 0.0
    assert first["agreement_first_pct"] == 100.0 and first["max_abs_diff_first"] == 0.0
    for r in (first, fs):
        assert 0.0 <= r["agreement_fp32_pct"] <= 100.0 and r["max_abs_diff_fp32"] < 0.5
    assert res["artifacts"][arts[1]]["variant"] == "qdq-u8s8-pc-fs"
    md = (tmp_path / "p.md").read_text()
    assert md.count("| val |") == 2 and "(qdq-u8s8-pc-fs)" in md and "identical" in md
