"""Measured figures of the converter (``docs/results/convert.md`` + ``.json``).

Runs ``edge-convert`` on a trained model folder once per calibration method, then measures on the
NEU **test** split (never used by the converter): FP32 ONNX vs Keras, FP16 vs Keras, INT8 Q/DQ
accuracy drop and top-1 agreement per method, calibration time and peak memory, and CPU latency
of FP32 vs the CPU int8 variants vs the Q/DQ model, measured interleaved in one run.

Usage:
    python scripts/convert_report.py runs/compact-s42 --data data/NEU-CLS --out runs/convert-compact \\
        --json docs/results/convert-compact.json --md docs/results/convert-compact.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

from edge.errors import EdgeError, cli_entry  # noqa: E402

METHODS = ("entropy", "minmax", "percentile")


def _convert(model_dir: Path, data: str, out: Path, method: str, extra: List[str], log: Path) -> Dict:
    cmd = [sys.executable, "-m", "convert.cli", str(model_dir / "model.keras"), "--fp16", "--int8", "--int8-cpu",
           "--calib-data", data, "--calib-method", method, "--uint8-tiles", "0", "--force", "-o", str(out), *extra]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return {"cmd": " ".join(cmd[2:]).replace("convert.cli", "edge-convert", 1), "rc": r.returncode,
            "seconds": round(time.perf_counter() - t0, 1), "log": str(log)}


def _latency(sessions: Dict[str, object], x: np.ndarray, batch: int, rounds: int, reps: int) -> Dict[str, float]:
    """Median ms per batch of each session, measured interleaved (round-robin) in one run."""
    times = {k: [] for k in sessions}
    xb = np.ascontiguousarray(x[:batch])
    for s in sessions.values():
        name = s.get_inputs()[0].name
        for _ in range(3):
            s.run(None, {name: xb})
    for _ in range(rounds):
        for k, s in sessions.items():
            name = s.get_inputs()[0].name
            t0 = time.perf_counter()
            for _ in range(reps):
                s.run(None, {name: xb})
            times[k].append((time.perf_counter() - t0) * 1e3 / reps)
    return {k: float(np.median(v)) for k, v in times.items()}


def measure(model_dir: Path, data: str, out_base: Path, methods=METHODS, extra: List[str] = (),
            latency_rounds: int = 15) -> Dict:
    from convert.export import compare, keras_predict, ort_predict, ort_session
    from edge.runtime.keras import load_keras_model
    from edge.metrics import accuracy
    from convert.quantize import CPU_VARIANTS, to_cpu_int8
    from calibrate.record import read_record
    from edge.data import load_images, select
    from edge.metadata import read_meta
    from edge.preprocess import Preprocess

    prep = Preprocess.load(model_dir / "preprocess.json")
    classes = json.loads((model_dir / "classes.json").read_text())
    test = select(data, "test", split_file=model_dir / "split.csv", classes=classes)
    x = prep(list(load_images(test)))
    y = test.labels
    model = load_keras_model(model_dir / "model.keras")
    ref = keras_predict(model, x)
    acc_keras = accuracy(y, ref)
    res: Dict = {"model": str(model_dir), "data": data, "test_images": int(len(x)), "keras_test_accuracy": acc_keras,
                 "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "python": platform.python_version()},
                 "runs": {}, "int8": {}}
    outs = {}
    for m in methods:
        out = out_base if m == methods[0] else out_base.with_name(f"{out_base.name}-{m}")
        outs[m] = out
        out_base.parent.mkdir(parents=True, exist_ok=True)
        log = out_base.parent / f"{out_base.name}-{m}.log"
        run = _convert(model_dir, data, out, m, list(extra), log)
        res["runs"][m] = run
        print(f"[{m}] rc {run['rc']} in {run['seconds']} s -> {out}", flush=True)
        if run["rc"] not in (0, 1):
            raise EdgeError(f"edge-convert failed for {m}: see {log}")
    main = outs[methods[0]]
    f32 = ort_predict(ort_session(main / "model.onnx"), x)
    f16 = ort_predict(ort_session(main / "model.fp16.onnx"), x)
    res["fp32_vs_keras"] = {**compare(ref, f32), "accuracy": accuracy(y, f32)}
    res["fp16_vs_keras"] = {**compare(ref, f16), "accuracy": accuracy(y, f16)}
    for m in methods:
        out = outs[m]
        q = ort_predict(ort_session(out / "model.int8.onnx", level="basic"), x)
        q_all = ort_predict(ort_session(out / "model.int8.onnx"), x)
        c = ort_predict(ort_session(out / "model.int8cpu.onnx"), x)
        meta = read_meta(out / "model.int8.onnx")
        cmeta = read_meta(out / "model.int8cpu.onnx")
        rec = read_record(out / "model.int8.calib.json")
        res["int8"][m] = {
            "qdq": {**compare(ref, q), "accuracy": accuracy(y, q), "drop_pp": round((acc_keras - accuracy(y, q)) * 100, 3)},
            "qdq_at_ort_level_all": {**compare(ref, q_all), "accuracy": accuracy(y, q_all)},
            "cpu": {**compare(ref, c), "accuracy": accuracy(y, c), "drop_pp": round((acc_keras - accuracy(y, c)) * 100, 3)},
            "gate": {k: meta["drift_gate"].get(k) for k in (
                "split", "val_images", "views", "max_drift_pp", "min_agreement_pct", "fp32_accuracy", "drift_before_pp",
                "drift_after_pp", "agreement_before_pct", "agreement_after_pct", "excluded_nodes", "passed")},
            # excluded_nodes: all the CPU model keeps in float (both gates' choices and what feeds them)
            "cpu_gate": {k: (cmeta.get("drift_gate") or {}).get(k) for k in (
                "drift_before_pp", "drift_after_pp", "agreement_before_pct", "agreement_after_pct", "passed")}
                        | {"variant": cmeta["quantization"]["variant"],
                           "excluded_nodes": cmeta["quantization"]["excluded_nodes"]},
            "calibration": {"images": rec["images"]["size"], "per_class": rec["images"]["per_class"],
                            "seconds": rec["collection"]["seconds"], "peak_rss_mb": rec["collection"]["peak_rss_mb"],
                            "rss_before_mb": rec["collection"]["rss_before_mb"], "chunk": rec["collection"]["chunk"],
                            "tensors": rec["collection"]["tensors"]},
        }
    # CPU latency: FP32 vs CPU int8 variants vs the TensorRT Q/DQ model, interleaved.
    rec = read_record(main / "model.int8.calib.json")
    excluded = read_meta(main / "model.int8cpu.onnx")["quantization"]["excluded_nodes"]   # both gates' choice
    variants = {}
    for v in CPU_VARIANTS:
        p = main.parent / f".{main.name}-{v}.onnx"
        to_cpu_int8(main / "model.onnx", p, rec["method"], rec["ranges"], exclude=excluded, variant=v,
                    input_range=prep.value_range)
        variants[v] = p
    sessions = {"fp32": ort_session(main / "model.onnx")}
    sessions.update({f"int8-cpu {v}": ort_session(p) for v, p in variants.items()})
    sessions["int8 Q/DQ (TensorRT form), level all"] = ort_session(main / "model.int8.onnx")
    sessions["int8 Q/DQ (TensorRT form), level basic"] = ort_session(main / "model.int8.onnx", level="basic")
    lat = {}
    for b in (1, 8):
        lat[f"batch{b}"] = _latency(sessions, x, b, latency_rounds, 10 if b == 1 else 3)
    res["cpu_latency_ms"] = lat
    res["cpu_latency_ratio_vs_fp32"] = {b: {k: round(v / d["fp32"], 3) for k, v in d.items()} for b, d in lat.items()}
    res["cpu_variant_accuracy"] = {}
    for v, p in variants.items():
        c = ort_predict(ort_session(p), x)
        res["cpu_variant_accuracy"][v] = {**compare(ref, c), "accuracy": accuracy(y, c)}
        p.unlink()
    return res


def to_markdown(r: Dict, title: str) -> str:
    L = [f"## {title}", "",
         f"Model `{r['model']}`, NEU **test** split ({r['test_images']} images, never used by the converter); "
         f"Keras FP32 test accuracy {r['keras_test_accuracy']:.2%}.", "",
         "| artifact | max abs prob diff vs Keras | top-1 agreement | test accuracy | drop (pp) |",
         "|---|---|---|---|---|",
         f"| model.onnx (FP32) | {r['fp32_vs_keras']['max_abs_diff']:.2e} | {r['fp32_vs_keras']['top1_agreement']:.2%} | "
         f"{r['fp32_vs_keras']['accuracy']:.2%} | {(r['keras_test_accuracy'] - r['fp32_vs_keras']['accuracy']) * 100:.2f} |",
         f"| model.fp16.onnx | {r['fp16_vs_keras']['max_abs_diff']:.2e} | {r['fp16_vs_keras']['top1_agreement']:.2%} | "
         f"{r['fp16_vs_keras']['accuracy']:.2%} | {(r['keras_test_accuracy'] - r['fp16_vs_keras']['accuracy']) * 100:.2f} |"]
    for m, d in r["int8"].items():
        q, c = d["qdq"], d["cpu"]
        L.append(f"| model.int8.onnx Q/DQ, {m} | {q['max_abs_diff']:.2e} | {q['top1_agreement']:.2%} | {q['accuracy']:.2%} | {q['drop_pp']:.2f} |")
        L.append(f"| model.int8cpu.onnx, {m} | {c['max_abs_diff']:.2e} | {c['top1_agreement']:.2%} | {c['accuracy']:.2%} | {c['drop_pp']:.2f} |")
    L += ["", "The Q/DQ rows run onnxruntime at graph optimization level *basic* (the exact Q/DQ arithmetic "
          "TensorRT implements). At the default level *all* onnxruntime fuses Q/DQ into its own int8 CPU kernels "
          "(s8s8 on this AVX2 CPU without VNNI, which can saturate; it did with Q/DQ on layer outputs, before "
          "they were removed), for comparison: " + "; ".join(
              f"{m}: accuracy {d['qdq_at_ort_level_all']['accuracy']:.2%}, top-1 agreement "
              f"{d['qdq_at_ort_level_all']['top1_agreement']:.2%}" for m, d in r["int8"].items()) + "."]
    g0 = next(iter(r["int8"].values()))["gate"] if r["int8"] else {}
    L += ["", f"Drift gate (validation split: {g0.get('val_images')} images x {g0.get('views') or 1} flipped views, "
          "INT8 Q/DQ vs FP32 ONNX) and calibration (train split only):", "",
          "| method | val drift before (pp) | after (pp) | val agreement before | after | nodes left in float | gate | calib images | calib time (s) | peak RSS of edge-convert (MiB) | RSS before calibration (MiB) |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "n/a" if v is None else f"{v:.2f} %"
    for m, d in r["int8"].items():
        g, c = d["gate"], d["calibration"]
        L.append(f"| {m} | {g['drift_before_pp']:.2f} | {g['drift_after_pp']:.2f} | {pct(g.get('agreement_before_pct'))} | "
                 f"{pct(g.get('agreement_after_pct'))} | {len(g['excluded_nodes'])} "
                 f"{', '.join(g['excluded_nodes'][:6])}{' ...' if len(g['excluded_nodes']) > 6 else ''} | "
                 f"{'passed' if g['passed'] else 'FAILED'} (budget {g['max_drift_pp']:g} pp{'' if g.get('min_agreement_pct') is None else ', ' + format(g['min_agreement_pct'], 'g') + ' %'}) | {c['images']} | {c['seconds']:.1f} | "
                 f"{c['peak_rss_mb']:.0f} | {c['rss_before_mb']:.0f} |")
    cg = {m: d["cpu_gate"] for m, d in r["int8"].items() if d.get("cpu_gate", {}).get("drift_before_pp") is not None}
    if cg:
        L += ["", "CPU int8 gate (same split, views and budget, `model.int8cpu.onnx` at onnxruntime level *all*; "
              "it starts from the nodes the Q/DQ gate left in float): " + "; ".join(
                  f"{m} ({g['variant']}): drift {g['drift_before_pp']:.2f} -> {g['drift_after_pp']:.2f} pp, agreement "
                  f"{pct(g.get('agreement_before_pct'))} -> {pct(g.get('agreement_after_pct'))}, "
                  f"{len(g['excluded_nodes'])} node(s) in float, {'passed' if g['passed'] else 'FAILED'}"
                  for m, g in cg.items()) + "."]
    L += ["", f"CPU latency on this machine ({r['machine']['cpu']}, {r['machine']['cores']} cores, shared), onnxruntime "
          "CPU EP, median ms per call, all models measured interleaved in one run (ratio to FP32 in brackets):", "",
          "| model | batch 1 | batch 8 |", "|---|---|---|"]
    for k in r["cpu_latency_ms"]["batch1"]:
        b1, b8 = r["cpu_latency_ms"]["batch1"][k], r["cpu_latency_ms"]["batch8"][k]
        L.append(f"| {k} | {b1:.2f} ({r['cpu_latency_ratio_vs_fp32']['batch1'][k]:.2f}x) | "
                 f"{b8:.2f} ({r['cpu_latency_ratio_vs_fp32']['batch8'][k]:.2f}x) |")
    L += ["", "CPU int8 variants, test split: " + "; ".join(
        f"{v}: accuracy {d['accuracy']:.2%}, top-1 agreement {d['top1_agreement']:.2%}"
        for v, d in r["cpu_variant_accuracy"].items()), "",
        "Commands: " + "; ".join(f"`{d['cmd']}`" for d in r["runs"].values()), ""]
    return "\n".join(L)


COMPOSE_HEADER = """# edge-convert: measured figures

Produced by `python scripts/convert_report.py MODEL_DIR --data data/NEU-CLS --out runs/convert-<model> --json docs/results/convert-<model>.json --md docs/results/convert-<model>.md`
(which runs `edge-convert MODEL.keras --fp16 --int8 --int8-cpu --calib-data data/NEU-CLS --calib-method M -o OUTDIR` once per calibration method, then measures on the **test** split).
Machine: 2 shared x86-64 cores (AMD EPYC, AVX2, no VNNI), no GPU, no TensorRT: INT8/FP16 are measured with onnxruntime on the CPU; TensorRT engines are built on the target with `edge-convert --from-onnx`.

Reading the tables:
* "max abs prob diff" and "top-1 agreement" compare each artifact's probabilities with the Keras FP32 model on the same preprocessed test images; "drop" is Keras test accuracy minus the artifact's, in percentage points.
* Calibration uses a stratified 500-image subset of the **train** split only; the drift gate measures on the **validation** split; nothing is tuned on the test split.
* Peak RSS is the whole `edge-convert` process (TensorFlow included: ~800 MiB before calibration starts), with the calibrator fed 16 images per `collect_data` call.
* The TensorRT Q/DQ model is evaluated by onnxruntime at graph optimization level *basic* (plain Q/DQ arithmetic = what TensorRT computes with int32 accumulation). See the note under each table for level *all*.
* `model.int8cpu.onnx` is the CPU format (uint8 activations, int8 7-bit weights, QDQ; ORT's recommendation for x86 without VNNI; non-negative tensors such as the `unit`-scaled input, Relu outputs and their poolings get the uint8 range [0, max]). The default is `qdq-u8s8-pc` (per-channel weights): on the v2 compact model per-tensor weights (`qdq-u8s8`) lost 2.96 pp of validation accuracy and per-channel 0.74 pp, at the same latency within noise (table below). `qdq-u8u8-pc` (8-bit uint8 weights) is more accurate but no faster than FP32 here: [cpu-int8-trial.md](cpu-int8-trial.md).
"""


def compose(results_dir: str | Path, models=("compact", "mobilenetv2")) -> Path:
    """Write ``convert.md`` / ``convert.json`` from the per-model ``convert-<model>.md/.json`` files."""
    from edge.fsutil import write_json, write_text

    d = Path(results_dir)
    parts = [m for m in models if (d / f"convert-{m}.json").exists()]
    if not parts:
        raise EdgeError(f"no convert-<model>.json in {d}")
    write_text(d / "convert.md", "\n".join([COMPOSE_HEADER] + [(d / f"convert-{m}.md").read_text() for m in parts]))
    write_json(d / "convert.json", {m: json.loads((d / f"convert-{m}.json").read_text()) for m in parts})
    return d / "convert.md"


@cli_entry("convert_report")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/convert_report.py", description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--compose", metavar="RESULTS_DIR", help="only merge RESULTS_DIR/convert-<model>.md/.json "
                   "into convert.md/.json")
    p.add_argument("--data")
    p.add_argument("--out", help="OUTDIR of the first method; the others go to OUTDIR-<method>")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--title", default=None)
    p.add_argument("--max-drift", default="0.5")
    p.add_argument("--calib-size", default="500")
    args = p.parse_args(argv)
    from edge.fsutil import write_json, write_text

    if args.compose:
        print(compose(args.compose))
        return 0
    if not (args.model_dir and args.data and args.out and args.json and args.md):
        raise EdgeError("give MODEL_DIR --data DIR --out OUTDIR --json FILE --md FILE (or --compose RESULTS_DIR)")

    methods = tuple(m for m in args.methods.split(",") if m)
    r = measure(Path(args.model_dir), args.data, Path(args.out), methods, ["--max-drift", args.max_drift, "--calib-size", args.calib_size])
    write_json(args.json, r)
    write_text(args.md, to_markdown(r, args.title or f"edge-convert on {args.model_dir}") + "\n")
    print(to_markdown(r, args.title or args.model_dir))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
