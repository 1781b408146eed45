"""Every TensorRT name our 8.6 / 10.x / 11.x branches call exists in the real tensorrt bindings wheels.

The wheels (tensorrt-bindings 8.6.1, the last 8.x on PyPI and JetPack 6.0's version;
tensorrt-cu12-bindings 10.x; tensorrt-cu13-bindings 11.x) install without the
TensorRT libraries, so ``import`` fails; they ship no .pyi stub either. The names are read from
the pybind11 extension: every Python-visible class, method, property and enum member name is a
NUL-terminated string in ``tensorrt.so`` (module-level helpers such as ``nptype`` live in
``__init__.py``). Limits: a dotted name "Class.attr" is checked part by part (the binary does not
say which class owns a name), and a name that is the tail of a longer string (``INT8`` in
``UINT8``) is found through that string.

The wheels are cached in ``.whl/`` (gitignored); the test skips with the reason if pip cannot
download them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge.runtime.tensorrt import compat

#: pip downloads the wheels: not in the default run (`pytest -m network`; .ci/run runs it).
pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".whl"
#: branch → (pip requirement, file-name prefix of its wheel). 8.5 (JetPack 5.1) has no PyPI wheel:
#: its branch differs from 8.6 only in the runtime's profile query, checked against 8.6 and 10 below.
WHEELS = {"8.6": ("tensorrt-bindings==8.6.1", "tensorrt_bindings-8.6."),
          "10": ("tensorrt-cu12-bindings>=10,<11", "tensorrt_cu12_bindings-10."),
          "11": ("tensorrt-cu13-bindings>=11,<12", "tensorrt_cu13_bindings-11.")}


def _wheel(branch: str) -> Path:
    spec, prefix = WHEELS[branch]
    found = sorted(CACHE.glob(f"{prefix}*.whl"))
    if not found:
        CACHE.mkdir(exist_ok=True)
        try:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                "-q", "-d", str(CACHE), spec], capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"cannot download {spec}: {e}")
        found = sorted(CACHE.glob(f"{prefix}*.whl"))
        if r.returncode != 0 or not found:
            last = (r.stderr.strip().splitlines() or ["no wheel for this platform/python"])[-1]
            pytest.skip(f"cannot download {spec}: {last}")
    return found[-1]


class WheelAPI:
    """Names visible in a tensorrt bindings wheel, read without importing it."""

    def __init__(self, wheel: Path):
        with zipfile.ZipFile(wheel) as z:
            so = [n for n in z.namelist() if n.endswith("/tensorrt.so") or (n.endswith(".so") and "/tensorrt." in n)]
            init = [n for n in z.namelist() if n.endswith("tensorrt_bindings/__init__.py")]
            assert so and init, f"unexpected wheel layout: {z.namelist()[:10]}"
            self.blob = z.read(so[0])
            self.init = z.read(init[0]).decode()
        self.version = wheel.name.split("-")[1]

    def has(self, name: str) -> bool:
        return (name.encode() + b"\0") in self.blob or f"def {name}(" in self.init

    def missing(self, dotted_names):
        return [d for d in dotted_names if not all(self.has(p) for p in d.split("."))]


@pytest.fixture(scope="module", params=list(WHEELS))
def wheel(request):
    return request.param, WheelAPI(_wheel(request.param))


def test_wheel_version_selects_the_branch(wheel):
    branch, api = wheel
    assert compat.builder_branch(api.version) == branch
    assert compat.runtime_branch(api.version) == branch


def test_every_builder_name_exists(wheel):
    branch, api = wheel
    assert api.missing(compat.BUILDER_API[branch]) == [], f"TensorRT {api.version}"


def test_every_runtime_name_exists(wheel):
    branch, api = wheel
    names = getattr(compat, "RUNTIME_API", {}).get(branch)
    if not names:
        pytest.skip("no RUNTIME_API list for this branch in compat.py")
    assert api.missing(names) == [], f"TensorRT {api.version}"


def test_the_check_can_fail(wheel):
    """Negative control: names removed in a version are reported missing by the same check."""
    branch, api = wheel
    assert api.missing(["Builder.no_such_method_xyz"]) == ["Builder.no_such_method_xyz"]
    if branch == "11":
        # 11.x removed EXPLICIT_BATCH and the FP16 builder flag: the 8.x branch would not work there.
        gone = api.missing(compat.BUILDER_API["8.6"])
        assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in gone and "BuilderFlag.FP16" in gone
        # ... and the 8.x way of sharing device memory between contexts (CUDA graphs per shape).
        assert "ICudaEngine.create_execution_context_without_device_memory" in api.missing(compat.RUNTIME_API["8.6"])
    elif branch == "8.6":
        # 8.6 has no Python IProgressMonitor yet: the 10.x builder branch would not work there.
        gone = api.missing(compat.BUILDER_API["10"])
        assert "IProgressMonitor" in gone and "IBuilderConfig.progress_monitor" in gone
    else:
        # 10.x removed the binding-index profile query (deprecated since 8.5; no branch calls it now).
        assert api.missing(["ICudaEngine.get_profile_shape"]) == ["ICudaEngine.get_profile_shape"]
