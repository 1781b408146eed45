"""Parity of preprocessing in the graph (uint8 tiles in) with today's host preprocessing, on one split.

Each float-input artifact of ``--float-dir`` (``edge-convert --uint8-tiles 0``) is folded with
``convert.fold.fold_preprocess`` (what ``edge-convert`` does by default) into a temporary copy
taking uint8 ``--tile`` tiles; both run the split's images through ``runner.infer_images``: the
float one with the host preprocessing (cv2.resize INTER_AREA + scaling), the folded one with the
tiles as they are (resize + scaling in the graph). Reported: accuracy of each, top-1 agreement,
max abs probability difference, and how many input values differ.

Example:
    python scripts/fold_parity.py --float-dir runs/convert-compact --uint8-dir runs/convert-compact-u8 \\
        --data data/NEU-CLS --split-file models/neu-compact/split.csv --split test -o docs/results/fold-parity.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere


def main(argv=None) -> int:
    from bench.environment import cpu_model
    from convert.fold import host_equivalent
    from edge.data import load_images, select
    from edge.fsutil import write_json
    from edge.runtime import load_runner

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--float-dir", required=True)
    ap.add_argument("--tile", type=int, default=200, help="tile size the folded artifacts take")
    ap.add_argument("--files", default="model.onnx,model.int8cpu.onnx")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split-file")
    ap.add_argument("--split", default="test")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    res = {"data": a.data, "split": a.split, "split_file": a.split_file, "cpu": cpu_model(), "artifacts": {}}
    import tempfile

    from convert.fold import fold_preprocess

    tmp = Path(tempfile.mkdtemp(prefix="fold-parity-"))
    for name in a.files.split(","):
        fold_preprocess(Path(a.float_dir) / name, tmp / name, (a.tile, a.tile))
        with load_runner(Path(a.float_dir) / name) as rf, load_runner(tmp / name) as ru:
            ds = select(a.data, a.split, a.split_file, classes=rf.classes)
            images = load_images(ds)
            y = np.array([s.label for s in ds.samples])
            pf = np.concatenate([rf.infer_images(images[i:i + 32]) for i in range(0, len(images), 32)])
            pu = np.concatenate([ru.infer_images(images[i:i + 32]) for i in range(0, len(images), 32)])
            host = rf.preprocess(images)
            graph_in = host_equivalent(images, rf.preprocess)      # what the folded graph feeds the network
            r = {"images": int(len(y)), "tile": list(ru.tile), "input_form": ru.input_form,
                 "accuracy_host_pct": round(100 * float((pf.argmax(1) == y).mean()), 2),
                 "accuracy_in_graph_pct": round(100 * float((pu.argmax(1) == y).mean()), 2),
                 "top1_agreement_pct": round(100 * float((pf.argmax(1) == pu.argmax(1)).mean()), 2),
                 "max_abs_prob_diff": float(np.abs(pf - pu).max()),
                 "input_values_differing": int((np.abs(graph_in - host) > 1e-6).sum()),
                 "input_values": int(host.size)}
        res["artifacts"][name] = r
        print(f"{name}: {a.split} {r['images']} images, accuracy host {r['accuracy_host_pct']} % / in graph "
              f"{r['accuracy_in_graph_pct']} %, agreement {r['top1_agreement_pct']} %, max abs prob diff "
              f"{r['max_abs_prob_diff']:.2e}, input values differing {r['input_values_differing']} of {r['input_values']}")
    write_json(a.output, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
