"""``edge-doctor``: one command that proves the chain on a device, and a report to attach to a bug.

Every check ends as ``pass`` / ``warn`` / ``fail`` / ``skip`` with a one-line reason:

* platform: L4T / JetPack release, GPU and compute capability, CUDA driver and runtime versions,
  power mode (nvpmodel) and clocks (jetson_clocks), free memory and disk;
* Python stack: TensorRT version and the compat branch it takes (and whether every name the
  runtime calls exists), cuda-python / pycuda against the driver, numpy against the OpenCV ABI,
  OpenCV's GStreamer support (``csi://``), ISA-L for PNG frames (``isal``), ONNX Runtime providers;
* the chain on a model folder (default ``models/neu-compact``; its ONNX artifacts, else
  ``onnx/`` inside it) and the embedded NEU sample (``data/neu-sample``): ONNX Runtime FP32 /
  FP16 / INT8 agreement, FP16 and INT8 engines built with TensorRT (timing cache in a temp folder)
  against ONNX Runtime (FP16 max abs probability difference <= 5e-3, INT8 top-1 agreement >= 98 %),
  the runner in every mode the device allows (cuda-python / pycuda x graph x zero-copy x batch 1,
  16 and an odd tail), a short capture-daemon run on a generated line, and one latency /
  throughput row per artifact.

Without a GPU or TensorRT it runs what it can (the ONNX Runtime chain) and marks the rest ``skip``
with the reason. Exit 0 when nothing failed, 1 otherwise (2: bad arguments).

Example:
    edge-doctor --json doctor.json --md doctor.md
    edge-doctor --model /opt/steel-edge/models --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edge.errors import EdgeError, cli_entry
from edge.formats import onnx_for
from edge.log import add_log_flags, muted

log = logging.getLogger(__name__)

PROG = "edge-doctor"
ROOT = Path(__file__).resolve().parents[1]
FP16_TOL = 5e-3
INT8_MIN_AGREEMENT = 98.0
ONNX_FILES = {p: onnx_for(p).file for p in ("fp32", "fp16", "int8")}
#: L4T major.minor -> (JetPack, the TensorRT it ships); as jetson/setup.sh.
L4T_JETPACK = [("35.1", "5.0.2", "8.4"), ("35.2", "5.1", "8.5"), ("35.3", "5.1.1", "8.5"), ("35.4", "5.1.2", "8.5"),
               ("35.5", "5.1.3", "8.5"), ("35.6", "5.1.4", "8.5"), ("36.2", "6.0 DP", "8.6"), ("36.3", "6.0", "8.6"),
               ("36.4", "6.1/6.2", "10.3"), ("38.", "7.x", "10.13+")]


@dataclass
class Check:
    """One line of the report."""

    section: str
    name: str
    status: str  # pass | warn | fail | skip
    reason: str
    data: Dict[str, Any] = field(default_factory=dict)


class Doctor:
    """Runs the checks in order and collects them (a failing check never stops the others)."""

    def __init__(self):
        self.checks: List[Check] = []
        #: Best measured images/s per source ("onnxruntime", "tensorrt"), for the line-capacity line.
        self.throughput: Dict[str, Dict[str, Any]] = {}
        #: Timed calls per latency row (after one warm-up).
        self.iterations = 20

    def add(self, section: str, name: str, status: str, reason: str, **data) -> Check:
        reason = " ".join(str(reason).split()).replace(str(Path.cwd()) + os.sep, "")  # paths relative to cwd
        c = Check(section, name, status, reason, data)
        self.checks.append(c)
        log.info(f"[{status:4}] {section}/{name}: {reason}")
        return c

    def run(self, section: str, name: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` returning (status, reason[, data]); an exception is a ``fail`` with its line."""
        try:
            res = fn()
        except EdgeError as e:
            self.add(section, name, "fail", str(e))
            return
        except Exception as e:  # noqa: BLE001  (the report must list every check)
            self.add(section, name, "fail", f"{type(e).__name__}: {e}")
            return
        status, reason, *rest = res
        self.add(section, name, status, reason, **(rest[0] if rest else {}))

    def summary(self) -> Dict[str, int]:
        out = {k: 0 for k in ("pass", "warn", "fail", "skip")}
        for c in self.checks:
            out[c.status] += 1
        return out


# ============================================================================ platform
def l4t_release() -> Optional[str]:
    """``35.4.1`` from /etc/nv_tegra_release (None when this is not a Jetson)."""
    import re

    p = Path("/etc/nv_tegra_release")
    if not p.is_file():
        return None
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", p.read_text(errors="replace"))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_of(l4t: str) -> Optional[tuple]:
    for prefix, jp, trt in L4T_JETPACK:
        if l4t.startswith(prefix):
            return jp, trt
    return None


def check_l4t():
    l4t = l4t_release()
    if l4t is None:
        return "skip", f"not a Jetson (no /etc/nv_tegra_release): {platform.machine()} host, {platform.platform()}"
    jp = jetpack_of(l4t)
    if jp is None:
        return "warn", f"L4T {l4t}: not a JetPack release this project knows (5.1.x, 6.0, 6.1/6.2, 7.x)", {"l4t": l4t}
    if jp[0].startswith("5.0"):
        return "fail", f"L4T {l4t} = JetPack {jp[0]} ships TensorRT {jp[1]}: the runtime needs JetPack 5.1+", {"l4t": l4t}
    return "pass", f"L4T {l4t} = JetPack {jp[0]} (TensorRT {jp[1]})", {"l4t": l4t, "jetpack": jp[0]}


def check_gpu():
    from edge.cuda import get_backend, gpu_status

    ok, why = gpu_status()
    if not ok:
        return "skip", f"no usable CUDA GPU: {why}"
    be = get_backend("auto")
    d = be.device_info()
    kind = "integrated" if d.integrated else "discrete"
    return "pass", (f"{d.name}, sm {d.compute_capability}, {kind}, {d.total_memory / 2**30:.1f} GiB, "
                    f"map host memory {'yes' if d.can_map_host_memory else 'no'} (backend {be.name})"), \
        {"name": d.name, "compute_capability": d.compute_capability, "integrated": d.integrated,
         "can_map_host_memory": d.can_map_host_memory}


def _cuda_text(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"


def check_cuda_versions():
    from edge.cuda.cuda_python import import_cudart, version_problem
    from edge.cuda.errors import cuda_call

    try:
        rt = import_cudart()
    except EdgeError as e:
        return "skip", str(e)
    runtime = int(cuda_call(rt.cudaRuntimeGetVersion))
    try:
        driver = int(cuda_call(rt.cudaDriverGetVersion))
    except EdgeError:
        driver = 0
    data = {"driver": _cuda_text(driver), "runtime": _cuda_text(runtime)}
    why = version_problem(driver, runtime)
    if driver == 0:
        return "skip", f"no NVIDIA driver (cuda-python's CUDA runtime {_cuda_text(runtime)})", data
    if why:
        return "fail", why, data
    return "pass", f"driver CUDA {_cuda_text(driver)}, cuda-python runtime {_cuda_text(runtime)}", data


def _run(cmd: List[str], timeout: float = 10) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (r.stdout + r.stderr).strip()


def check_power():
    out = _run(["nvpmodel", "-q"])
    if out is None:
        return "skip", "nvpmodel not found (not a Jetson): no power mode to report"
    mode = " ".join(out.splitlines()[:2])
    return "pass", f"nvpmodel: {mode}", {"nvpmodel": out}


def check_clocks():
    out = _run(["jetson_clocks", "--show"])
    if out is None:
        return "skip", "jetson_clocks not found (not a Jetson, or not root)"
    # "GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=1300500000": pinned when min = max
    gpu = [ln for ln in out.splitlines() if ln.startswith("GPU ") and "MinFreq=" in ln and "MaxFreq=" in ln]
    pinned = bool(gpu) and all(ln.split("MinFreq=")[1].split()[0] == ln.split("MaxFreq=")[1].split()[0] for ln in gpu)
    if not gpu:
        return "warn", "jetson_clocks --show has no GPU MinFreq/MaxFreq line: cannot tell whether clocks are pinned", \
            {"show": out}
    if pinned:
        return "pass", "clocks pinned (jetson_clocks): GPU min = max frequency", {"show": out}
    return "warn", "clocks not pinned: latency figures drift (sudo jetson_clocks before benchmarking)", {"show": out}


def check_memory_disk():
    mem = {}
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            k, v = ln.split(":", 1)
            mem[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    avail = mem.get("MemAvailable", 0) / 2**30
    disk = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    data = {"mem_available_gib": round(avail, 2), "disk_free_gib": round(disk, 2)}
    text = f"{avail:.1f} GiB memory available, {disk:.1f} GiB free in {tempfile.gettempdir()}"
    if avail and avail < 1.0 or disk < 1.0:
        return "warn", text + " (under 1 GiB: engine builds may fail)", data
    return "pass", text, data


# ============================================================================ python stack
def check_python():
    v = sys.version.split()[0]
    if sys.version_info < (3, 8):
        return "fail", f"Python {v}: the runtime needs 3.8+"
    return "pass", f"Python {v} ({sys.executable})"


def check_tensorrt():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "skip", "TensorRT is not installed (Jetson: JetPack's python3-libnvinfer; x86: pip tensorrt)"
    from edge.cuda import gpu_status

    ok, why = gpu_status()
    if not ok:  # importing tensorrt without a GPU crashes later calls: report the version only
        from importlib.metadata import version as pkg_version

        try:
            v = pkg_version("tensorrt")
        except Exception:  # noqa: BLE001
            v = "?"
        return "skip", f"TensorRT {v} installed but no usable GPU ({why})"
    import tensorrt as trt

    from edge.runtime.tensorrt import compat

    branch = compat.runtime_branch(compat.version_of(trt))
    missing = compat.missing_runtime_api(trt) + compat.missing_builder_api(trt)
    if missing:
        return "fail", f"TensorRT {trt.__version__} (branch {branch}) lacks {', '.join(missing)}"
    return "pass", f"TensorRT {trt.__version__}: branch {branch}, every runtime and builder name present", \
        {"version": trt.__version__, "branch": branch}


def check_cuda_libs():
    parts, status = [], "pass"
    try:
        from importlib.metadata import version as pkg_version
    except ImportError:  # pragma: no cover
        pkg_version = None
    for pkg in ("cuda-python", "pycuda"):
        try:
            parts.append(f"{pkg} {pkg_version(pkg)}")
        except Exception:  # noqa: BLE001
            parts.append(f"{pkg} not installed")
    from edge.cuda import get_backend

    for name in ("cuda-python", "pycuda"):
        try:
            be = get_backend(name)
            parts.append(f"{name} backend usable")
            if hasattr(be, "close"):
                be.close()
        except EdgeError as e:
            parts.append(f"{name} backend: {e}")
    if not any("backend usable" in p for p in parts):
        status = "skip"
    return status, "; ".join(parts)


def check_numpy_opencv():
    try:
        import cv2
    except ImportError as e:
        return "fail", f"import cv2 fails with numpy {np.__version__}: {e} (numpy ABI: see jetson/constraints-*.txt)"
    info = cv2.getBuildInformation()
    gst = any(ln.strip().startswith("GStreamer:") and "YES" in ln for ln in info.splitlines())
    data = {"numpy": np.__version__, "opencv": cv2.__version__, "gstreamer": gst, "cv2": cv2.__file__}
    text = f"numpy {np.__version__}, OpenCV {cv2.__version__} ({cv2.__file__})"
    if not gst:
        return "warn", text + ": no GStreamer, so csi:// and gst:// cannot open (use the system OpenCV)", data
    return "pass", text + " with GStreamer (csi://, gst://)", data


def check_png_decoding():
    from edge.capture import png

    if png.inflater() == "isal":
        from importlib.metadata import version as pkg_version

        return "pass", f"isal {pkg_version('isal')}: PNG frames inflated by ISA-L (edge.capture.png)", \
            {"inflater": "isal"}
    return "warn", ("isal is not installed: PNG folder sources decode with OpenCV alone, about twice the CPU per "
                    "frame (pip install isal)"), {"inflater": "zlib"}


def check_onnxruntime():
    import onnxruntime as ort

    prov = ort.get_available_providers()
    return "pass", f"onnxruntime {ort.__version__}: {', '.join(prov)}", {"providers": prov}


def check_capacity(doc: "Doctor", line: Optional[Dict[str, float]]):
    """bench.capacity's verdict for the best throughput measured here (TensorRT before ONNX Runtime)."""
    try:
        from bench.capacity import line_capacity, sentence
    except ImportError:
        return "skip", "bench.capacity is not part of this install (no line-capacity estimate)"
    if not line:
        return "skip", "give --line-speed, --strip-width and --mm-per-px for the line-capacity verdict"
    best = doc.throughput.get("tensorrt") or doc.throughput.get("onnxruntime")
    if not best:
        return "skip", "no throughput was measured (the chain did not run)"
    cap = line_capacity(best["images_per_s"], line["line_speed"], line["strip_width"], line["mm_per_px"],
                        int(line["tile"]), artifact=best["artifact"], batch=best["batch"])
    return ("pass" if cap["verdict"] == "keeps up" else "warn"), sentence(cap), cap


# ============================================================================ the chain
def find_artifacts(model: Path) -> Dict[str, Path]:
    """ONNX artifacts with metadata in ``model`` (a folder, or an artifact inside one), else ``model/onnx``."""
    folder = model if model.is_dir() else model.parent
    for d in (folder, folder / "onnx"):
        found = {k: d / f for k, f in ONNX_FILES.items() if (d / f).is_file() and (d / (f + ".json")).is_file()}
        if found:
            return found
    return {}


def find_sample(data: Optional[str]) -> Optional[Path]:
    cands = [Path(data)] if data else [ROOT / "data" / "neu-sample", Path.cwd() / "data" / "neu-sample"]
    for c in cands:
        if c.is_dir() and any(c.glob("*.bmp")):
            return c
    return None


class Chain:
    """The model, the sample and the reference outputs shared by the chain checks."""

    def __init__(self, artifacts: Dict[str, Path], sample: Path):
        from edge.data import load_dataset, load_images
        from edge.metadata import read_meta

        self.artifacts = artifacts
        meta = read_meta(artifacts["fp32"])
        self.ds = load_dataset(sample, classes=meta["classes"])
        self.images = list(load_images(self.ds.samples))
        self.labels = np.array([s.label for s in self.ds.samples])
        self.ref: Optional[np.ndarray] = None
        self.outputs: Dict[str, np.ndarray] = {}

    def ort(self, name: str) -> np.ndarray:
        from edge.runtime import load_runner

        if name not in self.outputs:
            with load_runner(self.artifacts[name], backend="onnxruntime", warmup=1) as r:
                self.outputs[name] = np.concatenate([r.infer_images(self.images[i:i + 16])
                                                     for i in range(0, len(self.images), 16)])
        return self.outputs[name]


def compare(ref: np.ndarray, out: np.ndarray, labels: np.ndarray, precision: str) -> tuple:
    """(status, reason, data) of ``out`` against the FP32 reference by the issue's criteria."""
    from edge import metrics

    diff = metrics.prob_diffs(ref, out)["max_abs_prob_diff"]
    agree = 100 * metrics.agreement(ref, out)
    acc = 100 * metrics.accuracy(labels, out)
    data = {"max_abs_diff": diff, "top1_agreement_pct": agree, "sample_accuracy_pct": acc, "n": int(len(ref))}
    text = f"max abs diff {diff:.2e}, top-1 agreement {agree:.1f} %, sample accuracy {acc:.1f} % on {len(ref)} images"
    if precision == "fp16":
        ok = diff <= FP16_TOL
        return ("pass" if ok else "fail"), text + f" (FP16 limit {FP16_TOL:g})", data
    if precision == "int8":
        ok = agree >= INT8_MIN_AGREEMENT
        return ("pass" if ok else "fail"), text + f" (INT8 needs >= {INT8_MIN_AGREEMENT:g} % agreement)", data
    return "pass", text, data


def latency_rows(doc, artifacts, images, key: str, what: str, **runner_opts):
    """One latency / throughput row per artifact at batch 16; the fastest goes to ``doc.throughput[key]``.

    Returns:
        The check's (status, one-line reason, details).
    """
    from edge.runtime import load_runner

    rows = {}
    for p, path in artifacts.items():
        with load_runner(path, **runner_opts) as r:
            rows[p] = latency_row(r.infer, r.host_input(images[:16]), doc.iterations)
    text = "; ".join(f"{p} {v['median_ms']} ms / {v['images_per_s']} img/s" for p, v in rows.items())
    best = max(rows, key=lambda k: rows[k]["images_per_s"])
    doc.throughput[key] = {**rows[best], "artifact": Path(artifacts[best]).name}
    return "pass", f"{what}, batch 16: {text}", {"rows": rows}


def latency_row(run: Callable[[np.ndarray], Any], x: np.ndarray, iterations: int = 20) -> Dict[str, float]:
    """Median ms per batch and images/s for ``run(x)`` (after one warm-up call)."""
    run(x)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"batch": int(len(x)), "median_ms": round(med * 1e3, 3), "images_per_s": round(len(x) / med, 1)}


def daemon_run(model: Path, sample_images: List[np.ndarray], labels: np.ndarray, classes: List[str],
               frames: int = 4) -> tuple:
    """A short capture-daemon run on a generated line (sample tiles laid 4 x 2 per frame)."""
    import cv2

    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon

    tile = int(sample_images[0].shape[0])
    cols, rows = 4, 2
    with tempfile.TemporaryDirectory(prefix="edge-doctor-line-") as tmp:
        tmp = Path(tmp)
        (tmp / "frames").mkdir()
        truth = {}
        rng = np.random.default_rng(0)
        for f in range(frames):
            idx = rng.choice(len(sample_images), cols * rows, replace=False)
            frame = np.zeros((rows * tile, cols * tile), np.uint8)
            for k, i in enumerate(idx):
                r, c = divmod(k, cols)
                img = sample_images[i] if sample_images[i].ndim == 2 else sample_images[i][..., 0]
                frame[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = img
                truth[(f, k)] = int(labels[i])
            cv2.imwrite(str(tmp / "frames" / f"{f:04d}.png"), frame)
        cfg = CaptureConfig(model=str(model), source=str(tmp / "frames"), tile=tile, stride=tile, batch=16,
                            events=str(tmp / "events.jsonl"), log_all=True, threshold=0.0)
        summary = CaptureDaemon(cfg).run()
        events = [json.loads(ln) for ln in (tmp / "events.jsonl").read_text().splitlines() if ln.strip()]
    # frames are read in name order: event frame indices count from 0 or 1 depending on the source
    base = min(e["frame"] for e in events) if events else 0
    # a tile labelled "unknown" (the model's open-set score above its threshold) is not right
    correct = sum(e["label"] in classes and classes.index(e["label"]) == truth.get(
        (e["frame"] - base, int(e["id"].split("-")[1])), -1) for e in events)
    unknown = sum(e["label"] == "unknown" for e in events)
    n = len(truth)
    data = {"frames": frames, "tiles": n, "events": len(events), "correct": int(correct), "unknown": unknown,
            "tiles_per_s": summary.get("tiles_per_s")}
    if len(events) != n:
        return "fail", f"{len(events)} events for {n} tiles of {frames} frames (--log-all)", data
    return "pass", (f"{frames} frames x {cols * rows} tiles: {correct}/{n} tiles right ({unknown} unknown), "
                    f"{summary.get('tiles_per_s')} tiles/s"), data


def chain_checks(doc: Doctor, model: Path, data: Optional[str]) -> None:
    """The ONNX Runtime chain, then the TensorRT engines and runner modes where the device allows."""
    arts = find_artifacts(model)
    sample = find_sample(data)
    if not arts or "fp32" not in arts:
        doc.add("chain", "artifacts", "skip", f"no ONNX artifacts (model.onnx + .json) in {model} or {model}/onnx: "
                "make them with edge-convert MODEL.keras --fp16 --int8 -o DIR on a workstation")
        return
    doc.add("chain", "artifacts", "pass", f"{', '.join(sorted(p.name for p in arts.values()))} in {arts['fp32'].parent}")
    if sample is None:
        doc.add("chain", "sample", "skip", "no NEU sample (data/neu-sample): pass --data DIR of NEU images")
        return
    chain = Chain(arts, sample)
    doc.add("chain", "sample", "pass", f"{len(chain.images)} images of {sample}")

    def ort_ref():
        chain.ref = chain.ort("fp32")
        return compare(chain.ref, chain.ref, chain.labels, "fp32")

    doc.run("chain", "onnxruntime fp32", ort_ref)
    if chain.ref is None:
        return
    for p in ("fp16", "int8"):
        if p in arts:
            doc.run("chain", f"onnxruntime {p}", lambda p=p: compare(chain.ref, chain.ort(p), chain.labels, p))
        else:
            doc.add("chain", f"onnxruntime {p}", "skip", f"no {ONNX_FILES[p]} beside model.onnx")

    def ort_latency():
        return latency_rows(doc, arts, chain.images, "onnxruntime", "ONNX Runtime CPU", backend="onnxruntime",
                            warmup=1)

    doc.run("chain", "onnxruntime latency", ort_latency)
    daemon_model = arts.get("int8", arts["fp32"])
    doc.run("chain", "daemon (onnxruntime)", lambda: daemon_run(daemon_model, chain.images, chain.labels,
                                                               list(chain.ds.classes)))
    trt_checks(doc, chain)


def trt_checks(doc: Doctor, chain: Chain) -> None:
    """Engines, engine-vs-ORT, runner modes, latency and the daemon on the engine (device only)."""
    import importlib.util

    from edge.cuda import gpu_status

    names = ["engine fp16", "engine int8", "runner modes", "engine latency", "daemon (tensorrt)"]
    if importlib.util.find_spec("tensorrt") is None:
        for n in names:
            doc.add("tensorrt", n, "skip", "TensorRT is not installed here")
        return
    ok, why = gpu_status()
    if not ok:
        for n in names:
            doc.add("tensorrt", n, "skip", f"no usable CUDA GPU ({why})")
        return
    from convert.tensorrt import build_from_onnx
    from edge.runtime import load_runner

    engines: Dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edge-doctor-trt-") as tmp:
        tmp = Path(tmp)
        for p in ("fp16", "int8"):
            if p not in chain.artifacts:
                doc.add("tensorrt", f"engine {p}", "skip", f"no {ONNX_FILES[p]}")
                continue

            def build_and_compare(p=p):
                # --from-onnx takes the precision from the artifact's metadata: model.fp16.onnx
                # builds the FP16 engine on every branch, model.int8.onnx the Q/DQ INT8 one.
                with muted("convert"):  # the check's own line reports the build
                    eng = build_from_onnx(str(chain.artifacts[p]), out_dir=str(tmp / p),
                                          timing_cache=str(tmp / "timing.cache"))
                engines[p] = eng
                with load_runner(eng, warmup=1) as r:
                    out = np.concatenate([r.infer_images(chain.images[i:i + 16])
                                          for i in range(0, len(chain.images), 16)])
                st, text, data = compare(chain.ref, out, chain.labels, p)
                return st, f"{eng.name}: {text}", data

            doc.run("tensorrt", f"engine {p}", build_and_compare)
        if not engines:
            return
        eng = engines.get("int8") or next(iter(engines.values()))
        doc.run("tensorrt", "runner modes", lambda: runner_modes(eng, chain))

        def trt_latency():
            return latency_rows(doc, engines, chain.images, "tensorrt", "TensorRT", warmup=2)

        doc.run("tensorrt", "engine latency", trt_latency)
        doc.run("tensorrt", "daemon (tensorrt)", lambda: daemon_run(eng, chain.images, chain.labels,
                                                                   list(chain.ds.classes)))


def runner_modes(engine: Path, chain: Chain) -> tuple:
    """Every backend x graph x zero-copy mode the device allows, at batch 1, 16 and an odd tail."""
    from edge.runtime import load_runner

    with load_runner(engine, warmup=1) as r:
        x = r.host_input(chain.images[:16])
        base = {n: r.infer(x[:n]) for n in (1, 16, 7)}
        integrated = r.be.device_info().integrated
    rows, bad = [], []
    for backend in ("cuda-python", "pycuda"):
        for graph in (False, True):
            for zc in ((False, True) if integrated else (False,)):
                mode = f"{backend} graph={'on' if graph else 'off'} zero-copy={'on' if zc else 'off'}"
                try:
                    with load_runner(engine, warmup=1, cuda_backend=backend, cuda_graph=graph, zero_copy=zc) as r:
                        diffs = [float(np.abs(r.infer(x[:n]) - base[n]).max()) for n in (1, 16, 7, 16, 1)]
                        piped = np.concatenate(list(r.infer_batches([x, x[:7], x])))
                        diffs.append(float(np.abs(piped - np.concatenate([base[16], base[7], base[16]])).max()))
                    d = max(diffs)
                    rows.append({"mode": mode, "max_abs_diff": d})
                    if d > 1e-5:
                        bad.append(f"{mode}: max abs diff {d:.2e}")
                except EdgeError as e:
                    expected = backend == "pycuda" and (graph or "pycuda is not installed" in str(e))
                    rows.append({"mode": mode, "refused": str(e)})
                    if not expected:
                        bad.append(f"{mode}: {e}")
    if bad:
        return "fail", "; ".join(bad), {"modes": rows}
    ran = sum("max_abs_diff" in r for r in rows)
    return "pass", f"{ran} mode(s) match the plain run at batch 1, 16, 7 and pipelined; " \
                   f"{len(rows) - ran} refused as expected", {"modes": rows}


# ============================================================================ report
def to_markdown(report: Dict[str, Any]) -> str:
    s = report["summary"]
    lines = ["# edge-doctor report", "",
             f"{report['host']['platform']}, {report['host']['cpu']} ({report['host']['cpus']} CPUs), "
             f"Python {report['host']['python']}, {report['time']}", "",
             f"**{s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['skip']} skip** "
             f"({'nothing failed' if not s['fail'] else 'FAILED'})", "",
             "| section | check | status | reason |", "|---|---|---|---|"]
    for c in report["checks"]:
        lines.append(f"| {c['section']} | {c['name']} | {c['status']} | {c['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Check the platform, the Python stack and the whole chain "
                                "(ONNX Runtime, TensorRT engines, runner modes, daemon) on this device.")
    p.add_argument("--model", default=str(ROOT / "models" / "neu-compact"),
                   help="model folder with the ONNX artifacts (or onnx/ inside it), or one artifact in it")
    p.add_argument("--data", help="NEU images for the chain checks (default: data/neu-sample)")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--md", metavar="OUT.md", help="write the report as Markdown")
    p.add_argument("--quick", action="store_true", help="platform and Python stack only (no model, no builds)")
    p.add_argument("--line-speed", type=float, metavar="M/S", help="line speed for the line-capacity verdict")
    p.add_argument("--strip-width", type=float, metavar="MM", help="strip width (line capacity)")
    p.add_argument("--mm-per-px", type=float, metavar="MM", help="camera resolution on the strip (line capacity)")
    p.add_argument("--tile", type=int, default=200, help="daemon tile size in px (line capacity; default 200)")
    p.add_argument("--iterations", type=int, default=20, help="timed batches per latency row (default 20)")
    return add_log_flags(p)


def run_doctor(model: str, data: Optional[str] = None, quick: bool = False,
               line: Optional[Dict[str, float]] = None,
               iterations: int = 20) -> Dict[str, Any]:
    """Run every check; the report dict (``checks``, ``summary``, ``host``)."""
    doc = Doctor()
    doc.iterations = int(iterations)
    for name, fn in [("l4t", check_l4t), ("gpu", check_gpu), ("cuda versions", check_cuda_versions),
                     ("power mode", check_power), ("clocks", check_clocks), ("memory and disk", check_memory_disk)]:
        doc.run("platform", name, fn)
    for name, fn in [("python", check_python), ("tensorrt", check_tensorrt), ("cuda libraries", check_cuda_libs),
                     ("numpy and opencv", check_numpy_opencv), ("png decoding", check_png_decoding),
                     ("onnxruntime", check_onnxruntime)]:
        doc.run("stack", name, fn)
    if quick:
        doc.add("chain", "all", "skip", "--quick: no model checks")
    else:
        m = Path(model)
        if not m.exists():
            raise EdgeError(f"--model {model} does not exist")
        chain_checks(doc, m, data)
        doc.run("line", "capacity", lambda: check_capacity(doc, line))
    return {"tool": PROG, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"platform": platform.platform(), "machine": platform.machine(), "python": sys.version.split()[0],
                     "cpu": _cpu_name(), "cpus": os.cpu_count()},
            "model": str(model), "summary": doc.summary(), "checks": [asdict(c) for c in doc.checks]}


def _cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


@cli_entry(PROG)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from edge.fsutil import atomic_path

    given = [v is not None for v in (args.line_speed, args.strip_width, args.mm_per_px)]
    if any(given) and not all(given):
        raise EdgeError("the line-capacity verdict needs --line-speed, --strip-width and --mm-per-px together")
    line = ({"line_speed": args.line_speed, "strip_width": args.strip_width, "mm_per_px": args.mm_per_px,
             "tile": args.tile} if all(given) else None)
    if args.iterations < 1:
        raise EdgeError(f"--iterations must be >= 1, got {args.iterations}")
    report = run_doctor(args.model, args.data, args.quick, line=line, iterations=args.iterations)
    if args.json:
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.md:
        with atomic_path(args.md) as tmp:
            Path(tmp).write_text(to_markdown(report))
    s = report["summary"]
    print(f"{PROG}: {s['pass']} pass, {s['warn']} warn, {s['fail']} fail, {s['skip']} skip")
    return 1 if s["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
