"""Parity of the faster CPU int8 configurations with the FP32 model and with the int8 model as it was, on one split.

For each CPU int8 artifact given (uint8 tiles in, preprocessing in the graph) and the FP32 model
(``model.onnx`` beside the first one, float input, host preprocessing), the split's images run
through ``runner.infer_images``: every artifact twice, with the runner's batch split across the
cores (``split``, the default now) and as one onnxruntime run with intra-op threads (``split=1``,
the default before); the two must give identical outputs. Reported per artifact: accuracy, top-1
agreement with FP32 and with the first artifact, max abs probability difference with each, and the
drift gate's own figures from the artifact's metadata (val, 4 views).

Choices are made on the validation split; the test split is only reported.

Example:
    python scripts/cpu_int8_parity.py runs/convert-compact-u8/model.int8cpu.onnx \\
        runs/convert-compact-u8fs/model.int8cpu.onnx --data data/NEU-CLS \\
        --split-file models/neu-compact/split.csv --splits val,test -o docs/results/cpu-int8-parity.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/NAME.py` from anywhere
    sys.path.insert(0, str(ROOT))

from edge.errors import EdgeError, cli_entry  # noqa: E402

PROG = "cpu_int8_parity"


def markdown(res) -> str:
    """The figures as a Markdown table, a row per split and artifact."""
    L = ["| split | artifact (variant) | images | FP32 accuracy | accuracy | drop vs FP32 | top-1 agreement with FP32 | "
         "max / mean abs prob diff vs FP32 | agreement / max abs diff vs the first artifact | split vs intra-op outputs |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for split, s in res["splits"].items():
        for art, r in s["artifacts"].items():
            v = res["artifacts"][art]["variant"]
            same = "identical" if r["split_vs_intra_op_max_abs_diff"] == 0 else f"max abs diff {r['split_vs_intra_op_max_abs_diff']:.1e}"
            L.append(f"| {split} | `{Path(art).parent.name}/{Path(art).name}` ({v}) | {s['images']} | "
                     f"{s['fp32_accuracy_pct']:.2f} % | {r['accuracy_pct']:.2f} % | {r['drift_pp']:.2f} pp | "
                     f"{r['agreement_fp32_pct']:.2f} % | {r['max_abs_diff_fp32']:.3f} / {r['mean_abs_diff_fp32']:.4f} | "
                     f"{r['agreement_first_pct']:.2f} % / {r['max_abs_diff_first']:.3f} | {same} |")
    return "\n".join(L) + "\n"


def _predict(runner, images, chunk: int = 16) -> np.ndarray:
    return np.concatenate([runner.infer_images(images[i:i + chunk]) for i in range(0, len(images), chunk)])


@cli_entry(PROG)
def main(argv=None) -> int:
    from bench.environment import cpu_model
    from edge.data import load_images, select
    from edge.fsutil import write_json
    from edge.metadata import read_meta
    from edge.runtime import load_runner

    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="+", help="CPU int8 artifacts (the first is the reference int8 form)")
    ap.add_argument("--fp32", help="FP32 reference (default: model.onnx beside the first artifact)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split-file")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--md", help="also write the table as Markdown")
    a = ap.parse_args(argv)
    fp32 = Path(a.fp32) if a.fp32 else Path(a.artifacts[0]).with_name("model.onnx")
    if not fp32.is_file():
        raise EdgeError(f"no FP32 reference at {fp32} (give --fp32)")
    res = {"data": a.data, "split_file": a.split_file, "cpu": cpu_model(), "fp32": str(fp32), "splits": {},
           "artifacts": {}}
    for art in a.artifacts:
        meta = read_meta(art)
        q = meta.get("quantization") or {}
        res["artifacts"][art] = {"variant": q.get("variant"), "input_form": (meta.get("input") or {}).get("form"),
                                 "drift_gate": {k: (meta.get("drift_gate") or {}).get(k) for k in (
                                     "split", "views", "fp32_accuracy", "drift_after_pp", "agreement_after_pct",
                                     "passed")}}
    for split in a.splits.split(","):
        with load_runner(fp32) as rf:
            ds = select(a.data, split, a.split_file, classes=rf.classes)
            images = load_images(ds)
            y = np.array([s.label for s in ds.samples])
            ref = _predict(rf, images)
        out = {"images": int(len(y)), "fp32_accuracy_pct": round(100 * float((ref.argmax(1) == y).mean()), 2),
               "artifacts": {}}
        first = None
        for art in a.artifacts:
            with load_runner(art) as rs:
                ps = _predict(rs, images)
                parts = rs.parts
            with load_runner(art, split=1) as ri:
                pi = _predict(ri, images)
            first = ps if first is None else first
            r = {"parts": parts,
                 "accuracy_pct": round(100 * float((ps.argmax(1) == y).mean()), 2),
                 "drift_pp": round(100 * float((ref.argmax(1) == y).mean() - (ps.argmax(1) == y).mean()), 2),
                 "agreement_fp32_pct": round(100 * float((ps.argmax(1) == ref.argmax(1)).mean()), 2),
                 "max_abs_diff_fp32": float(np.abs(ps - ref).max()),
                 "mean_abs_diff_fp32": float(np.abs(ps - ref).mean()),
                 "agreement_first_pct": round(100 * float((ps.argmax(1) == first.argmax(1)).mean()), 2),
                 "max_abs_diff_first": float(np.abs(ps - first).max()),
                 "split_vs_intra_op_max_abs_diff": float(np.abs(ps - pi).max())}
            out["artifacts"][art] = r
            print(f"{split}: {art}: accuracy {r['accuracy_pct']} % (FP32 {out['fp32_accuracy_pct']} %), agreement with "
                  f"FP32 {r['agreement_fp32_pct']} %, max abs diff {r['max_abs_diff_fp32']:.3f}; vs the first artifact "
                  f"{r['agreement_first_pct']} %; split vs intra-op max abs diff {r['split_vs_intra_op_max_abs_diff']:.1e}")
        res["splits"][split] = out
    write_json(a.output, res)
    if a.md:
        from edge.fsutil import write_text

        write_text(a.md, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
