"""edge.cuda: the error helper with real cuda-python codes, backend selection, and (on a GPU
machine) the real memory paths of both backends.

The stand-in ``cudart`` / ``pycuda.driver`` modules of test_cuda_fakes.py test only our own
branching (which device, which flags); the real paths are the ``gpu`` tests below.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.cuda import CudaError, check_cuda, cuda_call, get_backend, gpu_available, gpu_status, host_array
from edge.errors import EdgeError


def _cudart_or_skip():
    from edge.cuda.cuda_python import import_cudart

    try:
        return import_cudart()
    except EdgeError as e:
        pytest.skip(f"cuda-python is not installed ({e})")


try:
    from edge.cuda.cuda_python import import_cudart

    cudart = import_cudart()
except EdgeError:
    cudart = None
needs_cudart = pytest.mark.skipif(cudart is None, reason="cuda-python is not installed (pip install cuda-python)")
_GPU, _WHY = gpu_status()
needs_gpu = pytest.mark.skipif(not _GPU, reason=f"needs a usable CUDA GPU and driver ({_WHY})")


def _pycuda_or_skip():
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        pytest.skip("pycuda is not installed (needs libcuda and the CUDA headers)")


@needs_cudart
def test_check_cuda_returns_values_on_success():
    ok = cudart.cudaError_t.cudaSuccess
    assert check_cuda("x", (ok,)) is None
    assert check_cuda("x", (ok, 7)) == 7
    assert check_cuda("x", (ok, 1, 2)) == (1, 2)


@needs_cudart
def test_check_cuda_names_the_call_code_and_description():
    with pytest.raises(CudaError) as ei:
        check_cuda("cudaMalloc", (cudart.cudaError_t.cudaErrorNoDevice, None))
    e = ei.value
    assert e.call == "cudaMalloc" and e.code == 100 and e.error_name == "cudaErrorNoDevice"
    assert str(e).startswith("cudaMalloc failed: cudaErrorNoDevice (100)")
    if e.description:  # cuda-python 12+/13 describe it without a driver; 11.x needs libcuda for that
        assert "no CUDA-capable device" in str(e)
    assert isinstance(e, EdgeError) and "\n" not in str(e)


@needs_cudart
@pytest.mark.skipif(_GPU, reason="checks the no-GPU error path")
def test_cuda_call_on_real_cuda_python_without_gpu():
    # Without a driver cuda-python 12/13 return error 35 (or 100), 11.x raises RuntimeError
    # (libcuda not found): either way the exception names the call, in one line.
    with pytest.raises(CudaError) as ei:
        cuda_call(cudart.cudaMallocHost, 1024)
    assert ei.value.call == "cudaMallocHost"
    assert ei.value.code in (35, 100, None) and "\n" not in str(ei.value)
    # The backend checks driver vs runtime first: no driver is one line naming both versions.
    with pytest.raises(EdgeError, match=r"^cuda-python unusable: no NVIDIA driver .*CUDA runtime is \d+\.\d"):
        get_backend("cuda-python")


@pytest.mark.skipif(_GPU, reason="checks the no-GPU path")
def test_no_gpu_auto_names_both_backends_and_gpu_status_says_why():
    with pytest.raises(EdgeError) as ei:
        get_backend("auto")
    msg = str(ei.value)
    assert msg.startswith("no CUDA memory backend: cuda-python: ") and "; pycuda: " in msg and "\n" not in msg
    ok, why = gpu_status()
    assert not ok and why.startswith("cuda-python: ") and "pycuda: " in why
    assert gpu_available() is False


def test_get_backend_names():
    with pytest.raises(EdgeError, match="unknown CUDA backend"):
        get_backend("opencl")
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        with pytest.raises(EdgeError, match="pycuda is not installed"):
            get_backend("pycuda")


def test_host_array_is_a_view_of_the_address():
    a = np.arange(12, dtype=np.float32)
    v = host_array(a.ctypes.data, (3, 4), np.float32)
    a[5] = 42.0
    assert v.shape == (3, 4) and v[1, 1] == 42.0


# ----------------------------------------------------------------------------- real GPU
@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", ["cuda-python", "pycuda"])
@pytest.mark.parametrize("mapped", [False, True])
def test_pinned_roundtrip_async_copies_and_events(name, mapped):
    if name == "pycuda":
        _pycuda_or_skip()
    be = get_backend(name)
    if mapped and not be.device_info().can_map_host_memory:
        pytest.skip("device cannot map host memory")
    n = 1 << 20
    src, dst = be.pinned(n * 4, mapped=mapped), be.pinned(n * 4)
    dev = be.device(n * 4)
    s = be.stream()
    e0, e1 = be.event(timing=True), be.event(timing=True)
    try:
        x = src.view((n,), np.float32)
        x[:] = np.arange(n, dtype=np.float32)
        e0.record(s)
        be.memcpy_htod_async(dev.ptr, src.ptr, n * 4, s)
        be.memcpy_dtoh_async(dst.ptr, dev.ptr, n * 4, s)
        e1.record(s)
        s.synchronize()
        assert np.array_equal(dst.view((n,), np.float32), x)
        assert e1.query() and e0.elapsed_ms(e1) >= 0.0
        if mapped:
            assert src.device_ptr is not None
    finally:
        for o in (src, dst, dev, s, e0, e1):
            o.free()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", ["cuda-python", "pycuda"])
def test_double_buffering_overlaps_upload_with_compute(name):
    """Two slots, a copy and a compute stream; device-to-device copies stand in for the engine."""
    if name == "pycuda":
        _pycuda_or_skip()
    be = get_backend(name)
    n, chunks = 4 << 20, 6
    slots = [dict(h_in=be.pinned(n), d_in=be.device(n), d_out=be.device(n), h_out=be.pinned(n),
                  up=be.event(), done=be.event()) for _ in range(2)]
    s_copy, s_comp = be.stream(), be.stream()
    results = []
    try:
        prev = None
        for k in range(chunks):
            sl = slots[k % 2]
            sl["h_in"].array[:] = k + 1
            be.memcpy_htod_async(sl["d_in"].ptr, sl["h_in"].ptr, n, s_copy)
            sl["up"].record(s_copy)
            s_comp.wait_event(sl["up"])
            for _ in range(4):  # the stand-in "compute": device-to-device passes
                be.memcpy_dtod_async(sl["d_out"].ptr, sl["d_in"].ptr, n, s_comp)
            be.memcpy_dtoh_async(sl["h_out"].ptr, sl["d_out"].ptr, n, s_comp)
            sl["done"].record(s_comp)
            if prev is not None:
                prev["done"].synchronize()
                results.append(int(prev["h_out"].array[0]))
            prev = sl
        prev["done"].synchronize()
        results.append(int(prev["h_out"].array[0]))
        assert results == list(range(1, chunks + 1))
    finally:
        for sl in slots:
            for o in sl.values():
                o.free()
        s_copy.free()
        s_comp.free()


@pytest.mark.gpu
@needs_gpu
def test_cuda_graph_capture_and_replay_without_tensorrt():
    """cuda-python's stream capture for real: a captured DtoD + DtoH replays with new input."""
    be = get_backend("cuda-python")
    n = 1 << 20
    h_in, h_out = be.pinned(n), be.pinned(n)
    d_a, d_b = be.device(n), be.device(n)
    s = be.stream()
    try:
        be.begin_capture(s)
        be.memcpy_dtod_async(d_b.ptr, d_a.ptr, n, s)
        be.memcpy_dtoh_async(h_out.ptr, d_b.ptr, n, s)
        g = be.end_capture(s)
        for v in (3, 7, 11):
            h_in.array[:] = v
            be.memcpy_htod_async(d_a.ptr, h_in.ptr, n, s)
            g.launch(s)
            s.synchronize()
            assert int(h_out.array.min()) == v == int(h_out.array.max())
        g.free()
    finally:
        for o in (h_in, h_out, d_a, d_b, s):
            o.free()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", ["cuda-python", "pycuda"])
def test_zero_copy_device_pointer_reads_host_memory(name):
    """Mapped pinned memory read by the GPU through its device pointer (the zero-copy path)."""
    if name == "pycuda":
        _pycuda_or_skip()
    be = get_backend(name)
    if not be.device_info().can_map_host_memory:
        pytest.skip("device cannot map host memory")
    n = 1 << 16
    src, dst, dev = be.pinned(n * 4, mapped=True), be.pinned(n * 4), be.device(n * 4)
    s = be.stream()
    try:
        x = src.view((n,), np.float32)
        x[:] = np.arange(n, dtype=np.float32)
        be.memcpy_dtod_async(dev.ptr, src.device_ptr, n * 4, s)   # the GPU reads host memory
        be.memcpy_dtoh_async(dst.ptr, dev.ptr, n * 4, s)
        s.synchronize()
        assert np.array_equal(dst.view((n,), np.float32), x)
    finally:
        for o in (src, dst, dev, s):
            o.free()


@pytest.mark.gpu
@needs_gpu
def test_device_index_out_of_range_is_one_line():
    be = get_backend("auto")
    count = be.device_info().index + 1
    import edge.cuda as ec

    with pytest.raises(EdgeError, match="no CUDA device"):
        ec.get_backend("cuda-python", device=64 + count)
