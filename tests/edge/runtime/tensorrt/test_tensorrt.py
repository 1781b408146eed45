"""TensorRT runtime code paths that run without a GPU.

A stand-in ``tensorrt`` module and a stand-in CUDA backend (host memory + memmove) are used ONLY
to test our own code: version branching, spec handling, buffer sizing, the order of the
double-buffered pipeline. They are no evidence that TensorRT or CUDA work; the real-GPU memory
tests are in tests/edge/cuda.
"""

from __future__ import annotations

import ctypes
import json
import types

import numpy as np
import pytest

from edge.cuda.base import CudaBackend, CudaGraph, DeviceBuffer, DeviceInfo, Event, PinnedBuffer, Stream, host_array
from edge.errors import EdgeError
from edge.runtime.tensorrt import buffers as bm
from edge.runtime.tensorrt import compat
from edge.runtime.tensorrt.loader import check_engine_compat

H = W = 8
K = 3
PROFILE = ((1, H, W, 1), (4, H, W, 1), (4, H, W, 1))


def _nptype_of_trt_8_5(d):
    """What TensorRT 8.5.1/8.5.2's trt.nptype does on numpy >= 1.24: np.bool is gone."""
    raise AttributeError("module 'numpy' has no attribute 'bool'")


def _fake_trt(version="10.3.0", engine=None):
    ns = types.SimpleNamespace(__version__=version)
    ns.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    ns.nptype = _nptype_of_trt_8_5
    ns.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED="USER_MANAGED")

    class Logger:
        WARNING = 2

        def __init__(self, level=2):
            pass

    class Runtime:
        DLA_core = -1

        def __init__(self, logger):
            ns.runtimes.append(self)

        def deserialize_cuda_engine(self, data):
            return engine

    ns.runtimes = []
    ns.Logger, ns.Runtime = Logger, Runtime
    ns.ICudaEngine, ns.IExecutionContext = type(engine) if engine is not None else object, FakeContext
    return ns


class FakeEngine:
    """num_io_tensors / get_tensor_* of a (-1, 8, 8, 1) → (-1, 3) classifier."""

    num_optimization_profiles = 1
    num_io_tensors = 2
    device_memory_size = device_memory_size_v2 = 4096

    def __init__(self, backend=None, profile=PROFILE, outputs=("probs",)):
        self.backend = backend
        self.names = ["input", *outputs]
        self.num_io_tensors = len(self.names)
        self.calls = []
        self.profile = profile
        self.contexts = []

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_shape(self, name):
        return {"input": (-1, H, W, 1), "ood_score": (-1, 1), "wide_score": (-1, 2)}.get(name, (-1, K))

    def get_tensor_dtype(self, name):
        return "FLOAT"

    def get_tensor_profile_shape(self, name, profile):
        self.calls.append(("get_tensor_profile_shape", name, profile))
        return self.profile

    def get_profile_shape(self, profile, name):
        self.calls.append(("get_profile_shape", profile, name))
        return self.profile

    def create_execution_context(self, strategy=None):
        ctx = FakeContext(self, strategy)
        self.contexts.append(ctx)
        return ctx

    def create_execution_context_without_device_memory(self):
        return self.create_execution_context("without_device_memory")


def reference(x):
    """What the stand-in engine computes: softmax over (mean, 2*mean, 0.5) per image."""
    m = x.reshape(len(x), -1).mean(1)
    logits = np.stack([m, 2 * m, np.full_like(m, 0.5)], 1)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


class FakeContext:
    """Models what matters for the graph defect: enqueueing a new shape rebuilds the context's
    shape-dependent internal state (``epoch``), and a graph captured before that replays against
    state that is no longer there (NVIDIA: re-capture after a shape change); here it then writes
    NaN, so a stale replay cannot pass unnoticed."""

    def __init__(self, engine, strategy=None):
        self.engine, self.shape, self.addr, self.strategy = engine, None, {}, strategy
        self.device_memory = None
        self.fail_capture = False
        self.epoch, self._last_exec_shape = 0, None

    def set_device_memory(self, ptr, nbytes):
        self.device_memory = (ptr, nbytes)

    def set_input_shape(self, name, shape):
        prof = self.engine.profile
        if not prof[0][0] <= shape[0] <= prof[2][0]:
            return False
        self.shape = tuple(shape)
        self.engine.backend.log.append(("set_shape", shape[0]))
        return True

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def get_tensor_shape(self, name):
        return self.shape

    def execute_async_v3(self, stream_handle):
        addr, n = dict(self.addr), self.shape[0]
        if self.shape != self._last_exec_shape:   # TensorRT re-plans for the new shape
            self.epoch += 1
            self._last_exec_shape = self.shape
        epoch = self.epoch

        def run():
            x = host_array(addr["input"], (n, H, W, 1), np.float32)
            out = host_array(addr["probs"], (n, K), np.float32)
            out[:] = reference(x) if self.epoch == epoch else np.nan  # stale graph: garbage
            if "ood_score" in addr:  # the open-set score output: -max(probs), as train.ood's max_softmax
                host_array(addr["ood_score"], (n, 1), np.float32)[:] = -reference(x).max(1, keepdims=True)

        be = self.engine.backend
        be.log.append(("exec", self.shape[0]))
        if be.capturing is not None:
            if self.fail_capture:
                return False
            be.capturing.append(run)
        else:
            run()
        return True


class FakeBackend(CudaBackend):
    """Host memory standing in for pinned/device memory; copies are memmove; an op log."""

    name = "fake"

    def __init__(self, integrated=False, supports_graphs=True):
        self.log, self.capturing, self.keep = [], None, []
        self.integrated = integrated
        self.supports_graphs = supports_graphs
        self.timing_events = 0

    def device_info(self, index=0):
        return DeviceInfo(0, "FakeOrin", "8.7", self.integrated, self.integrated)

    def _mem(self, nbytes):
        a = np.zeros(nbytes, np.uint8)
        self.keep.append(a)
        return a

    def pinned(self, nbytes, mapped=False):
        be = self

        class P(PinnedBuffer):
            def free(self):
                be.log.append(("free_pinned",))

        p = P()
        p.array = self._mem(nbytes)
        p.nbytes, p.ptr = nbytes, p.array.ctypes.data
        p.device_ptr = p.ptr if mapped else None
        return p

    def device(self, nbytes):
        be = self

        class D(DeviceBuffer):
            def free(self):
                be.log.append(("free_device",))

        d = D()
        a = self._mem(nbytes)
        d.nbytes, d.ptr = nbytes, a.ctypes.data
        return d

    def stream(self):
        be = self

        class S(Stream):
            handle = len(self.log) + 1

            def synchronize(self):
                be.log.append(("stream_sync",))

            def wait_event(self, event):
                be.log.append(("wait_event",))

            def free(self):
                pass

        return S()

    def event(self, timing=False):
        be = self
        self.timing_events += bool(timing)

        class E(Event):
            t = 0.0

            def record(self, stream):
                self.t = float(len(be.log))
                be.log.append(("record",))

            def synchronize(self):
                be.log.append(("event_sync",))

            def query(self):
                return True

            def elapsed_ms(self, end):
                return end.t - self.t

            def free(self):
                pass

        return E()

    def _copy(self, kind, dst, src, n, stream):
        self.log.append((kind, n))
        ctypes.memmove(dst, src, n)

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self._copy("htod", dst, src, nbytes, stream)

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        self._copy("dtoh", dst, src, nbytes, stream)

    def memcpy_dtod_async(self, dst, src, nbytes, stream):
        self._copy("dtod", dst, src, nbytes, stream)

    def close(self):
        self.log.append(("close",))

    def begin_capture(self, stream):
        self.capturing = []

    def end_capture(self, stream):
        be, ops, self.capturing = self, self.capturing, None

        class G(CudaGraph):
            def launch(self, stream):
                be.log.append(("graph_launch",))
                for op in ops:
                    op()

            def free(self):
                pass

        return G()


# ----------------------------------------------------------------------------- compat helpers
def test_missing_runtime_api_lists_absent_names():
    trt = _fake_trt("10.3.0", FakeEngine())
    missing = compat.missing_runtime_api(trt)
    assert "ICudaEngine.num_io_tensors" not in missing      # instance attribute on the fake, not class
    assert "Runtime.deserialize_cuda_engine" not in missing
    assert "IExecutionContext.execute_async_v3" not in missing
    trt2 = types.SimpleNamespace(__version__="10.3.0")
    assert compat.missing_runtime_api(trt2) == compat.RUNTIME_API["10"]


@pytest.mark.parametrize("v", ["8.5.2.2", "8.6.1", "10.3.0", "11.1.0"])
def test_profile_shape_uses_get_tensor_profile_shape_on_every_branch(v):
    # 8.5 has get_tensor_profile_shape already; its get_profile_shape is the deprecated binding call.
    eng = FakeEngine()
    trt = _fake_trt(v, eng)
    tensors = compat.io_tensors(trt, eng)
    assert [t.name for t in tensors] == ["input", "probs"]
    assert tensors[0].is_input and not tensors[1].is_input
    assert tensors[0].profile == PROFILE and tensors[1].profile is None
    assert tensors[0].dtype == "float32"   # our table: trt.nptype (np.bool on 8.5) is never called
    assert [c[0] for c in eng.calls] == ["get_tensor_profile_shape"]


@pytest.mark.parametrize("name,dtype", [("FLOAT", "float32"), ("HALF", "float16"), ("INT8", "int8"),
                                        ("INT32", "int32"), ("BOOL", "bool"), ("UINT8", "uint8"), ("INT64", "int64")])
def test_numpy_dtype_table(name, dtype):
    member = types.SimpleNamespace(name=name)   # pybind enum members have .name
    assert compat.numpy_dtype(member) == dtype
    assert compat.numpy_dtype(f"DataType.{name}") == dtype
    assert np.dtype(dtype).name == dtype


def test_numpy_dtype_refuses_types_numpy_lacks():
    with pytest.raises(EdgeError, match="TensorRT data type BF16 has no numpy equivalent"):
        compat.numpy_dtype(types.SimpleNamespace(name="BF16"))


def test_runtime_api_lists_match_the_bindings_per_branch():
    # Checked against NVIDIA/TensorRT's python/src/infer/pyCore.cpp (release/8.5, v8.6.1, v10.3.0,
    # v11.1): create_execution_context_without_device_memory is gone in 11.
    assert "ICudaEngine.create_execution_context_without_device_memory" in compat.RUNTIME_API["8.5"]
    assert "ICudaEngine.create_execution_context_without_device_memory" not in compat.RUNTIME_API["11"]
    assert all("nptype" not in n and "get_profile_shape" != n.split(".")[-1] for b in compat.RUNTIME_API.values()
               for n in b)


def test_set_input_shape_outside_profile_is_refused():
    eng = FakeEngine()
    ctx = eng.create_execution_context()
    with pytest.raises(EdgeError, match="outside the engine's profile"):
        compat.set_input_shape(_fake_trt(), ctx, "input", (9, H, W, 1))


# ----------------------------------------------------------------------------- engine checks
META_TRT = {"artifact": "model.engine", "tensorrt": {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}}


def test_engine_check_refuses_other_tensorrt_version():
    with pytest.raises(EdgeError, match=r"built with TensorRT 10.3.0 but this machine has TensorRT 8.6.2"):
        check_engine_compat(META_TRT, "8.6.2")


def test_engine_check_compares_the_full_version_and_points_to_from_onnx():
    meta = {**META_TRT, "source_onnx": "model.int8.onnx",
            "tensorrt": {**META_TRT["tensorrt"], "version": "8.5.2.2"}}
    check_engine_compat(meta, "8.5.2.2")
    check_engine_compat({**META_TRT, "tensorrt": {**META_TRT["tensorrt"], "version": "8.5.2"}}, "8.5.2.2")
    with pytest.raises(EdgeError) as ei:
        check_engine_compat(meta, "8.5.2.1")   # same major.minor.patch, another build
    msg = str(ei.value)
    assert "built with TensorRT 8.5.2.2 but this machine has TensorRT 8.5.2.1" in msg
    assert "edge-convert --from-onnx model.int8.onnx" in msg and "\n" not in msg


def test_engine_check_refuses_other_gpu():
    dev = DeviceInfo(0, "Xavier", "7.2", True, True)
    with pytest.raises(EdgeError, match=r"built for Orin \(sm 8.7\) but this GPU is Xavier \(sm 7.2\)"):
        check_engine_compat(META_TRT, "10.3.0", dev)


def test_engine_check_accepts_match_and_has_no_relaxed_paths():
    check_engine_compat(META_TRT, "10.3.0", DeviceInfo(0, "Orin", "8.7", True, True))
    # edge-convert never builds version-/hardware-compatible engines (no engine_host_code_allowed,
    # no hardware compatibility on Jetson): such flags in metadata relax nothing.
    vc = {"tensorrt": {**META_TRT["tensorrt"], "version_compatible": True, "hardware_compatible": True}}
    with pytest.raises(EdgeError, match="built with TensorRT 10.3.0"):
        check_engine_compat(vc, "10.7.0")
    with pytest.raises(EdgeError, match=r"sm 8.7.*sm 8.6"):
        check_engine_compat(vc, "10.3.0", DeviceInfo(0, "RTX", "8.6", False, True))
    with pytest.raises(EdgeError, match="no tensorrt.version"):
        check_engine_compat({"tensorrt": {}}, "10.3.0")


# ----------------------------------------------------------------------------- buffer maths
def _tensors():
    return compat.io_tensors(_fake_trt("10.3.0", FakeEngine()), FakeEngine())


def test_buffer_sizes_for_max_batch():
    ts = _tensors()
    assert bm.resolve_max_batch(ts) == 4
    assert bm.resolve_max_batch(ts, 2) == 2
    with pytest.raises(EdgeError, match="exceeds the engine's limit of 4"):
        bm.resolve_max_batch(ts, 8)
    plans = bm.plan_buffers(ts, 4)
    assert plans["input"].shape == (4, H, W, 1)
    assert plans["input"].nbytes == bm.aligned(4 * H * W * 4) == 1024
    assert plans["probs"].shape == (4, K) and plans["probs"].nbytes == 256  # 48 bytes rounded up to 256
    assert plans["input"].batch_nbytes(3) == 3 * H * W * 4
    assert bm.aligned(257) == 512 and bm.aligned(0) == 256


def test_fixed_batch_engine_and_missing_profile():
    T = compat.IOTensor
    fixed = [T("x", True, (1, H, W, 1), "float32", None), T("y", False, (1, K), "float32", None)]
    assert bm.resolve_max_batch(fixed) == 1
    with pytest.raises(EdgeError, match="no optimisation profile"):
        bm.resolve_max_batch([T("x", True, (-1, H, W, 1), "float32", None)])
    with pytest.raises(EdgeError, match="dynamic dimension"):
        bm.plan_buffers([T("y", False, (-1, -1), "float32", None)], 2)


def test_chunks():
    assert bm.chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert bm.chunks(0, 4) == []


# ----------------------------------------------------------------------------- the runner's orchestration
@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    def make(integrated=False, version="10.3.0", meta_version="10.3.0", profile=PROFILE, supports_graphs=True,
             dla_core=None, outputs=("probs",)):
        be = FakeBackend(integrated, supports_graphs)
        eng = FakeEngine(be, profile, outputs)
        trt = _fake_trt(version, eng)
        be.trt, be.engine = trt, eng

        def get_backend(name="auto", device=0):
            be.device_index = device
            be.log.append(("get_backend", name, device))
            return be

        monkeypatch.setattr("edge.runtime.tensorrt.loader.import_tensorrt", lambda: trt)
        monkeypatch.setattr("edge.cuda.get_backend", get_backend)
        path = tmp_path / "model.engine"
        path.write_bytes(b"stand-in plan")
        meta = {"artifact": path.name, "format": "engine", "backend": "tensorrt", "precision": "fp16",
                "classes": ["a", "b", "c"], "preprocess": {"height": H, "width": W, "channels": 1, "scale": "unit"},
                "tensorrt": {"version": meta_version, "gpu": "FakeOrin", "compute_capability": "8.7",
                             "dla_core": dla_core}}
        (tmp_path / "model.engine.json").write_text(json.dumps(meta))
        return path, be

    return make


def test_runner_one_call_pinned_h2d_execute_d2h(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine()
    x = np.random.default_rng(0).random((3, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        assert r.max_batch == 4 and r.input_spec.shape == (-1, H, W, 1) and r.output_spec.shape == (-1, K)
        be.log.clear()
        out = r.infer(x)
        t = r.last_timing
        log = list(be.log)
    np.testing.assert_allclose(out, reference(x), rtol=1e-6)
    kinds = [o[0] for o in log if o[0] in ("htod", "exec", "dtoh", "stream_sync", "event_sync")]
    assert kinds == ["htod", "exec", "dtoh", "event_sync"]  # one blocking-sync event wait per call
    assert ("htod", 3 * H * W * 4) in log and ("dtoh", 3 * K * 4) in log  # only the batch's bytes
    assert t.h2d_ms is not None and t.d2h_ms is not None and t.compute_ms is not None


def test_runner_double_buffers_large_batches(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine()
    x = np.random.default_rng(1).random((10, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        be.log.clear()
        out = r.infer(x)                      # 10 > max batch 4: chunks 4, 4, 2 through two slots
        outs = list(r.infer_batches([x[:4], x[4:8], x[8:]]))
        log = list(be.log)
    np.testing.assert_allclose(out, reference(x), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(outs), reference(x), rtol=1e-6)
    first = log[:log.index(("event_sync",))]
    assert [o for o in first if o[0] == "htod"] == [("htod", 4 * H * W * 4)] * 2  # chunk 1 uploaded before chunk 0 is waited for
    assert [o for o in log if o[0] == "htod"][2] == ("htod", 2 * H * W * 4)
    assert all(o != ("stream_sync",) for o in log)  # the pipeline waits on per-slot events, not the stream


@pytest.mark.parametrize("outputs", [("probs", "ood_score"), ("ood_score", "probs")])
def test_runner_returns_the_score_output(fake_engine, outputs):
    """An engine with the open-set score output: probabilities as the result, the score in last_score,
    on the one-call path, the double-buffered path and infer_batches (chunk by chunk, as the daemon reads it)."""
    from edge.runtime import load_runner

    path, be = fake_engine(outputs=outputs)
    x = np.random.default_rng(4).random((10, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        assert r.output_spec.name == "probs" and r.output_spec.shape == (-1, K)
        be.log.clear()
        out = r.infer(x[:3])
        assert [o for o in be.log if o[0] == "dtoh"] == [("dtoh", 3 * K * 4), ("dtoh", 3 * 4)]
        np.testing.assert_allclose(out, reference(x[:3]), rtol=1e-6)
        np.testing.assert_allclose(r.last_score, -reference(x[:3]).max(1), rtol=1e-6)
        out = r.infer(x)                                   # 10 > max batch 4: double-buffered
        np.testing.assert_allclose(out, reference(x), rtol=1e-6)
        np.testing.assert_allclose(r.last_score, -reference(x).max(1), rtol=1e-6)
        chunks = [x[:4], x[4:8], x[8:]]
        for c, p in zip(chunks, r.infer_batches(chunks)):
            np.testing.assert_allclose(p, reference(c), rtol=1e-6)
            np.testing.assert_allclose(r.last_score, -reference(c).max(1), rtol=1e-6)
    with load_runner(path, warmup=0, zero_copy="auto") as r:   # not integrated: copies, score still there
        r.infer(x[:2])
        assert r.last_score.shape == (2,)


def test_runner_without_score_output_has_no_score(fake_engine):
    from edge.runtime import load_runner

    path, _ = fake_engine()
    x = np.random.default_rng(5).random((6, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        r.infer(x)
        assert r.last_score is None
        list(r.infer_batches([x[:4]]))
        assert r.last_score is None


@pytest.mark.parametrize("outputs,needle", [(("probs", "other"), "outputs probs"),
                                            (("probs", "wide_score"), "wide_score"), ((), "none")])
def test_runner_refuses_other_outputs_in_one_line(fake_engine, outputs, needle):
    from edge.runtime import load_runner

    path, _ = fake_engine(outputs=outputs)
    with pytest.raises(EdgeError, match="one input and one output") as e:
        with load_runner(path, warmup=0):
            pass
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_runner_zero_copy_on_integrated_gpu(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine(integrated=True)
    x = np.random.default_rng(2).random((2, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        assert not r.zero_copy                      # optional: off unless asked for
    with load_runner(path, warmup=0, zero_copy="auto") as r:
        assert r.zero_copy
        out = r.infer(x)
        assert r.last_timing.h2d_ms is None
    np.testing.assert_allclose(out, reference(x), rtol=1e-6)
    assert not [o for o in be.log if o[0] in ("htod", "dtoh")]


def test_runner_cuda_graph_replays(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine()
    x = np.random.default_rng(3).random((2, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0, cuda_graph=True) as r:
        a = r.infer(x)
        b = r.infer(x[::-1].copy())
    np.testing.assert_allclose(a, reference(x), rtol=1e-6)
    np.testing.assert_allclose(b, reference(x[::-1]), rtol=1e-6)
    assert sum(o == ("graph_launch",) for o in be.log) == 2


def test_zero_copy_refused_on_a_discrete_gpu(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine(integrated=False)
    with pytest.raises(EdgeError, match="zero-copy needs an integrated GPU"):
        with load_runner(path, warmup=0, zero_copy=True):
            pass


def test_runner_refuses_engine_of_other_version_before_deserializing(fake_engine):
    from edge.runtime import load_runner

    path, _ = fake_engine(version="10.3.0", meta_version="8.6.2")
    with pytest.raises(EdgeError, match="built with TensorRT 8.6.2 but this machine has TensorRT 10.3.0"):
        with load_runner(path, warmup=0):
            pass


def test_runner_without_tensorrt_or_gpu_fails_with_one_line(tmp_path):
    from edge.cuda import gpu_available
    from edge.runtime import load_runner

    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    if gpu_available():
        pytest.skip("checks the no-GPU path")
    p = tmp_path / "m.engine"
    p.write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text(json.dumps({**META_TRT, "classes": ["a"], "backend": "tensorrt",
                                                        "preprocess": {"height": 8, "width": 8}}))
    with pytest.raises(EdgeError) as ei:
        with load_runner(p):
            pass
    msg = str(ei.value)
    assert "\n" not in msg and ("TensorRT is not installed" in msg or msg.startswith("no CUDA memory backend: "))


# ----------------------------------------------------------------------------- section 2 defects
def test_graphs_stay_right_when_shapes_change_like_the_daemon(fake_engine):
    """Batches 4, 4, 2 per frame (the daemon's 16, 16, 4 at max batch 4): a graph captured for 4 must
    not be replayed on a context that has since run batch 2. One context per captured shape."""
    from edge.runtime import load_runner

    path, be = fake_engine()
    rng = np.random.default_rng(5)
    with load_runner(path, warmup=0, cuda_graph=True) as r:
        for _ in range(3):  # three frames
            frame = [rng.random((n, H, W, 1), dtype=np.float32) for n in (4, 4, 2)]
            for x in frame:
                np.testing.assert_allclose(r.infer(x), reference(x), rtol=1e-6)
            outs = list(r.infer_batches(frame))
            for x, o in zip(frame, outs):
                np.testing.assert_allclose(o, reference(x), rtol=1e-6)
        graph_ctx = {n: c for n, c in r._contexts.items()}
    assert sorted(graph_ctx) == [2, 4]
    assert all(c.strategy == "USER_MANAGED" and c.device_memory is not None for c in graph_ctx.values())
    assert len({c.device_memory for c in graph_ctx.values()}) == 1   # one shared scratch buffer
    assert sum(o == ("graph_launch",) for o in be.log) > 0


def test_shared_scratch_calls_per_version():
    eng = FakeEngine()
    eng.device_memory_size, eng.device_memory_size_v2 = 100, 200
    assert compat.device_memory_size(_fake_trt("8.6.2"), eng) == 100
    assert compat.device_memory_size(_fake_trt("10.0.1"), eng) == 100   # _v2 came in 10.1
    assert compat.device_memory_size(_fake_trt("10.3.0"), eng) == 200
    c10_0 = compat.context_with_shared_memory(_fake_trt("10.0.1", eng), eng, 1234, 200)
    c10_3 = compat.context_with_shared_memory(_fake_trt("10.3.0", eng), eng, 1234, 200)
    assert c10_0.strategy == c10_3.strategy == "USER_MANAGED"
    assert c10_0.device_memory == 1234 and c10_3.device_memory == (1234, 200)


def test_graphs_on_tensorrt_8_use_contexts_without_device_memory(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine(version="8.5.2.2", meta_version="8.5.2.2")
    with load_runner(path, warmup=0, cuda_graph=True) as r:
        r.infer(np.zeros((3, H, W, 1), np.float32))
        (ctx,) = r._contexts.values()
    assert ctx.strategy == "without_device_memory" and ctx.device_memory is not None


def test_failed_capture_is_not_cached_and_falls_back_once(fake_engine, caplog):
    from edge.runtime import load_runner

    path, be = fake_engine()
    x = np.random.default_rng(6).random((3, H, W, 1), dtype=np.float32)
    orig = FakeEngine.create_execution_context

    def failing(self, strategy=None):
        ctx = orig(self, strategy)
        ctx.fail_capture = strategy == "USER_MANAGED"
        return ctx

    FakeEngine.create_execution_context = failing
    try:
        with caplog.at_level("WARNING"), load_runner(path, warmup=0, cuda_graph=True) as r:
            for _ in range(3):
                np.testing.assert_allclose(r.infer(x), reference(x), rtol=1e-6)
            assert all(not s.graphs for s in r.slots)      # no broken graph kept
            assert 3 in r._graph_refused
    finally:
        FakeEngine.create_execution_context = orig
    assert sum("CUDA graph capture failed for batch 3" in m for m in caplog.messages) == 1
    assert ("graph_launch",) not in be.log


def test_cuda_graph_with_pycuda_is_refused_in_one_line(fake_engine, capsys):
    from edge.runtime import load_runner

    path, be = fake_engine(supports_graphs=False)
    with pytest.raises(EdgeError, match="cuda_graph needs the cuda-python backend: fake has no stream-capture API"):
        with load_runner(path, warmup=0, cuda_graph=True):
            pass
    from edge.errors import cli_entry

    @cli_entry("edge-capture")   # the commands (edge-capture, edge-bench) word it as their flags
    def main(argv):
        with load_runner(path, warmup=0, cuda_graph=True):
            pass

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-capture: error: --cuda-graph needs the cuda-python backend") \
        and "(use --cuda-backend cuda-python, or drop --cuda-graph)" in err


def test_the_requested_device_is_the_one_the_backend_makes_current(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine()
    with load_runner(path, warmup=0, device=1) as r:
        assert r.be.device_index == 1
    assert ("get_backend", "auto", 1) in be.log


def test_static_batch_engine_pads_smaller_batches(fake_engine):
    """A DLA engine (min = opt = max = 4) runs batch 4; a tail of 3 is padded, 3 rows come back."""
    from edge.runtime import load_runner

    static = ((4, H, W, 1),) * 3
    path, be = fake_engine(profile=static, dla_core=1)
    x = np.random.default_rng(7).random((3, H, W, 1), dtype=np.float32)
    with load_runner(path, warmup=0) as r:
        be.log.clear()
        out = r.infer(x)
        big = r.infer(np.concatenate([x, x, x]))   # 9 rows: 4, 4, 1 (+3 padding)
    np.testing.assert_allclose(out, reference(x), rtol=1e-6)
    np.testing.assert_allclose(big, reference(np.concatenate([x, x, x])), rtol=1e-6)
    assert ("set_shape", 4) in be.log and ("set_shape", 3) not in be.log
    assert ("htod", 3 * H * W * 4) in be.log and ("dtoh", 3 * K * 4) in be.log
    assert be.trt.runtimes[-1].DLA_core == 1       # the engine's DLA core is applied when loading


def test_pipeline_uses_no_timing_events(fake_engine):
    from edge.runtime import load_runner

    path, be = fake_engine()
    with load_runner(path, warmup=0) as r:
        pass
    assert be.timing_events == 8   # 4 per slot, for infer()'s timing split only; sync events untimed
    assert be.log[-1] == ("close",)   # the backend's context is released after everything else
