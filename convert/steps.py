"""The steps of :func:`convert.convert_model`: checks first, then one function per artifact kind of
the format table (:data:`edge.formats.FORMATS`), each writing its file and its metadata.

Order (each step may use what the previous ones made): FP32 ONNX (checked against Keras), FP16,
calibration, INT8 Q/DQ (+ drift gate), CPU int8 (+ its gate), preprocessing folded into the graphs
(after every float-input check), TensorRT engines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge.errors import InputError, param
from edge.formats import BASIC_LEVEL_WHY, CALIB_RECORD, by_name

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One conversion's inputs and what the steps made so far."""

    cfg: Any                      # convert.api.ConvertConfig, checked
    model_path: Path
    out: Path
    plan: Any                     # convert.tensorrt.EnginePlan
    model: Any                    # the Keras model
    meta0: Dict[str, Any]         # the Keras model's metadata
    prep: Any                     # edge.preprocess.Preprocess
    classes: List[str]
    split_file: Path
    calib: Any = None             # calibrate.reader.CalibrationSet
    x_check: Optional[np.ndarray] = None
    check_from: str = ""
    base: Dict[str, Any] = field(default_factory=dict)
    ref: Optional[np.ndarray] = None
    rr: Any = None                # calibrate.ranges result
    calib_meta: Optional[Dict[str, Any]] = None
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None
    excluded: List[str] = field(default_factory=list)
    made: Dict[str, str] = field(default_factory=dict)   # format name -> file name

    @property
    def need_calib(self) -> bool:
        return bool(self.cfg.int8 or self.cfg.int8_cpu)


def check_out_parent(out: Path) -> None:
    """Fail now, not after minutes of work, if the output folder cannot be created."""
    p = out.resolve().parent
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise InputError(f"output folder {out} is not writable: {p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable ({p} does not allow creating files)")


def prepare(model_path: Path, cfg) -> Job:
    """Every check that can fail before the work: output folder, TensorRT plan, model, split, images."""
    from convert.export import check_classifier
    from convert.tensorrt import engine_plan
    from edge.data import resolve_split_file
    from edge.metadata import read_meta
    from edge.preprocess import Preprocess
    from edge.runtime.keras import load_keras_model

    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise InputError(f"output folder {out} already exists (use {param('force', True)} to replace it)")
    check_out_parent(out)
    plan = engine_plan(cfg.engine)  # engine="always" without TensorRT is an error now, not after the work
    if not model_path.exists():
        raise InputError(f"model file {model_path} does not exist")
    meta0 = read_meta(model_path) if model_path.suffix == ".keras" else None
    model = load_keras_model(model_path)
    if meta0 is None:
        raise InputError(f"{model_path} has no metadata")
    if cfg.calib_method is None:   # the model's default: an open-set model's score needs its tails kept
        from convert.quantize import default_calib_method

        cfg = dataclasses.replace(cfg, calib_method=default_calib_method(meta0))
        if meta0.get("ood") and (cfg.int8 or cfg.int8_cpu):
            log.info(f"calibration method {cfg.calib_method}: the default for a model with an open-set score "
                     "(docs/results/open-set.md)")
    prep = Preprocess.from_dict(meta0["preprocess"])
    classes = list(meta0["classes"])
    check_classifier(model, classes, prep.input_shape)
    job = Job(cfg, model_path, out, plan, model, meta0, prep, classes,
              resolve_split_file(model_path, cfg.split_file, fallback=False))
    if job.need_calib:
        from calibrate.reader import calibration_set

        job.calib = calibration_set(cfg.calib_data, classes, job.split_file, size=cfg.calib_size,
                                    split=cfg.calib_split)
        log.info(f"calibration: {len(job.calib)} of {job.calib.available} {job.calib.split} images of "
                 f"{cfg.calib_data} ({', '.join(f'{k} {v}' for k, v in job.calib.dataset.counts().items())})")
    job.x_check, job.check_from = check_images(job)
    return job


def val_images(job: Job, limit: Optional[int] = None, preprocess: bool = True):
    """Validation images (for the checks and the gate; never the test split) and their labels."""
    from edge.data import load_images, select, stratified_subset

    ds = select(job.cfg.calib_data, "val", split_file=job.split_file, classes=job.classes)
    if limit is not None and len(ds.samples) > limit:
        ds = stratified_subset(ds, limit, seed=0)
    images = load_images(ds.samples)
    y = np.array([s.label for s in ds.samples], dtype=np.int64)
    return (job.prep(list(images)) if preprocess else images), y


def check_images(job: Job):
    """(images, where they come from) for the FP32 check: real validation images when data is given."""
    cfg = job.cfg
    if cfg.calib_data:
        if not job.split_file.is_file():
            raise InputError(f"split file {job.split_file} does not exist (pass {param('split_file')})")
        x, _ = val_images(job, limit=cfg.check_images or None)
        return x, f"{len(x)} val images of {cfg.calib_data}"
    x = np.random.default_rng(0).uniform(0, 255, (8, job.prep.height, job.prep.width)).astype(np.uint8)
    log.info("note: no calibration data given: the FP32 check runs on random images, not real ones")
    return job.prep(x), "8 random images (no --calib-data given)"


def base_meta(job: Job, input_name: str, output_name: str) -> Dict[str, Any]:
    """What every ONNX artifact's metadata shares (format, backend, precision: the table's row)."""
    from edge.fsutil import sha256_file
    from edge.metadata import tool_versions

    prep, batch = job.meta0["preprocess"], job.cfg.fixed_batch
    return {
        "classes": list(job.meta0["classes"]),
        "input": {"name": input_name, "shape": [batch or -1, prep["height"], prep["width"], prep["channels"]],
                  "dtype": "float32", "layout": "NHWC"},
        "output": {"name": output_name, "shape": [batch or -1, len(job.meta0["classes"])], "dtype": "float32"},
        "preprocess": prep,
        "source_model": {"path": str(job.model_path), "sha256": sha256_file(job.model_path)},
        "calibration": None, "drift_gate": None,
        "tools": tool_versions(),
        **({"ood": job.meta0["ood"]} if job.meta0.get("ood") else {}),  # open-set score output and threshold (edge/ood.py)
        "onnx": {"opset": job.cfg.opset},
    }


def write_artifact_meta(job: Job, path: Path, fmt_name: str, **sections: Any) -> None:
    """The metadata of one ONNX artifact, from the table's row, the shared fields and its ``sections``."""
    from edge.metadata import ArtifactMeta, write_meta

    write_meta(path, ArtifactMeta.for_format(by_name(fmt_name), **{**job.base, **sections}).to_dict())
    job.made[fmt_name] = path.name


def export_fp32(job: Job, stage: Path) -> None:
    """``model.onnx``: tf2onnx, onnx.checker, and ONNX Runtime vs Keras on the check images."""
    from convert.export import check_against_keras, check_onnx, io_names, keras_to_onnx, ort_predict
    from edge.runtime.onnxrt.session import session

    f32 = stage / by_name("fp32").file
    keras_to_onnx(job.model, f32, job.prep.input_shape, opset=job.cfg.opset, batch=job.cfg.fixed_batch)
    check_onnx(f32)
    job.base = base_meta(job, *io_names(f32))
    chk = check_against_keras(job.model, f32, job.x_check, source=job.check_from)
    write_artifact_meta(job, f32, "fp32", checks={"vs_keras": chk})
    log.info(f"{f32.name}: FP32 ONNX vs Keras max abs prob diff {chk['max_abs_diff']:.2e} "
             f"(<= 1e-4), top-1 agreement {chk['top1_agreement']:.1%} on {job.check_from}")
    job.ref = ort_predict(session(f32), job.x_check)


def export_fp16(job: Job, stage: Path) -> None:
    """``model.fp16.onnx``: FP16 with the nodes that break the tolerance kept in FP32."""
    from convert.export import check_onnx, compare, ort_predict
    from convert.quantize import fp16_with_tolerance
    from edge.runtime.onnxrt.session import session

    f32, f16 = stage / by_name("fp32").file, stage / by_name("fp16").file
    fp16_gate = fp16_with_tolerance(f32, f16, job.x_check, tolerance=job.cfg.fp16_tolerance)
    check_onnx(f16)
    c16 = compare(job.ref, ort_predict(session(f16), job.x_check))
    write_artifact_meta(job, f16, "fp16", checks={"vs_fp32_onnx": c16}, fp16={**fp16_gate, "images_from": job.check_from})
    log.info(f"{f16.name}: max abs prob diff vs FP32 {c16['max_abs_diff']:.2e} "
             f"({len(fp16_gate['kept_fp32'])} node(s) kept in FP32), top-1 agreement {c16['top1_agreement']:.1%}")


def calibrate(job: Job, stage: Path) -> None:
    """Activation ranges on the calibration images (shared by both INT8 kinds) and their record."""
    from calibrate.ranges import collect_ranges
    from calibrate.record import make_record, write_record
    from convert.quantize import score_tensors

    cfg, calib = job.cfg, job.calib
    paths = [s.path for s in calib.dataset.samples]
    f32 = stage / by_name("fp32").file
    rr = collect_ranges(f32, paths, job.prep, method=cfg.calib_method, chunk=cfg.calib_chunk,
                        progress=sys.stderr.isatty(), skip=score_tensors(f32))   # tqdm bars on a terminal only
    record = make_record(cfg.calib_method, rr.ranges, calib.summary(), rr.summary(),
                         model_sha256=job.base["source_model"]["sha256"])
    write_record(stage / CALIB_RECORD, record)
    job.made["calibration"] = CALIB_RECORD
    job.rr = rr
    job.calib_meta = {"record": CALIB_RECORD, "method": cfg.calib_method, **calib.summary(),
                      "peak_rss_mb": rr.summary()["peak_rss_mb"], "seconds": rr.summary()["seconds"]}
    log.info(f"calibration ({cfg.calib_method}): {len(rr.ranges)} tensors from {rr.images} images in "
             f"{rr.seconds:.1f} s, chunks of {rr.chunk}, peak RSS {rr.peak_rss_mb:.0f} MiB")
    job.x_val, job.y_val = val_images(job)


def export_int8(job: Job, stage: Path):
    """``model.int8.onnx``: explicit Q/DQ for TensorRT, through the drift gate at the row's ORT level."""
    from convert.export import check_onnx, compare, ort_predict
    from convert.gate import run_gate
    from convert.quantize import qdq_summary, stem_nodes, to_qdq_int8
    from edge.runtime.onnxrt.session import session

    cfg, row = job.cfg, by_name("int8")
    f32, q8 = stage / by_name("fp32").file, stage / row.file
    fs = not cfg.int8_quantize_stem   # the stem in float, as the CPU int8 default (to_qdq_int8)
    to_qdq_int8(f32, q8, cfg.calib_method, job.rr.ranges, float_stem=fs)
    gate = run_gate(f32, q8, lambda exc, dst: to_qdq_int8(f32, dst, cfg.calib_method, job.rr.ranges, exclude=exc,
                                                          float_stem=fs),
                    job.x_val, job.y_val, max_drift_pp=cfg.max_drift, min_agreement=cfg.min_agreement,
                    views=cfg.gate_views, level=row.ort_level)
    job.excluded = gate.excluded
    check_onnx(q8)
    c8 = compare(job.ref, ort_predict(session(q8, level=row.ort_level), job.x_check))
    s = qdq_summary(q8)
    write_artifact_meta(
        job, q8, "int8", calibration=job.calib_meta, drift_gate=gate.as_dict(),
        quantization={"format": "QDQ", "activations": "int8 symmetric", "weights": "int8 symmetric per-channel",
                      "bias": "float", "quantized_nodes": len(s["quantized_nodes"]), "float_nodes": s["float_nodes"],
                      "float_stem": stem_nodes(f32) if fs else [], "excluded_by_gate": list(gate.excluded)},
        onnxruntime={"graph_optimization_level": row.ort_level, "why": BASIC_LEVEL_WHY},
        checks={"vs_fp32_onnx": c8})
    log.info(f"{q8.name}: Q/DQ ({len(s['quantized_nodes'])} quantized, {len(s['float_nodes'])} float weighted "
             f"nodes), {gate.summary()}, gate {'passed' if gate.passed else 'FAILED'}")
    return gate


def export_int8_cpu(job: Job, stage: Path):
    """``model.int8cpu.onnx``: int8 for ONNX Runtime on x86, through the same gate as it is deployed."""
    from convert.export import check_onnx, compare, ort_predict
    from convert.gate import run_gate
    from convert.quantize import DEFAULT_CPU_VARIANT, to_cpu_int8, with_float_inputs
    from edge.runtime.onnxrt.session import session

    cfg = job.cfg
    variant = cfg.int8_cpu_format or DEFAULT_CPU_VARIANT
    f32, c8c = stage / by_name("fp32").file, stage / by_name("int8-cpu").file
    from_qdq = list(job.excluded)   # what the Q/DQ gate left in float starts in float here too

    def cpu_int8(exc, dst):
        # a gate choice here also keeps in float the ops feeding it (with_float_inputs)
        return to_cpu_int8(f32, dst, cfg.calib_method, job.rr.ranges, exclude=from_qdq + with_float_inputs(f32, exc),
                           variant=variant, input_range=job.prep.value_range)

    cpu_int8([], c8c)
    # The same gate, on the CPU model as it is deployed (onnxruntime level "all": its fused int8
    # kernels, where u8s8 saturation would show). A QOperator model has no Q/DQ nodes to rank, so
    # the gate can only measure it.
    gate = run_gate(f32, c8c, cpu_int8, job.x_val, job.y_val, max_drift_pp=cfg.max_drift,
                    min_agreement=cfg.min_agreement, views=cfg.gate_views, level="all", name="CPU int8 gate")
    check_onnx(c8c)
    cc = compare(job.ref, ort_predict(session(c8c), job.x_check))
    last = gate.steps[-1]
    write_artifact_meta(
        job, c8c, "int8-cpu", calibration=job.calib_meta, drift_gate=gate.as_dict(),
        quantization={"variant": variant, "excluded_nodes": from_qdq + with_float_inputs(f32, gate.excluded),
                      "excluded_by_qdq_gate": from_qdq, "excluded_by_cpu_gate": gate.excluded},
        drift={"split": "val", "views": gate.views, "fp32_accuracy": gate.fp32_accuracy,
               "accuracy": last["accuracy"], "drift_pp": last["drift_pp"]},
        checks={"vs_fp32_onnx": cc})
    log.info(f"{c8c.name}: {variant}, {gate.summary()}, gate {'passed' if gate.passed else 'FAILED'}")
    return gate


def fold(job: Job, stage: Path, written: List[str]) -> None:
    """Preprocessing folded into the deployable ONNX graphs, after every float-input check and gate."""
    cfg = job.cfg
    folds = [f for f in written if f.endswith(".onnx") and f != by_name("fp32").file]
    if not cfg.uint8_tiles or not folds:
        return
    from convert.fold import fold_artifacts

    raw = (val_images(job, cfg.check_images or None, preprocess=False)[0] if cfg.calib_data else
           np.random.default_rng(0).integers(0, 256, (8, cfg.uint8_tiles, cfg.uint8_tiles), dtype=np.uint8))
    tile = raw.shape[1:3] if cfg.uint8_tiles == "auto" else (cfg.uint8_tiles, cfg.uint8_tiles)
    fold_artifacts(stage, folds, tile, raw, job.check_from if cfg.calib_data else "8 random tiles")


def build_engines(job: Job, stage: Path) -> List[str]:
    """TensorRT engines of the precisions made (engine_plan checked TensorRT and the GPU)."""
    import tensorrt as trt

    from convert.tensorrt import build_engine
    from edge.metadata import read_meta
    from edge.runtime.tensorrt.compat import onnx_for_precision

    cfg, names = job.cfg, []
    # dla: no FP32 engine (the DLA runs FP16/INT8 only).
    for name in ([] if cfg.dla is not None else ["fp32"]) + (["fp16"] if cfg.fp16 else []) \
            + (["int8"] if cfg.int8 else []):
        # FP16: the FP32 ONNX + FP16 flag on TensorRT <= 10, the FP16 ONNX on 11 (strongly typed).
        src = stage / by_name(onnx_for_precision(trt, name)).file
        eng = build_engine(src, read_meta(src), stage, precision=name, batch=cfg.fixed_batch,
                           max_batch=cfg.max_batch, workspace_mib=cfg.workspace, dla=cfg.dla,
                           timing_cache=cfg.timing_cache, opt_batch=cfg.opt_batch)
        job.made[f"engine-{name}"] = eng.name
        names.append(eng.name)
    return names


def gate_score(job: Job, stage: Path, written: List[str]) -> Dict[str, Any]:
    """The open-set score of each reduced-precision artifact against FP32's (convert/score_gate.py).

    Only for a model with an ``ood`` block and real validation images (``calib_data``); before the
    preprocessing is folded (float inputs). Returns ``{"ood:<file>": ScoreGate}``.
    """
    if not job.meta0.get("ood") or not job.cfg.calib_data:
        return {}
    from convert.score_gate import gate_artifacts

    f32 = by_name("fp32").file
    arts = [stage / f for f in written if f.endswith(".onnx") and f != f32]
    x = job.x_val if job.x_val is not None else job.x_check
    return {f"ood:{Path(p).name}": g for p, g in gate_artifacts(stage / f32, arts, x, views=job.cfg.gate_views).items()}


def export_all(job: Job, result) -> None:
    """Run the steps into a staging folder moved into place at the end; fill ``result``."""
    from edge.fsutil import staged_dir
    from edge.metadata import read_meta

    cfg, written = job.cfg, result.written
    with staged_dir(job.out, force=cfg.force) as stage:
        export_fp32(job, stage)
        written.append(by_name("fp32").file)
        if cfg.fp16:
            export_fp16(job, stage)
            written.append(by_name("fp16").file)
        if job.need_calib:
            calibrate(job, stage)
            written.append(CALIB_RECORD)
        if cfg.int8:
            result.gates["int8"] = export_int8(job, stage)
            written.append(by_name("int8").file)
        if cfg.int8_cpu:
            result.gates["int8-cpu"] = export_int8_cpu(job, stage)
            written.append(by_name("int8-cpu").file)
        result.gates.update(gate_score(job, stage, written))
        fold(job, stage, written)
        if job.plan.build:
            written.extend(build_engines(job, stage))
    result.paths = {k: job.out / v for k, v in job.made.items()}
    result.metadata = {p.name: read_meta(p) for k, p in result.paths.items() if k != "calibration"}
