"""A Triton Inference Server model repository from edge-convert's artifacts (``edge-convert ... --triton-repo DIR``).

One Triton model per artifact, named after the source model's folder (``models/neu-compact`` →
``neu-compact``)::

    DIR/neu-compact/config.pbtxt          model.onnx (FP32), platform onnxruntime_onnx
    DIR/neu-compact/labels.txt            the classes, one per line (label_filename of the output)
    DIR/neu-compact/1/model.onnx
    DIR/neu-compact-fp16/...              model.fp16.onnx
    DIR/neu-compact-int8/...              model.int8.onnx (Q/DQ)
    DIR/neu-compact-int8-cpu/...          model.int8cpu.onnx (instance_group KIND_CPU)
    DIR/neu-compact-trt-int8/1/model.sm87.plan ...   engines, platform tensorrt_plan; engines of one
                                          precision for several compute capabilities share one model
                                          with cc_model_filenames

``max_batch_size`` and the input / output dims (batch dimension left out) come from the metadata
(an engine's profile gives its largest batch; a dynamic ONNX batch gets ``max_batch``); every
batching model gets ``dynamic_batching`` and an ``instance_group``. The artifact's metadata travels
in the config as the parameter ``steel_edge.metadata`` (JSON: classes, preprocessing, input form),
which :class:`edge.runtime.triton.TritonRunner` reads back from the server.

**Preprocessing.** Artifacts made with ``edge-convert --uint8-tiles SIZE`` take uint8 gray tiles and
do the resize and scaling inside the graph: the repository then serves exactly what the Jetson
runs, any Triton client can send raw tiles (``TYPE_UINT8``), and no Python backend is needed. This
is the recommended form, and why no ensemble is written: a Python-backend preprocessing step would
be a second implementation of :class:`edge.preprocess.Preprocess` running on the server's CPU, one
more model to version, and a copy between the two steps, for what the folded graph already does on
the GPU. Float-input artifacts are written as they are (``TYPE_FP32``, preprocessed batches in): the
client preprocesses on the host from ``steel_edge.metadata`` (TritonRunner does), as the ONNX
Runtime and TensorRT runners do.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edge.errors import EdgeError, param

log = logging.getLogger(__name__)

#: numpy / metadata dtype → Triton data type.
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8",
          "int32": "TYPE_INT32", "int64": "TYPE_INT64"}
META_KEY = "steel_edge.metadata"
#: Largest batch of a dynamic-batch ONNX model in Triton (engines: their profile).
DEFAULT_MAX_BATCH = 32


def _model_base(meta: Dict[str, Any], fallback: str) -> str:
    src = (meta.get("source_model") or {}).get("path")
    name = Path(src).parent.name if src else fallback
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"
    return name


def _variant(meta: Dict[str, Any], path: Path) -> str:
    prec = str(meta.get("precision") or "fp32")
    if meta.get("format") == "engine" or path.suffix in (".engine", ".plan"):
        return f"trt-{prec}" + (f"-dla{meta['tensorrt']['dla_core']}"
                                if (meta.get("tensorrt") or {}).get("dla_core") is not None else "")
    return "" if prec == "fp32" else prec


def _io(meta: Dict[str, Any], which: str) -> Dict[str, Any]:
    io = meta.get(which)
    if not isinstance(io, dict) or not io.get("name") or not isinstance(io.get("shape"), list) or len(io["shape"]) < 2:
        raise EdgeError(f"metadata has no usable '{which}' (name and shape with a batch dimension)")
    dtype = str(io.get("dtype", "float32"))
    if dtype not in DTYPES:
        raise EdgeError(f"metadata '{which}' dtype {dtype} has no Triton type")
    return io


def model_config(name: str, meta: Dict[str, Any], platform: str, max_batch: int = DEFAULT_MAX_BATCH,
                 instances: int = 1, kind: str = "KIND_GPU", cc_files: Optional[Dict[str, str]] = None,
                 default_file: Optional[str] = None, queue_delay_us: int = 500):
    """The ``ModelConfig`` protobuf (tritonclient.grpc.model_config_pb2) of one artifact.

    Raises:
        EdgeError: metadata without input/output, a dtype Triton lacks, tritonclient missing.
    """
    try:
        from tritonclient.grpc import model_config_pb2 as mc
    except ImportError:
        raise EdgeError(f"{param('triton_repo')} needs tritonclient[grpc] (pip install 'steel-edge[plant]'): its "
                        "ModelConfig protobuf writes and checks config.pbtxt") from None
    inp, out = _io(meta, "input"), _io(meta, "output")
    batch_dim = inp["shape"][0]
    cfg = mc.ModelConfig(name=name, platform=platform)
    if batch_dim in (-1, None):
        prof = (meta.get("tensorrt") or {}).get("profile")
        cfg.max_batch_size = int(prof[-1]) if prof else int(max_batch)
        in_dims, out_dims = inp["shape"][1:], out["shape"][1:]
    else:   # a fixed-batch artifact: no batching, the batch dimension is part of the dims
        cfg.max_batch_size = 0
        in_dims, out_dims = inp["shape"], out["shape"]
    i = cfg.input.add(name=inp["name"], data_type=getattr(mc.DataType, DTYPES[inp.get("dtype", "float32")]),
                      dims=[int(d) for d in in_dims])
    if str(inp.get("layout", "NHWC")).upper() == "NHWC" and len(in_dims) == 3:
        i.format = mc.ModelInput.FORMAT_NHWC
    cfg.output.add(name=out["name"], data_type=getattr(mc.DataType, DTYPES[out.get("dtype", "float32")]),
                   dims=[int(d) for d in out_dims], label_filename="labels.txt")
    if meta.get("ood"):  # the open-set score output of a model made with python -m train.ood: (N, 1)
        from edge.ood import SCORE_OUTPUT

        cfg.output.add(name=SCORE_OUTPUT, data_type=mc.DataType.TYPE_FP32,
                       dims=[1] if cfg.max_batch_size > 0 else [int(inp["shape"][0]), 1])
    if cfg.max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = int(queue_delay_us)
        pref = [b for b in (4, 8, 16, 32) if b <= cfg.max_batch_size]
        cfg.dynamic_batching.preferred_batch_size.extend(pref[-2:])
    cfg.instance_group.add(count=int(instances), kind=getattr(mc.ModelInstanceGroup.Kind, kind))
    if default_file:
        cfg.default_model_filename = default_file
    for cc, f in sorted((cc_files or {}).items()):
        cfg.cc_model_filenames[cc] = f
    slim = {k: meta[k] for k in ("classes", "preprocess", "input", "output", "precision", "format", "source_model",
                                 "ood") if k in meta}
    slim["source_sha256"] = (meta.get("source_model") or {}).get("sha256")
    cfg.parameters[META_KEY].string_value = json.dumps(slim, separators=(",", ":"))
    return cfg


def to_pbtxt(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def parse_pbtxt(text: str):
    """``config.pbtxt`` text → ``ModelConfig`` (raises EdgeError on a parse error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as e:
        raise EdgeError(f"config.pbtxt does not parse as Triton's ModelConfig: {e}") from None


def _artifacts(paths: Sequence[Path]) -> List[Tuple[Path, Dict[str, Any]]]:
    from edge.metadata import read_meta

    out, skipped = [], []
    for p in paths:
        if p.suffix not in (".onnx", ".engine", ".plan"):
            continue
        meta = read_meta(p)
        if meta.get("format") not in ("onnx", "engine"):
            continue
        if (meta.get("drift_gate") or {}).get("passed") is False:
            skipped.append(p.name)
            continue
        out.append((p, meta))
    if skipped:
        log.info(f"triton: left out {', '.join(skipped)} (its drift gate failed)")
    if not out:
        raise EdgeError("no ONNX or engine artifact with edge-convert metadata to put in the Triton repository")
    return out


def write_repository(artifacts: Sequence[str | Path], repo: str | Path, name: Optional[str] = None,
                     max_batch: int = DEFAULT_MAX_BATCH, instances: int = 1) -> List[Path]:
    """Write (or add to) a Triton model repository; return the model folders written.

    Each model folder is written whole in a staging folder and then moved into place, replacing an
    older one of the same name; other models of the repository are left alone.

    Args:
        artifacts: ONNX / engine files with their ``.json`` metadata (other files are skipped).
        repo: The repository folder (created).
        name: Base model name (default: the source model's folder name).
        max_batch: ``max_batch_size`` of dynamic-batch ONNX models.
        instances: Instances per model (``instance_group.count``).
    """
    from edge.fsutil import staged_dir

    arts = _artifacts([Path(a) for a in artifacts])
    repo = Path(repo)
    groups: Dict[str, List[Tuple[Path, Dict[str, Any]]]] = {}
    for p, meta in arts:
        base = name or _model_base(meta, p.parent.name)
        v = _variant(meta, p)
        groups.setdefault(f"{base}-{v}" if v else base, []).append((p, meta))
    written = []
    repo.mkdir(parents=True, exist_ok=True)
    for mname, items in sorted(groups.items()):
        p0, meta0 = items[0]
        engine = meta0.get("format") == "engine"
        files: Dict[str, Path] = {}
        cc_files: Dict[str, str] = {}
        if engine:
            default = "model.plan"
            for p, meta in items:
                cc = str((meta.get("tensorrt") or {}).get("compute_capability") or "")
                if not cc:
                    raise EdgeError(f"{p.name}.json has no tensorrt.compute_capability")
                if cc in cc_files:
                    raise EdgeError(f"two {meta.get('precision')} engines for compute capability {cc}: "
                                    f"{Path(files[cc_files[cc]]).name} and {p.name}; keep one")
                f = f"model.sm{cc.replace('.', '')}.plan" if len(items) > 1 else default
                files[f] = p
                cc_files[cc] = f
            for p, meta in items[1:]:
                if (meta.get("input"), meta.get("output"), meta.get("classes")) != \
                        (meta0.get("input"), meta0.get("output"), meta0.get("classes")):
                    raise EdgeError(f"{p.name} and {p0.name} differ in input/output/classes: not one Triton model")
            platform = "tensorrt_plan"
            kind = "KIND_GPU"
            cfg = model_config(mname, meta0, platform, max_batch, instances, kind,
                               cc_files if len(items) > 1 else None, None)
        else:
            if len(items) > 1:
                raise EdgeError(f"two ONNX artifacts map to the Triton model {mname}: "
                                f"{', '.join(p.name for p, _ in items)}")
            files["model.onnx"] = p0
            kind = "KIND_CPU" if meta0.get("precision") == "int8-cpu" else "KIND_GPU"
            cfg = model_config(mname, meta0, "onnxruntime_onnx", max_batch, instances, kind)
        with staged_dir(repo / mname, force=True) as stage:
            (stage / "1").mkdir()
            for f, src in files.items():
                shutil.copyfile(src, stage / "1" / f)
                shutil.copyfile(Path(str(src) + ".json"), stage / "1" / (f + ".json"))
            (stage / "labels.txt").write_text("\n".join(meta0["classes"]) + "\n")
            (stage / "config.pbtxt").write_text(to_pbtxt(cfg))
        written.append(repo / mname)
        form = (meta0.get("input") or {}).get("form", "float")
        log.info(f"triton: {repo / mname} ({cfg.platform}, max_batch_size {cfg.max_batch_size}, "
                 f"{'uint8 tiles in, preprocessing in the graph' if form == 'uint8_tiles' else 'float input: preprocess on the client'}"
                 f"{', ' + str(len(cc_files)) + ' compute capabilities' if len(cc_files) > 1 else ''})")
    return written


def repository_for(out_dir: str | Path, repo: str | Path) -> List[Path]:
    """Every artifact of an edge-convert output folder (or the folder of one artifact) into ``repo``."""
    out_dir = Path(out_dir)
    files = sorted(f for f in out_dir.iterdir() if f.suffix in (".onnx", ".engine", ".plan")
                   and Path(str(f) + ".json").is_file() and not f.is_symlink())   # model.int8.engine: a link
    return write_repository(files, repo)
