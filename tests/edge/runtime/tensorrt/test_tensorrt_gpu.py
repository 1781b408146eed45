"""The TensorRT runner on a real GPU (``pytest -m gpu`` on a device; skipped with the reason here).

An engine is built from the intensity ONNX of :mod:`scripts.fixtures.intensity_model` (dynamic batch 1-32,
opt 16) and every runner mode is compared with ONNX Runtime on the same batches: cuda-python /
pycuda x CUDA graph x zero-copy x batch 1, 16 and a tail of 7 (the daemon's 16, 16, 4 pattern too),
the double-buffered path, DLA placement where the device has a DLA, and the committed model's
FP16 / INT8 engines against Keras (the engine-vs-Keras regression).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edge.errors import EdgeError

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[4]


def _device_or_skip():
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed (JetPack's python3-libnvinfer, or pip tensorrt on x86)")
    from edge.cuda import gpu_status

    ok, why = gpu_status()
    if not ok:
        pytest.skip(f"needs a usable CUDA GPU ({why})")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _device_or_skip()
    from convert.tensorrt import build_from_onnx
    from scripts.fixtures.intensity_model import make_intensity_model

    d = tmp_path_factory.mktemp("trt")
    onnx = make_intensity_model(d / "model.onnx", size=32)
    eng = build_from_onnx(str(onnx), max_batch=32, timing_cache=str(d / "timing.cache"))
    return onnx, eng


def _batches():
    rng = np.random.default_rng(0)
    return {n: rng.random((n, 32, 32, 1), dtype=np.float32) for n in (1, 4, 7, 16)}


def _ort(onnx, xs):
    from edge.runtime import load_runner

    with load_runner(onnx, backend="onnxruntime", warmup=0) as r:
        return {n: r.infer(x) for n, x in xs.items()}


def test_engine_metadata_and_alias(built):
    from edge.metadata import read_meta

    _, eng = built
    meta = read_meta(eng)
    assert meta["tensorrt"]["profile"] == [1, 16, 32]
    assert (eng.parent / "model.fp32.engine").resolve() == eng.resolve()


@pytest.mark.parametrize("backend", ["cuda-python", "pycuda"])
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("zero_copy", [False, True])
def test_runner_modes_match_onnxruntime(built, backend, graph, zero_copy):
    from edge.cuda import get_backend
    from edge.runtime import load_runner

    onnx, eng = built
    try:
        be = get_backend(backend)
    except EdgeError as e:
        pytest.skip(f"{backend}: {e}")
    if zero_copy and not (be.device_info().integrated and be.device_info().can_map_host_memory):
        pytest.skip("zero-copy needs an integrated GPU (Jetson)")
    xs = _batches()
    ref = _ort(onnx, xs)
    if backend == "pycuda" and graph:
        with pytest.raises(EdgeError, match="needs the cuda-python backend"):
            with load_runner(eng, cuda_backend=backend, cuda_graph=True, zero_copy=zero_copy):
                pass
        return
    with load_runner(eng, cuda_backend=backend, cuda_graph=graph, zero_copy=zero_copy) as r:
        for _ in range(3):                      # the daemon's shapes, repeated: 16, 16, 4, then 1 and 7
            for n in (16, 16, 4, 1, 7):
                np.testing.assert_allclose(r.infer(xs[n]), ref[n], atol=1e-5)
        outs = list(r.infer_batches([xs[16], xs[7], xs[16], xs[1]]))   # the double-buffered path
        for o, n in zip(outs, (16, 7, 16, 1)):
            np.testing.assert_allclose(o, ref[n], atol=1e-5)
        big = np.concatenate([xs[16], xs[16], xs[7]])                   # 39 > max batch 32: pipelined
        np.testing.assert_allclose(r.infer(big), np.concatenate([ref[16], ref[16], ref[7]]), atol=1e-5)


def test_dla_placement_and_core(built, tmp_path):
    import tensorrt as trt

    from convert.tensorrt import build_from_onnx
    from edge.metadata import read_meta
    from edge.runtime import load_runner

    onnx, _ = built
    if trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores == 0:
        pytest.skip("this GPU has no DLA")
    import json
    import shutil

    src = tmp_path / "model.fp16.onnx"
    shutil.copy(onnx, src)
    meta = json.loads(Path(str(onnx) + ".json").read_text())
    meta["precision"] = "fp16"
    Path(str(src) + ".json").write_text(json.dumps(meta))
    eng = build_from_onnx(str(src), dla=0)
    info = read_meta(eng)["tensorrt"]
    assert info["dla_core"] == 0 and info["profile"] == [16, 16, 16]
    assert set(info["dla_placement"]) == {"dla", "gpu"}
    xs = _batches()
    ref = _ort(onnx, xs)
    with load_runner(eng) as r:
        for n in (16, 7):
            np.testing.assert_allclose(r.infer(xs[n]), ref[n], atol=2e-3)   # FP16 on the DLA
    with pytest.raises(EdgeError, match="FP16 or INT8 only"):
        build_from_onnx(str(onnx), dla=0, out_dir=str(tmp_path / "fp32"))


def test_committed_model_engines_vs_keras(tmp_path):
    """The engine-vs-Keras regression on the embedded sample: FP16 max abs diff <= 5e-3, INT8
    top-1 agreement >= 98 %."""
    _device_or_skip()
    pytest.importorskip("keras")
    from convert.tensorrt import build_from_onnx
    from edge.data import load_dataset, load_images
    from edge.runtime import load_runner

    onnx_dir = ROOT / "models" / "neu-compact" / "onnx"
    ds = load_dataset(ROOT / "data" / "neu-sample")
    images = list(load_images(ds.samples))
    with load_runner(ROOT / "models" / "neu-compact" / "model.keras", warmup=0) as k:
        ref = k.infer_images(images)
    for p in ("fp16", "int8"):
        eng = build_from_onnx(str(onnx_dir / f"model.{p}.onnx"), out_dir=str(tmp_path / p))
        with load_runner(eng) as r:
            out = np.concatenate([r.infer_images(images[i:i + 16]) for i in range(0, len(images), 16)])
        if p == "fp16":
            assert float(np.abs(out - ref).max()) <= 5e-3
        else:
            assert float((out.argmax(1) == ref.argmax(1)).mean()) >= 0.98
