"""convert.fold: the preprocessing folded into an ONNX graph (uint8 tiles in) gives what the host
preprocessing gives; the resize matrices are OpenCV's; bad input is refused; edge-convert's flag."""

import numpy as np
import pytest

from convert.fold import (UINT8_TILES, block_of, fold_model, fold_preprocess, host_equivalent, resize_matrix)
from edge.errors import EdgeError
from edge.preprocess import SCALES, Preprocess

SCALES_STEP = {k: abs(a) for k, (a, _) in SCALES.items()}   # one grey level in model input units


def dense_model(path, h, w, c=1, k=4, seed=0):
    """Flatten → MatMul (random weights) → Softmax: every input pixel moves the output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge.metadata import write_meta

    wts = np.random.default_rng(seed).normal(0, 0.05, (h * w * c, k)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    g = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", h, w, c])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", k])],
                          [numpy_helper.from_array(wts, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path, write_meta


@pytest.mark.parametrize("n_in,n_out,interp", [(200, 160, "area"), (50, 32, "area"), (37, 20, "area"),
                                                (40, 64, "linear"), (33, 16, "nearest"), (24, 24, "area")])
def test_resize_matrix_is_opencvs_resize(n_in, n_out, interp):
    import cv2

    x = np.random.default_rng(1).uniform(0, 255, (5, n_in)).astype(np.float32)
    code = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interp]
    want = cv2.resize(x, (n_out, 5), interpolation=code)
    assert np.allclose(x @ resize_matrix(n_in, n_out, interp).T, want, atol=1e-3)


def test_area_200_to_160_is_forty_blocks_of_five_to_four():
    b = block_of(resize_matrix(200, 160, "area"))
    assert b is not None and b.shape == (4, 5)
    assert np.allclose(b.sum(axis=1), 1.0)                      # each output is a weighted mean
    assert block_of(resize_matrix(37, 20, "area")) is None      # gcd 1: no repeated block, dense matrix
    assert block_of(resize_matrix(40, 64, "linear")) is None


@pytest.mark.parametrize("tile,size,scale,channels,interp", [
    (200, 160, "unit", 1, "area"), (37, 20, "symmetric", 3, "area"), (24, 24, "raw", 1, "area"),
    (30, 48, "unit", 1, "linear")])
def test_folded_graph_equals_host_preprocessing(tmp_path, tile, size, scale, channels, interp):
    import onnx
    import onnxruntime as ort

    prep = Preprocess(size, size, channels, scale, interp)
    path, _ = dense_model(tmp_path / "m.onnx", size, size, channels)
    folded, desc = fold_model(onnx.load(str(path)), prep, (tile, tile))
    onnx.checker.check_model(folded)
    assert desc["form"] == UINT8_TILES and desc["tile"] == [tile, tile]
    tiles = np.random.default_rng(2).integers(0, 256, (6, tile, tile), dtype=np.uint8)
    s0 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    s1 = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"])
    assert s1.get_inputs()[0].type == "tensor(uint8)"
    host = prep(tiles)
    # INTER_AREA: OpenCV's float weights, exact; INTER_LINEAR on uint8: OpenCV's 11-bit fixed-point
    # weights, so the folded float weights land within one grey level of it
    level = SCALES_STEP[scale] * (1.0001 if interp == "linear" else 1e-4)
    assert np.abs(host_equivalent(tiles, prep) - host).max() <= level
    p0 = s0.run(None, {"input": host})[0]
    p1 = s1.run(None, {"input": tiles[..., None]})[0]
    assert np.abs(p0 - p1).max() < (1e-5 if interp == "area" else 1e-2) and (p0.argmax(1) == p1.argmax(1)).all()


def test_fold_preprocess_writes_metadata_and_the_runner_takes_uint8_tiles(tmp_path):
    from edge.metadata import input_form, read_meta, write_meta
    from edge.runtime import load_runner

    prep = Preprocess(32, 32, 1, "unit", "area")
    path, write = dense_model(tmp_path / "m.onnx", 32, 32)
    write(path, {"format": "onnx", "backend": "onnxruntime", "precision": "fp32", "classes": list("abcd"),
                 "input": {"name": "input", "shape": [-1, 32, 32, 1], "dtype": "float32", "layout": "NHWC"},
                 "output": {"name": "probs", "shape": [-1, 4]}, "preprocess": prep.to_dict()})
    dst = tmp_path / "m.u8.onnx"
    meta = fold_preprocess(path, dst, (40, 40))
    assert input_form(read_meta(dst)) == ("uint8_tiles", (40, 40)) and meta["input"]["dtype"] == "uint8"
    assert read_meta(path).get("input", {}).get("form") is None            # the source is untouched
    tiles = np.random.default_rng(3).integers(0, 256, (5, 40, 40), dtype=np.uint8)
    with load_runner(path) as rf, load_runner(dst) as ru:
        assert ru.input_form == "uint8_tiles" and ru.input_shape == (40, 40, 1) and rf.input_shape == (32, 32, 1)
        want = rf.infer_images(tiles)
        assert np.abs(ru.infer_images(tiles) - want).max() < 1e-5          # host packs, the graph preprocesses
        assert np.abs(ru.infer(tiles[..., None]) - want).max() < 1e-5
        assert np.abs(ru.infer_images(list(tiles)) - want).max() < 1e-5
        with pytest.raises(EdgeError, match="takes uint8 tiles"):
            ru.infer(rf.preprocess(tiles))
        with pytest.raises(EdgeError, match=r"takes \(N, 40, 40, 1\)"):
            ru.infer(np.zeros((2, 32, 32, 1), np.uint8))
        big = np.random.default_rng(4).integers(0, 256, (2, 80, 80), dtype=np.uint8)   # other sizes: resized first
        assert ru.infer_images(big).shape == (2, 4)
    with pytest.raises(EdgeError, match="already takes uint8 tiles"):
        fold_preprocess(dst, tmp_path / "again.onnx", (40, 40))
    with pytest.raises(EdgeError, match="tile size must be positive"):
        fold_preprocess(path, tmp_path / "bad.onnx", (0, 40))
    meta = read_meta(dst)
    meta["input"]["tile"] = "big"
    write_meta(dst, meta)
    with pytest.raises(EdgeError, match="needs \"tile\""):
        load_runner(dst)


def test_fold_refuses_a_model_whose_input_is_not_the_preprocessing(tmp_path):
    import onnx

    path, _ = dense_model(tmp_path / "m.onnx", 32, 32)
    with pytest.raises(EdgeError, match="the preprocessing makes"):
        fold_model(onnx.load(str(path)), Preprocess(64, 64), (80, 80))


def test_edge_convert_refuses_a_negative_tile_size(tmp_path):
    from convert.cli import main

    assert main([str(tmp_path / "m.keras"), "-o", str(tmp_path / "o"), "--uint8-tiles", "-5"]) == 2
    assert not (tmp_path / "o").exists()


def test_edge_convert_folds_the_deployable_artifacts_by_default(tiny_model, sample_dir, tmp_path):
    """auto: tiles of the calibration images' size; the FP32 reference stays float; 0 turns it off."""
    from convert.cli import main
    from edge.data import load_images, select
    from edge.metadata import input_form, read_meta

    out = tmp_path / "o"
    assert main([str(tiny_model), "--fp16", "--calib-data", str(sample_dir), "-o", str(out)]) == 0
    size = load_images(select(sample_dir, "val", split_file=tiny_model.parent / "split.csv")).shape[1:3]
    assert input_form(read_meta(out / "model.onnx")) == ("float", None)
    m16 = read_meta(out / "model.fp16.onnx")
    assert input_form(m16) == ("uint8_tiles", tuple(size))
    chk = m16["checks"]["fold_vs_host"]
    assert chk["top1_agreement"] == 1.0 and chk["max_abs_diff"] < 1e-3 and "val images" in chk["images_from"]
    off = tmp_path / "off"
    assert main([str(tiny_model), "--fp16", "--calib-data", str(sample_dir), "--uint8-tiles", "0", "-o", str(off)]) == 0
    assert input_form(read_meta(off / "model.fp16.onnx")) == ("float", None)
    assert main([str(tiny_model), "--fp16", "--uint8-tiles", "big", "-o", str(tmp_path / "bad")]) == 2
