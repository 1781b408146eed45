"""``edge-convert``: Keras → ONNX FP32 / FP16 / INT8 Q/DQ / INT8-CPU (→ TensorRT engines).

A thin command over the Python API (:func:`convert.convert_model`, :func:`convert.convert_onnx`):
argv (and ``--config FILE``) → :class:`convert.ConvertConfig` → the API → exit code.

Examples:
    edge-convert runs/compact-s42/model.keras --fp16 --int8 --int8-cpu --calib-data data/NEU-CLS -o runs/convert-compact
    edge-convert --from-onnx runs/convert-compact/model.int8.onnx      # on the Jetson: build the engine
    edge-convert --from-onnx runs/convert-compact/model.int8.onnx --triton-repo /srv/triton/models  # GPU server
    edge-convert runs/compact-s42/model.keras --config convert.toml -o runs/convert-compact
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from edge.errors import GateFailed, InputError, cli_entry
from edge.log import add_log_flags

PROG = "edge-convert"

#: Settings that are paths: in a config file, relative to the file.
PATH_SETTINGS = ("out", "calib_data", "split_file", "timing_cache", "triton_repo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Convert a Keras classifier to ONNX FP32/FP16/INT8 "
                                "(explicit Q/DQ for TensorRT, calibrated on the training split) and TensorRT engines. "
                                "Settings: the defaults (convert.ConvertConfig), then --config FILE, then the flags "
                                "given. Exit codes: 0 done, 1 a drift gate failed (artifacts kept), 2 bad input, "
                                "3 TensorRT / ONNX Runtime failed.",
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE", help="TOML (or YAML with PyYAML) file of settings named as "
                   "convert.ConvertConfig's parameters (calib_data = \"data/NEU-CLS\"; a [convert] table or the top "
                   "level; relative paths are relative to the file)")
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
    p.add_argument("--calib-split", help="split to calibrate on (only train is allowed)")
    p.add_argument("--calib-size", type=int, help="calibration images (stratified; default 500)")
    p.add_argument("--calib-method", choices=["entropy", "minmax", "percentile"],
                   help="INT8 calibration method (default: entropy; minmax for a model with an open-set score, "
                        "whose drift gate entropy's clipped ranges fail: docs/results/open-set.md)")
    p.add_argument("--calib-chunk", type=int, help="images per calibrator collect_data call (bounds memory)")
    p.add_argument("--max-drift", type=float, help="allowed INT8 val accuracy drop in percentage points")
    p.add_argument("--min-agreement", type=float,
                   help="required INT8 top-1 agreement with FP32 on the val split, percent (0: off)")
    p.add_argument("--gate-views", type=int, choices=[1, 2, 4],
                   help="flipped views of each val image the drift gate measures (1: the images only)")
    p.add_argument("--fp16-tolerance", type=float,
                   help="allowed FP16 max abs probability difference vs FP32 (nodes kept in FP32 otherwise)")
    p.add_argument("--int8-quantize-stem", action="store_true", default=None,
                   help="quantize the Q/DQ model's stem convolution too (default: float, as in the CPU int8 default "
                        "qdq-u8s8-pc-fs; docs/results/open-set.md)")
    p.add_argument("--int8-cpu-format", help="CPU int8 variant (qdq-u8s8 | qoperator-u8s8 | qdq-u8s8-pc | qdq-u8u8-pc | qdq-u8s8-pc-fs)")
    p.add_argument("--uint8-tiles", metavar="SIZE|auto|0",
                   help="the deployable ONNX artifacts (FP16, INT8, CPU int8, and their engines) take uint8 gray SIZE x SIZE "
                        "tiles (NHWC) and do the resize and scaling in the graph (convert/fold.py); model.onnx, the FP32 "
                        "reference, keeps float input. auto (default): the size of the --calib-data images (float input "
                        "without --calib-data); 0: float input everywhere (host preprocessing)")
    p.add_argument("--batch", help="1 or dynamic (ONNX batch dimension and engine profile)")
    p.add_argument("--max-batch", type=int, help="largest batch of the engine's optimization profile")
    p.add_argument("--opt-batch", type=int, help="the profile's opt batch (edge-capture's --batch; DLA: the static batch)")
    p.add_argument("--opset", type=int, help="ONNX opset (13-17 parse on TensorRT 8.5)")
    p.add_argument("--engine", choices=["auto", "always", "never"],
                   help="build TensorRT engines: auto (if TensorRT and a GPU are here), always (error otherwise), never")
    p.add_argument("--workspace", type=int, metavar="MiB", help="TensorRT workspace memory pool limit")
    p.add_argument("--dla", type=int, metavar="N", help="build for DLA core N (GPU fallback on)")
    p.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache to reuse and update")
    p.add_argument("--force", action="store_true", help="replace an existing OUTDIR")
    p.add_argument("--triton-repo", metavar="DIR", help="also write the artifacts as a Triton Inference Server model "
                   "repository (config.pbtxt, labels; see convert/triton.py), also with --from-onnx")
    p.add_argument("--check-images", type=int,
                   help="val images of the FP32 ONNX vs Keras and FP16 checks (0: the whole val split; "
                        "64 let an FP16 model 7.7e-3 off on other val images pass at 3.7e-3)")
    return add_log_flags(p)


def config_from(values: Dict[str, Any]):
    """Defaults, then the ``--config`` file, then the flags given (``values``: the parsed flags)."""
    from convert.api import ConvertConfig
    from edge.configfile import layered

    values = dict(values)
    return layered(ConvertConfig, values, values.pop("config", None), section="convert", paths=PATH_SETTINGS)


@cli_entry(PROG)
def main(argv=None) -> int:
    values = vars(build_parser().parse_args(argv))
    for k in ("verbose", "quiet"):  # the log level: set by cli_entry (edge/log.py)
        values.pop(k, None)
    model, from_onnx = values.pop("model", None), values.pop("from_onnx", None)
    # API errors name ConvertConfig's parameters: cli_entry words them as the flags of the same name
    cfg = config_from(values)
    if from_onnx:
        if model:
            raise InputError("give either MODEL.keras or --from-onnx FILE.onnx, not both")
        from convert.api import convert_onnx

        convert_onnx(from_onnx, cfg)
        return 0
    if not model:
        raise InputError("no model given: edge-convert MODEL.keras [...] -o OUTDIR (or --from-onnx FILE.onnx)")
    if not cfg.out:
        raise InputError("no output folder given (-o OUTDIR)")
    from convert.api import convert_model

    result = convert_model(model, cfg)
    failure = result.gate_failure()
    if failure:
        raise GateFailed(failure)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
