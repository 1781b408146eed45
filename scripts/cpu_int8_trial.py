"""CPU int8 variants on the validation split (docs/results/cpu-int8-trial.md).

For each case (a trained model folder and an edge-convert output folder made from it), the CPU int8
model is rebuilt from the folder's calibration record in each variant, with the nodes the Q/DQ gate
left in float, and measured on the validation split in 4 flipped views against the FP32 ONNX model:
accuracy, top-1 agreement, and the mean over images of the largest absolute probability difference.
The test split is not read.

    python scripts/cpu_int8_trial.py --data data/NEU-CLS \\
        --case "v4 s42 entropy=runs/compact-s42:runs/convert-compact" \\
        --case "v4 s42 minmax=runs/compact-s42:runs/convert-compact-minmax" \\
        --variants qdq-u8s8-pc,qdq-u8u8-pc -o runs/cpu-int8-trial-val.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

from edge.errors import EdgeError, cli_entry  # noqa: E402


def parse_case(text: str) -> tuple:
    """``NAME=MODEL_DIR:CONVERT_DIR`` → (name, model_dir, convert_dir)."""
    name, sep, dirs = text.partition("=")
    model, sep2, conv = dirs.partition(":")
    if not (sep and sep2 and name and model and conv):
        raise EdgeError(f"--case must be NAME=MODEL_DIR:CONVERT_DIR, got {text!r}")
    return name, Path(model), Path(conv)


def measure_case(model_dir: Path, conv: Path, data: str, variants: Sequence[str], views: int = 4) -> Dict:
    """Val figures of each CPU int8 variant of one model/calibration."""
    from calibrate.record import read_record
    from convert.export import ort_predict, ort_session
    from convert.gate import flip_views
    from convert.quantize import to_cpu_int8
    from edge.data import load_images, select
    from edge.metadata import read_meta
    from edge.preprocess import Preprocess

    for f in (model_dir / "preprocess.json", model_dir / "classes.json", model_dir / "split.csv",
              conv / "model.onnx", conv / "model.int8.calib.json", conv / "model.int8.onnx"):
        if not f.is_file():
            raise EdgeError(f"{f} does not exist")
    prep = Preprocess.load(model_dir / "preprocess.json")
    classes = json.loads((model_dir / "classes.json").read_text())
    ds = select(data, "val", split_file=model_dir / "split.csv", classes=classes)
    x = flip_views(prep(list(load_images(ds.samples))), views)
    y = np.tile(np.array([s.label for s in ds.samples]), views)
    rec = read_record(conv / "model.int8.calib.json")
    excluded = read_meta(conv / "model.int8.onnx")["drift_gate"]["excluded_nodes"]
    f32 = conv / "model.onnx"
    p32 = ort_predict(ort_session(f32), x)
    row: Dict = {"method": rec["method"], "val_images": len(ds.samples), "views": views,
                 "excluded_by_qdq_gate": excluded, "fp32_accuracy_pct": round(float(np.mean(p32.argmax(1) == y)) * 100, 3)}
    with tempfile.TemporaryDirectory(prefix="cpu-trial-") as tmp:
        for v in variants:
            dst = Path(tmp) / f"{v}.onnx"
            to_cpu_int8(f32, dst, rec["method"], rec["ranges"], exclude=excluded, variant=v,
                        input_range=prep.value_range)
            p = ort_predict(ort_session(dst), x)
            row[v] = {"accuracy_pct": round(float(np.mean(p.argmax(1) == y)) * 100, 3),
                      "agreement_pct": round(float(np.mean(p.argmax(1) == p32.argmax(1))) * 100, 3),
                      "mean_max_abs_prob_diff": round(float(np.abs(p - p32).max(1).mean()), 5)}
    return row


def summarize(cases: Dict[str, Dict], variants: Sequence[str]) -> Dict:
    """Mean of the per-case mean max-abs differences, and whether each variant is never less accurate than the first."""
    base = variants[0]
    return {"mean_of_mean_max_abs": {v: float(np.mean([c[v]["mean_max_abs_prob_diff"] for c in cases.values()]))
                                     for v in variants},
            "never_less_accurate_than_" + base: {v: all(c[v]["accuracy_pct"] >= c[base]["accuracy_pct"]
                                                       for c in cases.values()) for v in variants[1:]}}


@cli_entry("cpu-int8-trial")
def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/cpu_int8_trial.py", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--case", action="append", required=True, help="NAME=MODEL_DIR:CONVERT_DIR (repeat)")
    ap.add_argument("--variants", default="qdq-u8s8-pc,qdq-u8u8-pc")
    ap.add_argument("--views", type=int, default=4, choices=[1, 2, 4])
    ap.add_argument("-o", "--out", required=True, help="JSON file")
    args = ap.parse_args(argv)
    from convert.quantize import CPU_VARIANTS
    from edge.fsutil import write_json

    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in CPU_VARIANTS]
    if bad or not variants:
        raise EdgeError(f"unknown CPU int8 variant(s) {', '.join(bad) or '(none)'} (one of {', '.join(CPU_VARIANTS)})")
    cases = {}
    for text in args.case:
        name, model_dir, conv = parse_case(text)
        cases[name] = measure_case(model_dir, conv, args.data, variants, args.views)
        print(name, json.dumps({v: cases[name][v] for v in variants}), flush=True)
    res = {"split": "val", "variants": variants, "cases": cases, "summary": summarize(cases, variants)}
    write_json(args.out, res)
    print(json.dumps(res["summary"]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
