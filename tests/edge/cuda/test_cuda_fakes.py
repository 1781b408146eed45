"""Our own branching in the CUDA backends: versions checked, device made current, event and context
flags. Stand-in ``cudart`` and ``pycuda.driver`` modules record the calls; they prove only which
calls OUR code makes, never that CUDA works (the real paths are the ``gpu`` tests of test_cuda.py).
"""

from __future__ import annotations

import sys
import types

import pytest

from edge.errors import EdgeError


class _Err(int):
    @property
    def name(self):
        return {0: "cudaSuccess", 35: "cudaErrorInsufficientDriver", 708: "cudaErrorSetOnActiveProcess"}.get(
            int(self), "cudaErrorUnknown")


def fake_cudart(driver=12060, runtime=12060, devices=2, flags_error=0):
    """A cudart stand-in: returns (err, value) tuples like cuda-python and logs every call."""
    log = []
    ok = _Err(0)
    rt = types.SimpleNamespace(log=log)
    rt.cudaError_t = types.SimpleNamespace(cudaErrorSetOnActiveProcess=_Err(708), cudaSuccess=ok)
    rt.cudaEventBlockingSync, rt.cudaEventDisableTiming = 1, 2
    rt.cudaDeviceScheduleBlockingSync, rt.cudaDeviceMapHost = 4, 8
    rt.cudaStreamNonBlocking = 1

    def fn(name, result):
        def f(*args):
            log.append((name, *args))
            return result
        f.__name__ = name
        return f

    rt.cudaRuntimeGetVersion = fn("cudaRuntimeGetVersion", (ok, runtime))
    rt.cudaDriverGetVersion = fn("cudaDriverGetVersion", (ok, driver))
    rt.cudaGetDeviceCount = fn("cudaGetDeviceCount", (ok, devices))
    rt.cudaSetDevice = fn("cudaSetDevice", (ok,))
    rt.cudaSetDeviceFlags = fn("cudaSetDeviceFlags", (_Err(flags_error),))
    rt.cudaEventCreateWithFlags = fn("cudaEventCreateWithFlags", (ok, "event"))
    return rt


@pytest.mark.parametrize("driver,runtime,problem", [
    (11040, 11080, None),              # JetPack 5: cuda-python 11.8 on CUDA 11.4 (same major)
    (12020, 12090, None),              # minor-version compatibility within CUDA 12
    (12020, 13000, "needs a CUDA 13.x driver, this driver supports CUDA 12.2"),
    (11040, 12060, "needs a CUDA 12.x driver, this driver supports CUDA 11.4"),
    (0, 13040, "no NVIDIA driver"),
])
def test_version_problem(driver, runtime, problem):
    from edge.cuda.cuda_python import version_problem

    why = version_problem(driver, runtime)
    if problem is None:
        assert why is None
    else:
        assert problem in why and "\n" not in why


def test_backend_refuses_runtime_newer_than_driver_in_one_line():
    from edge.cuda.cuda_python import CudaPythonBackend

    rt = fake_cudart(driver=12020, runtime=13000)
    with pytest.raises(EdgeError) as ei:
        CudaPythonBackend(0, rt=rt)
    msg = str(ei.value)
    assert "CUDA runtime 13.0" in msg and "CUDA 12.2" in msg and "\n" not in msg
    assert not [c for c in rt.log if c[0] in ("cudaSetDevice", "cudaGetDeviceCount")]  # refused first


def test_backend_makes_the_requested_device_current_with_blocking_sync():
    from edge.cuda.cuda_python import CudaPythonBackend

    rt = fake_cudart()
    be = CudaPythonBackend(1, rt=rt)
    names = [c[0] for c in rt.log]
    assert ("cudaSetDevice", 1) in rt.log and be.device_index == 1
    assert names.index("cudaSetDevice") < names.index("cudaSetDeviceFlags")  # flags apply to the current device
    assert ("cudaSetDeviceFlags", 4 | 8) in rt.log
    with pytest.raises(EdgeError, match="no CUDA device 2 \\(found 2\\)"):
        CudaPythonBackend(2, rt=fake_cudart())
    CudaPythonBackend(0, rt=fake_cudart(flags_error=708))  # context already made: flags stay, no error


def test_events_are_blocking_sync_and_timing_only_when_asked():
    from edge.cuda.cuda_python import CudaPythonBackend

    rt = fake_cudart()
    be = CudaPythonBackend(0, rt=rt)
    be.event()
    be.event(timing=True)
    created = [c[1] for c in rt.log if c[0] == "cudaEventCreateWithFlags"]
    assert created == [1 | 2, 1]


def test_auto_falls_back_to_pycuda_when_cuda_python_does_not_fit(monkeypatch):
    import edge.cuda as ec
    from edge.cuda import cuda_python

    monkeypatch.setattr(cuda_python, "import_cudart", lambda: fake_cudart(driver=12020, runtime=13000))
    drv = fake_pycuda()
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=drv))
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    be = ec.get_backend("auto", device=1)
    assert be.name == "pycuda" and be.device_index == 1
    be.close()
    ok, why = ec.gpu_status()
    assert ok and why == ""   # the GPU is there; only cuda-python 13 does not fit the driver


def fake_pycuda(devices=2):
    log = []

    class Ctx:
        def __init__(self, dev, flags):
            self.dev, self.flags = dev, flags

        def pop(self):
            log.append(("pop",))

        def detach(self):
            log.append(("detach",))

    class Device:
        @staticmethod
        def count():
            return devices

        def __init__(self, i):
            self.i = i

        def make_context(self, flags=0):
            log.append(("make_context", self.i, flags))
            return Ctx(self, flags)

    class Event:
        def __init__(self, flags=0):
            log.append(("Event", flags))

    drv = types.SimpleNamespace(log=log, Device=Device, Event=Event, Error=RuntimeError,
                                init=lambda *a: log.append(("init",)),
                                ctx_flags=types.SimpleNamespace(MAP_HOST=8, SCHED_BLOCKING_SYNC=4),
                                event_flags=types.SimpleNamespace(BLOCKING_SYNC=1, DISABLE_TIMING=2))
    return drv


def test_pycuda_context_on_the_device_with_host_mapping(monkeypatch):
    from edge.cuda.pycuda_backend import PyCudaBackend

    drv = fake_pycuda()
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=drv))
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    be = PyCudaBackend(1)
    assert ("make_context", 1, 8 | 4) in drv.log   # device 1, MAP_HOST (zero copy) + blocking sync
    be.event()
    be.event(timing=True)
    assert [c[1] for c in drv.log if c[0] == "Event"] == [1 | 2, 1]
    assert not be.supports_graphs
    with pytest.raises(EdgeError, match="CUDA graphs need the cuda-python backend: pycuda has no stream-capture"):
        be.begin_capture(None)
    be.close()
    be.close()
    assert drv.log.count(("pop",)) == 1
    with pytest.raises(EdgeError, match="no CUDA device 3"):
        PyCudaBackend(3)


def test_test_cuda_skips_with_the_reason_without_cuda_python():
    """test_cuda.py used to error at collection where cuda-python is absent (pip install without [dev])."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    code = ("import sys\n"
            "sys.modules['cuda'] = None\n"            # as if cuda-python were not installed
            "sys.modules['cuda.bindings'] = None\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', 'tests/edge/cuda/test_cuda.py']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cuda-python is not installed" in r.stdout and " error" not in r.stdout.lower()
