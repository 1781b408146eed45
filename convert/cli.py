"""``edge-convert``: Keras → ONNX FP32 / FP16 / INT8 Q/DQ / INT8-CPU (→ TensorRT engines).

Examples:
    edge-convert runs/compact-s42/model.keras --fp16 --int8 --int8-cpu --calib-data data/NEU-CLS -o runs/convert-compact
    edge-convert --from-onnx runs/convert-compact/model.int8.onnx      # on the Jetson: build the engine
    edge-convert --from-onnx runs/convert-compact/model.int8.onnx --triton-repo /srv/triton/models  # GPU server
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edge.errors import EdgeError, GateFailed, cli_entry
from edge.log import add_log_flags

PROG = "edge-convert"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Convert a Keras classifier to ONNX FP32/FP16/INT8 "
                                "(explicit Q/DQ for TensorRT, calibrated on the training split) and TensorRT engines.")
    p.add_argument("model", nargs="?", help="model.keras (from edge-train: preprocess.json, classes.json, split.csv beside it)")
    p.add_argument("--from-onnx", metavar="FILE.onnx", help="build a TensorRT engine from an ONNX artifact made by edge-convert "
                   "(with its .json metadata; INT8 uses the Q/DQ model as is)")
    p.add_argument("-o", "--out", metavar="OUTDIR", help="output folder (refused if it exists, unless --force)")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (FP16 weights/compute, FP32 I/O)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (explicit Q/DQ for TensorRT) + calibration record")
    p.add_argument("--int8-cpu", action="store_true", help="also write model.int8cpu.onnx (fast int8 for onnxruntime on x86)")
    p.add_argument("--calib-data", metavar="DIR", help="dataset folder for calibration, the FP32 check and the drift gate")
    p.add_argument("--split-file", "--calib-split-file", dest="split_file", metavar="FILE",
                   help="split.csv (default: split.csv beside the model)")
    p.add_argument("--calib-split", default="train", help="split to calibrate on (only train is allowed)")
    p.add_argument("--calib-size", type=int, default=500, help="calibration images (stratified; default 500)")
    p.add_argument("--calib-method", default="entropy", choices=["entropy", "minmax", "percentile"])
    p.add_argument("--calib-chunk", type=int, default=16, help="images per calibrator collect_data call (bounds memory)")
    p.add_argument("--max-drift", type=float, default=0.5, help="allowed INT8 val accuracy drop in percentage points")
    p.add_argument("--min-agreement", type=float, default=99.0,
                   help="required INT8 top-1 agreement with FP32 on the val split, percent (0: off)")
    p.add_argument("--gate-views", type=int, default=4, choices=[1, 2, 4],
                   help="flipped views of each val image the drift gate measures (1: the images only)")
    p.add_argument("--fp16-tolerance", type=float, default=5e-3,
                   help="allowed FP16 max abs probability difference vs FP32 (nodes kept in FP32 otherwise)")
    p.add_argument("--int8-cpu-format", default=None, help="CPU int8 variant (qdq-u8s8 | qoperator-u8s8 | qdq-u8s8-pc | qdq-u8u8-pc | qdq-u8s8-pc-fs)")
    p.add_argument("--uint8-tiles", default="auto", metavar="SIZE|auto|0",
                   help="the deployable ONNX artifacts (FP16, INT8, CPU int8, and their engines) take uint8 gray SIZE x SIZE "
                        "tiles (NHWC) and do the resize and scaling in the graph (convert/fold.py); model.onnx, the FP32 "
                        "reference, keeps float input. auto (default): the size of the --calib-data images (float input "
                        "without --calib-data); 0: float input everywhere (host preprocessing)")
    p.add_argument("--batch", default="dynamic", help="1 or dynamic (ONNX batch dimension and engine profile)")
    p.add_argument("--max-batch", type=int, default=32, help="largest batch of the engine's optimization profile")
    p.add_argument("--opt-batch", type=int, default=16, help="the profile's opt batch (edge-capture's --batch; DLA: the static batch)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (13-17 parse on TensorRT 8.5)")
    p.add_argument("--engine", default="auto", choices=["auto", "always", "never"],
                   help="build TensorRT engines: auto (if TensorRT and a GPU are here), always (error otherwise), never")
    p.add_argument("--workspace", type=int, default=1024, metavar="MiB", help="TensorRT workspace memory pool limit")
    p.add_argument("--dla", type=int, default=None, metavar="N", help="build for DLA core N (GPU fallback on)")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    p.add_argument("--force", action="store_true", help="replace an existing OUTDIR")
    p.add_argument("--triton-repo", metavar="DIR", help="also write the artifacts as a Triton Inference Server model "
                   "repository (config.pbtxt, labels; see convert/triton.py), also with --from-onnx")
    p.add_argument("--check-images", type=int, default=0,
                   help="val images of the FP32 ONNX vs Keras and FP16 checks (0: the whole val split; "
                        "64 let an FP16 model 7.7e-3 off on other val images pass at 3.7e-3)")
    return add_log_flags(p)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _batch_arg(text: str) -> Optional[int]:
    if text == "dynamic":
        return None
    if text == "1":
        return 1
    raise EdgeError(f"--batch must be 1 or dynamic, got {text!r}")


def _base_meta(model_path: Path, meta: Dict, input_name: str, output_name: str, batch: Optional[int]) -> Dict:
    from edge.fsutil import sha256_file
    from edge.metadata import tool_versions

    prep = meta["preprocess"]
    shape = [batch or -1, prep["height"], prep["width"], prep["channels"]]
    return {
        "format": "onnx", "backend": "onnxruntime",
        "classes": list(meta["classes"]),
        "input": {"name": input_name, "shape": shape, "dtype": "float32", "layout": "NHWC"},
        "output": {"name": output_name, "shape": [batch or -1, len(meta["classes"])], "dtype": "float32"},
        "preprocess": prep,
        "source_model": {"path": str(model_path), "sha256": sha256_file(model_path)},
        "calibration": None, "drift_gate": None,
        "tools": tool_versions(),
        **({"ood": meta["ood"]} if meta.get("ood") else {}),  # open-set score output and threshold (edge/ood.py)
    }


def _val_inputs(args, classes, prep, split_file: Path, limit: Optional[int] = None):
    """Validation images (for the checks and the gate): never the test split."""
    from edge.data import load_images, select

    ds = select(args.calib_data, "val", split_file=split_file, classes=classes)
    samples = ds.samples if limit is None else ds.samples[:limit]
    if limit is not None and len(ds.samples) > limit:
        from edge.data import stratified_subset

        samples = stratified_subset(ds, limit, seed=0).samples
    x = prep(list(load_images(samples)))
    y = np.array([s.label for s in samples], dtype=np.int64)
    return x, y


def _tiles_arg(text) -> object:
    """``--uint8-tiles``: "auto" (the calibration images' size; off without --calib-data), a size, or 0."""
    if str(text) == "auto":
        return "auto"
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise EdgeError(f"--uint8-tiles takes a tile size in pixels, auto or 0 (float input), got {text!r}")
    return v


def load_val_images(args, classes, split_file: Path, limit: Optional[int] = None) -> np.ndarray:
    """The uint8 val images of :func:`_val_inputs`, not preprocessed (the uint8-tile checks)."""
    from edge.data import load_images, select, stratified_subset

    ds = select(args.calib_data, "val", split_file=split_file, classes=classes)
    if limit is not None and len(ds.samples) > limit:
        ds = stratified_subset(ds, limit, seed=0)
    return load_images(ds.samples)


def _check_out_parent(out: Path) -> None:
    """Fail now, not after minutes of work, if OUTDIR cannot be created."""
    p = out.resolve().parent
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise EdgeError(f"output folder {out} is not writable: {p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise EdgeError(f"output folder {out} is not writable ({p} does not allow creating files)")


@cli_entry(PROG)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_onnx:
        if args.model:
            raise EdgeError("give either MODEL.keras or --from-onnx FILE.onnx, not both")
        from convert.tensorrt import build_from_onnx

        if args.triton_repo:
            from convert.triton import from_onnx

            return from_onnx(args, _say)
        build_from_onnx(args.from_onnx, out_dir=args.out, batch=_batch_arg(args.batch), max_batch=args.max_batch,
                        workspace_mib=args.workspace, dla=args.dla, timing_cache=args.timing_cache,
                        force=args.force, say=_say, opt_batch=args.opt_batch)
        return 0
    if not args.model:
        raise EdgeError("no model given: edge-convert MODEL.keras [...] -o OUTDIR (or --from-onnx FILE.onnx)")
    if not args.out:
        raise EdgeError("no output folder given (-o OUTDIR)")
    return convert(args)


def convert(args) -> int:
    from convert import formats
    from convert.export import (check_against_keras, check_classifier, check_onnx, compare, io_names,
                                keras_to_onnx, load_keras, ort_predict, ort_session)
    from convert.tensorrt import engine_plan
    from edge.fsutil import staged_dir
    from edge.metadata import read_meta, write_meta
    from edge.preprocess import Preprocess

    t_start = time.perf_counter()
    model_path = Path(args.model)
    out = Path(args.out)
    batch = _batch_arg(args.batch)
    need_calib = args.int8 or args.int8_cpu
    if need_calib and not args.calib_data:
        raise EdgeError("--int8/--int8-cpu need calibration images: pass --calib-data DIR (the training data)")
    if args.max_batch < 1:
        raise EdgeError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.max_drift < 0:
        raise EdgeError(f"--max-drift must be >= 0 percentage points, got {args.max_drift:g}")
    if args.check_images < 0:
        raise EdgeError(f"--check-images must be >= 0 (0: the whole val split), got {args.check_images}")
    if not 0 <= args.min_agreement <= 100:
        raise EdgeError(f"--min-agreement must be a percentage in [0, 100], got {args.min_agreement:g}")
    args.uint8_tiles = _tiles_arg(args.uint8_tiles)
    if args.uint8_tiles == "auto" and not args.calib_data:
        args.uint8_tiles = 0   # no images to tell the camera's tile size: float input
    if args.calib_chunk < 1:
        raise EdgeError(f"--calib-chunk must be at least 1, got {args.calib_chunk}")
    if out.exists() and not args.force:
        raise EdgeError(f"output folder {out} already exists (use --force to replace it)")
    _check_out_parent(out)
    # Decide about TensorRT before any work: --engine always without TensorRT is an error now.
    plan = engine_plan(args.engine)

    if not model_path.exists():
        raise EdgeError(f"model file {model_path} does not exist")
    meta0 = read_meta(model_path) if model_path.suffix == ".keras" else None
    model = load_keras(model_path)
    if meta0 is None:
        raise EdgeError(f"{model_path} has no metadata")
    prep = Preprocess.from_dict(meta0["preprocess"])
    classes = list(meta0["classes"])
    check_classifier(model, classes, prep.input_shape)

    from edge.data import resolve_split_file

    split_file = resolve_split_file(model_path, args.split_file, fallback=False)
    calib = None
    if need_calib:
        from calibrate.reader import calibration_set

        calib = calibration_set(args.calib_data, classes, split_file, size=args.calib_size, split=args.calib_split)
        _say(f"calibration: {len(calib)} of {calib.available} {calib.split} images of {args.calib_data} "
             f"({', '.join(f'{k} {v}' for k, v in calib.dataset.counts().items())})")
    # Images for the FP32 check: real validation images when data is given.
    if args.calib_data:
        if not split_file.is_file():
            raise EdgeError(f"split file {split_file} does not exist (pass --split-file)")
        x_check, _ = _val_inputs(args, classes, prep, split_file, limit=args.check_images or None)
        check_from = f"{len(x_check)} val images of {args.calib_data}"
    else:
        x_check = np.random.default_rng(0).uniform(0, 255, (8, prep.height, prep.width)).astype(np.uint8)
        x_check = prep(x_check)
        check_from = "8 random images (no --calib-data given)"
        _say("note: no --calib-data: the FP32 check runs on random images, not real ones")

    gate_res = None
    cpu_gate = None
    written: List[str] = []
    with staged_dir(out, force=args.force) as stage:
        # -- FP32
        f32 = stage / formats.by_name("fp32").file
        keras_to_onnx(model, f32, prep.input_shape, opset=args.opset, batch=batch)
        check_onnx(f32)
        in_name, out_name = io_names(f32)
        base = _base_meta(model_path, meta0, in_name, out_name, batch)
        chk = check_against_keras(model, f32, x_check, source=check_from)
        base["onnx"] = {"opset": args.opset}
        write_meta(f32, {**base, "precision": "fp32", "checks": {"vs_keras": chk}})
        written.append(f32.name)
        _say(f"model.onnx: FP32 ONNX vs Keras max abs prob diff {chk['max_abs_diff']:.2e} "
             f"(<= 1e-4), top-1 agreement {chk['top1_agreement']:.1%} on {check_from}")
        ref = ort_predict(ort_session(f32), x_check)

        # -- FP16
        if args.fp16:
            from convert.quantize import fp16_with_tolerance

            f16 = stage / formats.by_name("fp16").file
            fp16_gate = fp16_with_tolerance(f32, f16, x_check, tolerance=args.fp16_tolerance, say=_say)
            check_onnx(f16)
            c16 = compare(ref, ort_predict(ort_session(f16), x_check))
            write_meta(f16, {**base, "precision": "fp16", "checks": {"vs_fp32_onnx": c16},
                             "fp16": {**fp16_gate, "images_from": check_from}})
            written.append(f16.name)
            _say(f"model.fp16.onnx: max abs prob diff vs FP32 {c16['max_abs_diff']:.2e} "
                 f"({len(fp16_gate['kept_fp32'])} node(s) kept in FP32), top-1 agreement {c16['top1_agreement']:.1%}")

        # -- calibration (shared by both INT8 variants)
        if need_calib:
            from calibrate.ranges import collect_ranges
            from calibrate.record import make_record, write_record

            paths = [s.path for s in calib.dataset.samples]
            rr = collect_ranges(f32, paths, prep, method=args.calib_method, chunk=args.calib_chunk,
                                progress=sys.stderr.isatty())
            record = make_record(args.calib_method, rr.ranges, calib.summary(), rr.summary(),
                                 model_sha256=base["source_model"]["sha256"])
            write_record(stage / formats.CALIB_RECORD, record)
            written.append(formats.CALIB_RECORD)
            calib_meta = {"record": formats.CALIB_RECORD, "method": args.calib_method, **calib.summary(),
                          "peak_rss_mb": rr.summary()["peak_rss_mb"], "seconds": rr.summary()["seconds"]}
            _say(f"calibration ({args.calib_method}): {len(rr.ranges)} tensors from {rr.images} images in "
                 f"{rr.seconds:.1f} s, chunks of {rr.chunk}, peak RSS {rr.peak_rss_mb:.0f} MiB")
            x_val, y_val = _val_inputs(args, classes, prep, split_file)

        excluded: List[str] = []
        if args.int8:
            from convert.gate import run_gate
            from convert.quantize import qdq_summary, to_qdq_int8

            q8 = stage / formats.by_name("int8").file
            to_qdq_int8(f32, q8, args.calib_method, rr.ranges)
            gate_res = run_gate(f32, q8, lambda exc, dst: to_qdq_int8(f32, dst, args.calib_method, rr.ranges, exclude=exc),
                                x_val, y_val, max_drift_pp=args.max_drift, min_agreement=args.min_agreement,
                                views=args.gate_views, say=_say)
            excluded = gate_res.excluded
            check_onnx(q8)
            c8 = compare(ref, ort_predict(ort_session(q8, level="basic"), x_check))
            s = qdq_summary(q8)
            write_meta(q8, {**base, "precision": "int8", "calibration": calib_meta, "drift_gate": gate_res.as_dict(),
                            "quantization": {"format": "QDQ", "activations": "int8 symmetric", "weights": "int8 symmetric per-channel",
                                             "bias": "float", "quantized_nodes": len(s["quantized_nodes"]),
                                             "float_nodes": s["float_nodes"]},
                            "onnxruntime": {"graph_optimization_level": "basic",
                                            "why": "at level all onnxruntime's AVX2 s8s8 kernels saturate; basic runs the exact Q/DQ arithmetic"},
                            "checks": {"vs_fp32_onnx": c8}})
            written.append(q8.name)
            _say(f"model.int8.onnx: Q/DQ ({len(s['quantized_nodes'])} quantized, {len(s['float_nodes'])} float weighted nodes), "
                 f"{gate_res.summary()}, gate {'passed' if gate_res.passed else 'FAILED'}")

        if args.int8_cpu:
            from convert.gate import run_gate
            from convert.quantize import DEFAULT_CPU_VARIANT, to_cpu_int8, with_float_inputs

            variant = args.int8_cpu_format or DEFAULT_CPU_VARIANT
            c8c = stage / formats.by_name("int8-cpu").file
            from_qdq = list(excluded)   # what the Q/DQ gate left in float starts in float here too

            def cpu_int8(exc, dst):
                # a gate choice here also keeps in float the ops feeding it (with_float_inputs)
                return to_cpu_int8(f32, dst, args.calib_method, rr.ranges,
                                   exclude=from_qdq + with_float_inputs(f32, exc), variant=variant,
                                   input_range=prep.value_range)

            cpu_int8([], c8c)
            # The same gate, on the CPU model as it is deployed (onnxruntime level "all": its fused
            # int8 kernels, where u8s8 saturation would show). A QOperator model has no Q/DQ nodes to
            # rank, so the gate can only measure it.
            cpu_gate = run_gate(f32, c8c, cpu_int8, x_val, y_val, max_drift_pp=args.max_drift,
                                min_agreement=args.min_agreement, views=args.gate_views, say=_say, level="all",
                                name="CPU int8 gate")
            check_onnx(c8c)
            cc = compare(ref, ort_predict(ort_session(c8c), x_check))
            last = cpu_gate.steps[-1]
            write_meta(c8c, {**base, "precision": "int8-cpu", "calibration": calib_meta, "drift_gate": cpu_gate.as_dict(),
                             "quantization": {"variant": variant,
                                              "excluded_nodes": from_qdq + with_float_inputs(f32, cpu_gate.excluded),
                                              "excluded_by_qdq_gate": from_qdq, "excluded_by_cpu_gate": cpu_gate.excluded},
                             "drift": {"split": "val", "views": cpu_gate.views, "fp32_accuracy": cpu_gate.fp32_accuracy,
                                       "accuracy": last["accuracy"], "drift_pp": last["drift_pp"]},
                             "checks": {"vs_fp32_onnx": cc}})
            written.append(c8c.name)
            _say(f"model.int8cpu.onnx: {variant}, {cpu_gate.summary()}, gate {'passed' if cpu_gate.passed else 'FAILED'}")

        # -- preprocessing folded into the graphs, after every float-input check and gate
        folds = [f for f in written if f.endswith(".onnx") and f != formats.by_name("fp32").file]
        if args.uint8_tiles and folds:
            from convert.fold import fold_artifacts

            raw = (load_val_images(args, classes, split_file, args.check_images or None) if args.calib_data else
                   np.random.default_rng(0).integers(0, 256, (8, args.uint8_tiles, args.uint8_tiles), dtype=np.uint8))
            tile = raw.shape[1:3] if args.uint8_tiles == "auto" else (args.uint8_tiles, args.uint8_tiles)
            fold_artifacts(stage, folds, tile, raw, check_from if args.calib_data else "8 random tiles", say=_say)

        # -- TensorRT engines
        if plan.build:
            import tensorrt as trt  # engine_plan checked TensorRT and the GPU

            from convert.tensorrt import build_engine
            from edge.runtime.tensorrt.compat import onnx_for_precision

            # --dla: no FP32 engine (the DLA runs FP16/INT8 only).
            for name in ([] if args.dla is not None else ["fp32"]) + (["fp16"] if args.fp16 else []) \
                    + (["int8"] if args.int8 else []):
                # FP16: the FP32 ONNX + FP16 flag on TensorRT <= 10, the FP16 ONNX on 11 (strongly typed).
                src = stage / formats.by_name(onnx_for_precision(trt, name)).file
                eng = build_engine(src, read_meta(src), stage, precision=name, batch=batch, max_batch=args.max_batch,
                                   workspace_mib=args.workspace, dla=args.dla, timing_cache=args.timing_cache, say=_say,
                                   opt_batch=args.opt_batch)
                written.append(eng.name)

    if plan.message:
        _say(plan.message.format(out=out))
    _say(f"wrote {out}/: {', '.join(written)} in {time.perf_counter() - t_start:.0f} s")
    if args.triton_repo:
        from convert.triton import repository_for

        repository_for(out, args.triton_repo, say=_say)
    failed = [(label, art, g) for label, art, g in (("INT8", "model.int8.onnx", gate_res),
                                                     ("CPU int8", "model.int8cpu.onnx", cpu_gate))
              if g is not None and not g.passed]
    if failed:
        why = "; ".join(f"{label} drift gate failed: {g.summary()}" for label, _, g in failed)
        marks = " and ".join(f"{art}.json" for _, art, _ in failed) + (" marks" if len(failed) == 1 else " mark")
        raise GateFailed(f"{why}; artifacts kept in {out}, {marks} the gate failed")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
