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


# ----------------------------------------------------------------------------- version branch
@pytest.mark.parametrize("v,branch", [("8.5.2.2", "8.5"), ("8.6.2", "8.6"), ("10.3.0", "10"), ("10.16.1", "10"),
                                      ("11.1.0", "11")])
def test_runtime_branch(v, branch):
    assert compat.runtime_branch(v) == branch
    assert set(compat.RUNTIME_API) == {"8.5", "8.6", "10", "11"}


def test_runtime_branch_refuses_old_tensorrt():
    with pytest.raises(EdgeError, match="8.4.3 is too old"):
        compat.runtime_branch("8.4.3")


def _fake_trt(version="10.3.0", engine=None):
    ns = types.SimpleNamespace(__version__=version)
    ns.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    ns.nptype = lambda d: np.float32
    ns.volume = lambda s: int(np.prod(s))

    class Logger:
        WARNING = 2

        def __init__(self, level=2):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return engine

    ns.Logger, ns.Runtime = Logger, Runtime
    ns.ICudaEngine, ns.IExecutionContext = type(engine) if engine is not None else object, FakeContext
    return ns


class FakeEngine:
    """num_io_tensors / get_tensor_* of a (-1, 8, 8, 1) → (-1, 3) classifier."""

    num_optimization_profiles = 1
    num_io_tensors = 2

    def __init__(self, backend=None):
        self.backend = backend
        self.names = ["input", "probs"]
        self.calls = []

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_shape(self, name):
        return (-1, H, W, 1) if name == "input" else (-1, K)

    def get_tensor_dtype(self, name):
        return "FLOAT"

    def get_tensor_profile_shape(self, name, profile):
        self.calls.append(("get_tensor_profile_shape", name, profile))
        return PROFILE

    def get_profile_shape(self, profile, name):
        self.calls.append(("get_profile_shape", profile, name))
        return PROFILE

    def create_execution_context(self):
        return FakeContext(self)


def reference(x):
    """What the stand-in engine computes: softmax over (mean, 2*mean, 0.5) per image."""
    m = x.reshape(len(x), -1).mean(1)
    logits = np.stack([m, 2 * m, np.full_like(m, 0.5)], 1)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shape, self.addr = engine, None, {}

    def set_input_shape(self, name, shape):
        if not PROFILE[0][0] <= shape[0] <= PROFILE[2][0]:
            return False
        self.shape = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def get_tensor_shape(self, name):
        return self.shape

    def execute_async_v3(self, stream_handle):
        n, addr = self.shape[0], dict(self.addr)

        def run():
            x = host_array(addr["input"], (n, H, W, 1), np.float32)
            host_array(addr["probs"], (n, K), np.float32)[:] = reference(x)

        be = self.engine.backend
        be.log.append(("exec", n))
        if be.capturing is not None:
            be.capturing.append(run)
        else:
            run()
        return True


class FakeBackend(CudaBackend):
    """Host memory standing in for pinned/device memory; copies are memmove; an op log."""

    name = "fake"

    def __init__(self, integrated=False):
        self.log, self.capturing, self.keep = [], None, []
        self.integrated = integrated

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

    def event(self):
        be = self

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


@pytest.mark.parametrize("v,call", [("8.5.2", "get_profile_shape"), ("8.6.1", "get_tensor_profile_shape"),
                                    ("10.3.0", "get_tensor_profile_shape")])
def test_profile_shape_uses_the_call_of_the_branch(v, call):
    eng = FakeEngine()
    trt = _fake_trt(v, eng)
    tensors = compat.io_tensors(trt, eng)
    assert [t.name for t in tensors] == ["input", "probs"]
    assert tensors[0].is_input and not tensors[1].is_input
    assert tensors[0].profile == PROFILE and tensors[1].profile is None
    assert tensors[0].dtype == "float32"
    assert [c[0] for c in eng.calls] == [call]


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


def test_engine_check_refuses_other_gpu():
    dev = DeviceInfo(0, "Xavier", "7.2", True, True)
    with pytest.raises(EdgeError, match=r"built for Orin \(sm 8.7\) but this GPU is Xavier \(sm 7.2\)"):
        check_engine_compat(META_TRT, "10.3.0", dev)


def test_engine_check_accepts_match_and_version_compatible():
    check_engine_compat(META_TRT, "10.3.0", DeviceInfo(0, "Orin", "8.7", True, True))
    vc = {"tensorrt": {**META_TRT["tensorrt"], "version_compatible": True}}
    check_engine_compat(vc, "10.7.0")
    with pytest.raises(EdgeError, match="older"):
        check_engine_compat(vc, "10.1.0")
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


@pytest.mark.parametrize("n", [1, 2, 5])
def test_double_buffer_schedule_invariants(n):
    ops = list(bm.double_buffer_schedule(n, slots=2))
    pos = {(o.kind, o.chunk): i for i, o in enumerate(ops)}
    assert sorted(o.chunk for o in ops if o.kind == "collect") == list(range(n))
    for k in range(n):
        assert pos[("fill", k)] < pos[("h2d", k)] < pos[("exec", k)] < pos[("collect", k)]
        if k + 1 < n:  # the next chunk is uploaded and enqueued before this one is waited for
            assert pos[("exec", k + 1)] < pos[("collect", k)]
        if k >= 2:  # a slot is refilled only after its previous chunk was collected
            assert pos[("collect", k - 2)] < pos[("fill", k)]
            assert ops[pos[("fill", k)]].slot == ops[pos[("fill", k - 2)]].slot


# ----------------------------------------------------------------------------- the runner's orchestration
@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    def make(integrated=False, version="10.3.0", meta_version="10.3.0"):
        be = FakeBackend(integrated)
        eng = FakeEngine(be)
        trt = _fake_trt(version, eng)
        monkeypatch.setattr("edge.runtime.tensorrt.loader.import_tensorrt", lambda: trt)
        monkeypatch.setattr("edge.cuda.get_backend", lambda name="auto": be)
        path = tmp_path / "model.engine"
        path.write_bytes(b"stand-in plan")
        meta = {"artifact": path.name, "format": "engine", "backend": "tensorrt", "precision": "fp16",
                "classes": ["a", "b", "c"], "preprocess": {"height": H, "width": W, "channels": 1, "scale": "unit"},
                "tensorrt": {"version": meta_version, "gpu": "FakeOrin", "compute_capability": "8.7"}}
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
    kinds = [o[0] for o in log if o[0] in ("htod", "exec", "dtoh", "stream_sync")]
    assert kinds == ["htod", "exec", "dtoh", "stream_sync"]           # one sync per call
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
    pytest.importorskip("edge.cuda.cuda_python")
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
    assert "\n" not in str(ei.value) and ("TensorRT is not installed" in str(ei.value) or "failed" in str(ei.value))
