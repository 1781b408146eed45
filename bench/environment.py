"""The environment block of a bench report: CPU, cores, GPU and driver, library versions, Jetson power mode.

Nothing here imports TensorFlow or TensorRT: versions come from the installed distributions'
metadata, GPU facts from ``nvidia-smi`` and Jetson facts from ``nvpmodel`` / ``/etc/nv_tegra_release``,
each only where present.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

_DISTS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "onnxruntime", "onnxruntime-gpu", "tensorflow",
          "tensorflow-cpu", "keras", "onnx", "numpy", "opencv-python-headless", "scikit-learn",
          "cuda-python", "pycuda")


def _run(cmd: List[str], timeout: float = 10.0) -> Optional[str]:
    """stdout of ``cmd`` if it exists and succeeds, else None."""
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), falling back to :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("model name", "hardware", "cpu model") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> List[Dict[str, str]]:
    """One entry per GPU from ``nvidia-smi`` (name, driver, memory); empty where there is none."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if not out:
        return []
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            rows.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return rows


def jetson() -> Optional[Dict[str, str]]:
    """L4T release and the nvpmodel power mode on a Jetson; None elsewhere."""
    rel = Path("/etc/nv_tegra_release")
    mode = _run(["nvpmodel", "-q"])
    if not rel.is_file() and mode is None:
        return None
    info: Dict[str, str] = {}
    if rel.is_file():
        try:
            info["l4t"] = rel.read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            pass
    if mode:
        info["power_mode"] = " ".join(mode.split())
    return info


def versions() -> Dict[str, str]:
    """Versions of the installed inference and training libraries (only those present)."""
    out = {"python": platform.python_version()}
    for d in _DISTS:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def ort_providers() -> List[str]:
    """The execution providers of the installed onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def environment() -> Dict[str, Any]:
    """The whole environment block."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "load_average": load,
        "gpus": gpus(),
        "jetson": jetson(),
        "onnxruntime_providers": ort_providers(),
        "versions": versions(),
    }


def summary_lines(env: Dict[str, Any]) -> List[str]:
    """Human-readable lines of the environment block (Markdown report)."""
    v = env.get("versions", {})
    lines = [f"CPU: {env.get('cpu')} ({env.get('cores')} cores, {env.get('cores_usable')} usable; "
             f"load average {env.get('load_average')})",
             f"OS: {env.get('os')} {env.get('machine')}"]
    if env.get("gpus"):
        lines += [f"GPU: {g['name']}, driver {g['driver']}, {g['memory']}" for g in env["gpus"]]
    else:
        lines.append("GPU: none (nvidia-smi not found or no device)")
    if env.get("jetson"):
        j = env["jetson"]
        lines.append(f"Jetson: {j.get('l4t', '?')}; power mode: {j.get('power_mode', 'nvpmodel not found')}")
    trt = v.get("tensorrt") or v.get("tensorrt-cu12") or v.get("tensorrt-cu13")
    tf = v.get("tensorflow") or v.get("tensorflow-cpu")
    lines.append(f"TensorRT: {trt or 'not installed'}; ONNX Runtime: {v.get('onnxruntime') or v.get('onnxruntime-gpu') or '-'} "
                 f"({', '.join(env.get('onnxruntime_providers') or []) or '-'}); TensorFlow: {tf or '-'}; "
                 f"Keras: {v.get('keras', '-')}; Python {v.get('python')}")
    return lines
