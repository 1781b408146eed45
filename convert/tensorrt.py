"""TensorRT engine building from the ONNX artifacts (explicit quantization for INT8).

Every version fork goes through the builder section of :mod:`edge.runtime.tensorrt.compat`.
A GPU is checked for *before* ``import tensorrt`` touches CUDA: without one, ``trt.Runtime()`` /
``trt.Builder()`` log CUDA error 35 and the next call segfaults.

Engines are named ``model.<precision>.b<batch>.trt<version>.<gpu>-sm<cc>.engine`` (e.g.
``model.int8.b1-32.trt10.3.0.30.orin-sm87.engine``) so a wrong TensorRT or GPU is obvious from the
name, with a stable link ``model.<precision>.engine`` (+ its ``.json``) to the latest build: the
name ``jetson/capture.toml`` and ``jetson/README.md`` use. Each carries a metadata JSON with the TensorRT version, GPU and compute capability, which
:func:`edge.runtime.tensorrt.loader.check_engine_compat` checks before deserializing.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from edge.errors import BackendError, EdgeError, param
from edge.formats import engine_for, onnx_for

log = logging.getLogger(__name__)



def tensorrt_installed() -> bool:
    """True when a ``tensorrt`` module can be found (without importing it)."""
    return importlib.util.find_spec("tensorrt") is not None


def gpu_status() -> tuple:
    """(usable, one-line reason when not): :func:`edge.cuda.gpu_status`."""
    from edge.cuda import gpu_status as status

    return status()


@dataclass
class EnginePlan:
    """Whether this run builds engines, and the line to print if it does not."""

    build: bool
    message: str = ""


def engine_plan(mode: str, installed: Optional[bool] = None, gpu: Optional[bool] = None) -> EnginePlan:
    """Decide about engines for ``engine="auto"|"always"|"never"``.

    Raises:
        EdgeError: ``always`` without TensorRT or without a GPU (the request cannot be met here: bad
            input, exit 2, as before).
    """
    if mode == "never":
        return EnginePlan(False)
    installed = tensorrt_installed() if installed is None else installed
    no_gpu = ""
    if gpu is None:
        gpu, no_gpu = (gpu_status() if installed else (False, ""))
    no_gpu = f": {no_gpu}" if no_gpu else ""
    if mode == "always":
        if not installed:
            raise EdgeError(f"{param('engine', 'always')}: TensorRT is not installed here; build on the target with "
                            f"edge-convert --from-onnx OUTDIR/{onnx_for('int8').file} (or use {param('engine', 'auto')})")
        if not gpu:
            raise EdgeError(f"{param('engine', 'always')}: TensorRT is installed but no CUDA GPU is visible "
                            f"(building without one crashes TensorRT){no_gpu}")
        return EnginePlan(True)
    if mode != "auto":
        raise EdgeError(f"{param('engine')} must be auto, always or never, got {mode!r}")
    if installed and gpu:
        return EnginePlan(True)
    # the message is str.format-ed with {out} later: braces of the reason are escaped
    why = ("TensorRT is not installed" if not installed
           else "no CUDA GPU is visible" + no_gpu.replace("{", "{{").replace("}", "}}"))
    return EnginePlan(False, f"no TensorRT engine built ({why}): build it on the target with "
                             "`edge-convert --from-onnx {out}/" + onnx_for("int8").file + "`")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    for prefix in ("nvidia-", "geforce-"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return s or "gpu"


def engine_name(precision: str, batch: Optional[int], max_batch: int, trt_version: str, gpu: str, cc: str,
                dla: Optional[int] = None) -> str:
    """The engine file name: model, precision, batch range, TensorRT version, GPU and sm."""
    b = f"b{batch}" if batch else f"b1-{max_batch}"
    dev = f"{_slug(gpu)}-sm{str(cc).replace('.', '')}" + (f"-dla{dla}" if dla is not None else "")
    return engine_for(precision).file.format(tag=f"{b}.trt{trt_version}.{dev}")


def _device():
    from edge.cuda import get_backend

    return get_backend("auto").device_info(0)


def fp16_kept_nodes(meta: Dict, onnx_path: Path) -> Dict[str, list]:
    """The nodes (and their output tensors) the FP16 ONNX beside ``onnx_path`` keeps in FP32.

    Read from ``model.fp16.onnx.json`` (``fp16.kept_fp32``), or from ``meta`` itself when it is
    that file's metadata. Empty when there is no FP16 artifact.
    """
    from edge.metadata import read_meta

    src = Path(onnx_path)
    m16 = meta if meta.get("precision") == "fp16" else None
    f16 = src.parent / onnx_for("fp16").file
    if m16 is None and f16.is_file() and Path(str(f16) + ".json").is_file():
        m16 = read_meta(f16)
    nodes = list(((m16 or {}).get("fp16") or {}).get("kept_fp32") or [])
    if not nodes:
        return {"nodes": [], "tensors": []}
    import onnx

    g = onnx.load(str(src), load_external_data=False).graph
    tensors = [o for n in g.node if n.name in nodes for o in n.output]
    return {"nodes": nodes, "tensors": tensors}


#: The capture daemon's batch (edge-capture --batch): the profile's opt, what TensorRT tunes for.
DAEMON_BATCH = 16


def profile_batches(batch: Optional[int], max_batch: int, opt_batch: int = DAEMON_BATCH,
                    dla: Optional[int] = None) -> tuple:
    """(min, opt, max) batch of the optimization profile.

    Dynamic: 1 .. max_batch with opt = the daemon's batch (clamped into the range), not max.
    Fixed (``batch``) or DLA: static, min = opt = max (the DLA has no dynamic shapes; with a
    dynamic profile and GPU fallback everything silently runs on the GPU); a DLA build of a
    dynamic ONNX takes the daemon's batch.
    """
    if max_batch < 1 or opt_batch < 1:
        raise EdgeError(f"batch sizes must be >= 1 (max {max_batch}, opt {opt_batch})")
    if batch:
        return (batch, batch, batch)
    if dla is not None:
        b = min(opt_batch, max_batch)
        return (b, b, b)
    return (1, min(max(opt_batch, 1), max_batch), max_batch)


def link_alias(engine: Path, precision: str) -> Path:
    """``model.<precision>.engine`` (and ``.json``) -> the versioned engine file, replaced atomically."""
    import os

    alias = engine.parent / engine_for(precision).engine_alias
    for src, dst in ((engine.name, alias), (engine.name + ".json", Path(str(alias) + ".json"))):
        tmp = dst.parent / f".{dst.name}.tmp-link"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(src, tmp)
        os.replace(tmp, dst)
    return alias


def _import_trt(trt=None):
    """The tensorrt module, imported only after a GPU was seen (see the module docstring)."""
    if trt is not None:
        return trt
    ok, why = gpu_status()
    if not ok:
        raise EdgeError(f"no CUDA GPU is visible ({why}): TensorRT engines can only be built on the target GPU")
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeError("TensorRT is not installed (on Jetson it comes with JetPack)") from None
    return trt


def _network(trt, onnx_path: Path, precision: str, version):
    """(builder, network, parser, logger) with the ONNX file parsed into the network."""
    from edge.runtime.tensorrt import compat

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(compat.network_flags(trt, precision))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT {version} cannot parse {Path(onnx_path).name}: {errs[:300]}")
    return builder, network, parser, logger


def _configure(trt, builder, network, meta: Dict, onnx_path: Path, precision: str, batch: Optional[int],
               max_batch: int, opt_batch: int, workspace_mib: int, dla: Optional[int]) -> Dict:
    """The builder config: workspace, precision flags, FP32-pinned layers, profile, DLA.

    Returns:
        ``{"config", "pinned", "profile", "batch", "dims", "placement"}``.
    """
    from edge.runtime.tensorrt import compat

    config = builder.create_builder_config()
    compat.set_workspace(trt, config, workspace_mib)
    for flag in compat.precision_flags(trt, precision):
        config.set_flag(flag)
    pinned = []
    if precision == "fp16":
        keep = fp16_kept_nodes(meta, onnx_path)
        pinned = compat.keep_fp32_layers(trt, network, config, **keep)
        if pinned:
            log.info(f"keeping {len(pinned)} layer(s) in FP32 as {onnx_for('fp16').file} does: {', '.join(pinned)}")
    inp = network.get_input(0)
    dims = tuple(int(d) for d in inp.shape)
    prof = None
    if dims[0] == -1:
        prof = profile_batches(batch, max_batch, opt_batch, dla)
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, *[(b, *dims[1:]) for b in prof])
        config.add_optimization_profile(profile)
        if dla is not None:
            batch = prof[0]  # static
    placement = None
    if dla is not None:
        compat.use_dla(trt, builder, config, dla)
        placement = compat.dla_placement(trt, network, config)
        log.info(f"DLA core {dla}: {len(placement['dla'])} layer(s) on the DLA, {len(placement['gpu'])} fall back to "
                 f"the GPU{': ' + ', '.join(placement['gpu'][:8]) if placement['gpu'] else ''}")
    return {"config": config, "pinned": pinned, "profile": prof, "batch": batch, "dims": dims, "placement": placement}


def _engine_meta(meta: Dict, onnx_path: Path, precision: str, trt, dev, dla: Optional[int], workspace_mib: int,
                 built: Dict, seconds: float) -> Dict:
    """The engine's metadata: its ONNX artifact's (classes, input, preprocessing, calibration, gate) + TensorRT's."""
    from edge.metadata import ArtifactMeta

    return ArtifactMeta.from_dict(meta).derive(
        engine_for(precision), keep=("calibration", "drift_gate"), source_onnx=Path(onnx_path).name,
        tensorrt={"version": str(trt.__version__), "gpu": dev.name, "compute_capability": dev.compute_capability,
                  "dla_core": dla, "dla_placement": built["placement"], "workspace_mib": workspace_mib,
                  "fp32_layers": built["pinned"], "profile": list(built["profile"]) if built["profile"] else None,
                  "build_seconds": round(seconds, 1)}).to_dict()


def build_engine(onnx_path: Path, meta: Dict, out_dir: Path, precision: str, batch: Optional[int] = None,
                 max_batch: int = 32, workspace_mib: int = 1024, dla: Optional[int] = None,
                 timing_cache: Optional[str] = None, trt=None, opt_batch: int = DAEMON_BATCH) -> Path:
    """Build one engine with TensorRT from an ONNX artifact (progress: this module's logger).

    Args:
        onnx_path: The ONNX file for this precision (see :func:`edge.runtime.tensorrt.compat.onnx_for_precision`).
        meta: Its metadata (classes, input, preprocessing are copied to the engine's).
        out_dir: Folder for the engine and its JSON.
        precision: ``fp32``, ``fp16`` or ``int8``.
        batch: Fixed batch (1) or None for a dynamic profile 1..max_batch.
        max_batch: Largest batch of the profile.
        opt_batch: The profile's opt batch (the daemon's batch, 16); DLA builds are static at it.
        workspace_mib: Workspace memory pool limit.
        dla: DLA core (GPU fallback on; static shape; FP16/INT8 only) or None.
        timing_cache: File to load the timing cache from and save it back to.
        trt: The tensorrt module (default: import it, after checking for a GPU).

    Returns:
        The engine path.

    Raises:
        EdgeError: no GPU or TensorRT here, a DLA build that cannot run on the DLA.
        BackendError: TensorRT cannot parse the ONNX file or fails to build the engine.
    """
    from edge.fsutil import atomic_path
    from edge.metadata import write_meta
    from edge.runtime.tensorrt import compat

    trt = _import_trt(trt)
    version = compat.version_of(trt)
    compat.builder_branch(version)  # refuses < 8.5
    if dla is not None:
        compat.check_dla(trt, precision, quantized=meta.get("precision") == "int8")
    dev = _device()
    builder, network, parser, logger = _network(trt, onnx_path, precision, version)
    built = _configure(trt, builder, network, meta, onnx_path, precision, batch, max_batch, opt_batch,
                       workspace_mib, dla)
    config, batch = built["config"], built["batch"]
    cache_data = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = compat.set_timing_cache(trt, config, cache_data)
    monitor = compat.attach_progress(trt, config)  # kept referenced during the build
    log.info(f"building TensorRT {version} {precision} engine from {Path(onnx_path).name} on {dev.name} ...")
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    del monitor
    if plan is None:
        raise BackendError(f"TensorRT {version} failed to build the {precision} engine (see the log above)")
    if built["dims"][0] != -1:  # fixed-batch ONNX: the engine takes exactly that batch
        batch = built["dims"][0]
    name = engine_name(precision, batch, max_batch, str(version), dev.name, dev.compute_capability, dla)
    out = Path(out_dir) / name
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))
    if timing_cache:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    emeta = _engine_meta(meta, onnx_path, precision, trt, dev, dla, workspace_mib, built, time.perf_counter() - t0)
    write_meta(out, emeta)
    alias = link_alias(out, precision)
    log.info(f"{name}: built in {emeta['tensorrt']['build_seconds']} s ({alias.name} links to it)")
    return out


def build_from_onnx(onnx_file: str, out_dir: Optional[str] = None, batch: Optional[int] = None, max_batch: int = 32,
                    workspace_mib: int = 1024, dla: Optional[int] = None, timing_cache: Optional[str] = None,
                    force: bool = False, opt_batch: int = DAEMON_BATCH) -> Path:
    """``edge-convert --from-onnx FILE.onnx``: an engine from an ONNX artifact and its metadata.

    The precision comes from the metadata (an INT8 build uses the Q/DQ ranges already in the
    graph: no calibration images are needed on the target). On TensorRT 11 an FP16 engine needs
    ``model.fp16.onnx`` (strongly typed), which is checked.

    Raises:
        EdgeError: missing file or metadata, not an edge-convert artifact, no TensorRT/GPU here.
    """
    from edge.metadata import read_meta

    src = Path(onnx_file)
    if not src.is_file():
        raise EdgeError(f"ONNX file {src} does not exist")
    if src.suffix != ".onnx":
        raise EdgeError(f"{src} is not an ONNX file (.onnx)")
    meta = read_meta(src)
    if meta.get("format") != "onnx" or "precision" not in meta:
        raise EdgeError(f"{src.name}.json is not edge-convert ONNX metadata (format onnx with a precision)")
    precision = meta["precision"]
    if precision == "int8-cpu":
        raise EdgeError(f"{src.name} is the CPU int8 model (uint8 activations): TensorRT needs the "
                        f"Q/DQ model {onnx_for('int8').file}")
    out = Path(out_dir) if out_dir else src.parent
    if not out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
    plan = engine_plan("always")
    assert plan.build
    import tensorrt as trt  # GPU checked by engine_plan

    from edge.runtime.tensorrt import compat

    if compat.builder_branch(compat.version_of(trt)) == "11" and precision == "fp32" \
            and src.name == onnx_for("fp32").file and (src.parent / onnx_for("fp16").file).exists():
        log.info("note: TensorRT 11 networks are strongly typed: this FP32 ONNX builds an FP32 engine; "
                 f"for FP16 pass {onnx_for('fp16').file}")
    existing = [p for p in out.glob(engine_for(precision).file.replace("{tag}", "*")) if not p.is_symlink()]
    if existing and not force:
        raise EdgeError(f"{existing[0]} already exists (use {param('force', True)} to rebuild)")
    if dla is not None:
        compat.check_dla(trt, precision, quantized=precision == "int8")
    return build_engine(src, meta, out, precision, batch=batch, max_batch=max_batch, workspace_mib=workspace_mib,
                        dla=dla, timing_cache=timing_cache, trt=trt, opt_batch=opt_batch)
