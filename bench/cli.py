"""``edge-bench``: latency, throughput and accuracy drift of artifacts against the FP32 Keras reference.

Example:
    edge-bench runs/convert-compact/model.onnx runs/convert-compact/model.int8.onnx \\
        --reference runs/compact-s42/model.keras --data data/NEU-CLS \\
        --split-file runs/compact-s42/split.csv --batch 1,32 --iterations 100 --warmup 10 \\
        --json out/bench.json --md out/bench.md --plots out/plots --fail-on-drift 1

From Python: ``bench.run_bench(bench.BenchConfig(...))``; this command turns its flags (and
``--config FILE``: defaults, then the file, then the flags) into that config, prints the table and
maps the verdict to the exit code (1: the ``--fail-on-drift`` gate failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from edge.errors import GateFailed, cli_entry
from edge.log import add_log_flags

#: BenchConfig fields whose flag is not ``--field-name``.
FLAGS = {"artifacts": "ARTIFACT", "references": "--reference", "batches": "--batch"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-bench",
        description="Latency (end-to-end host wall time, per batch and per image), throughput and accuracy "
                    "drift of model artifacts (ONNX, TensorRT engines) against the FP32 Keras reference "
                    "on the same test files.")
    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="artifact files, each with its <artifact>.json")
    p.add_argument("--reference", dest="references", action="append", metavar="MODEL.keras",
                   help="the FP32 Keras reference model; repeat it for artifacts of several models (each artifact "
                        "is compared with the reference its metadata's source_model.sha256 names, else the first)")
    p.add_argument("--data", metavar="DIR", help="dataset folder (NEU-CLS or folder per class)")
    p.add_argument("--split", choices=("train", "val", "test", "all"),
                   help="which split to evaluate (default: test)")
    p.add_argument("--split-file", metavar="CSV",
                   help="split.csv to read the split from (default: split.csv beside the reference, "
                        "else the default seed-42 split recomputed)")
    p.add_argument("--batch", metavar="B[,B...]", help="batch sizes of the timing loops (default: 1)")
    p.add_argument("--warmup", type=int, help="untimed calls before each timed loop (default: 20)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iterations", type=int, help="timed calls per batch size (default: 200)")
    g.add_argument("--duration", type=float, metavar="S", help="seconds per timed loop instead of --iterations")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: its own choice)")
    p.add_argument("--corruptions", action="store_true", default=None,
                   help="also the robustness suite: accuracy under 9 line-capture corruption kinds x 5 severities, "
                        "mean corruption accuracy, agreement with FP32 (bench/corruptions.py)")
    p.add_argument("--seed", type=int, help="seed of the corruption noise (default: 0)")
    p.add_argument("--json", metavar="OUT.json", help="write the JSON report")
    p.add_argument("--md", metavar="OUT.md", help="write the Markdown report")
    p.add_argument("--plots", metavar="DIR", help="write latency CDF, throughput and confusion-matrix plots")
    p.add_argument("--html", metavar="OUT.html",
                   help="write one self-contained HTML page (tables, plots inlined as base64) that opens from disk")
    g = p.add_argument_group("line capacity (will this box keep up with the line?)")
    g.add_argument("--line-speed", type=float, metavar="M_PER_S", help="strip speed in m/s")
    g.add_argument("--strip-width", type=float, metavar="MM", help="strip width in mm")
    g.add_argument("--mm-per-px", type=float, metavar="MM", help="camera resolution on the strip, mm per pixel")
    g.add_argument("--tile", type=int, metavar="PX", help="tile size in px (default: the model's input width)")
    g.add_argument("--stride", type=int, metavar="PX", help="step between tiles in px (default: the tile size)")
    p.add_argument("--fail-on-drift", type=float, metavar="PP",
                   help="exit 1 when an artifact's accuracy is more than PP points below the reference")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--config", metavar="FILE",
                   help="TOML (or YAML) file with the same settings as bench.BenchConfig's fields (a [bench] table "
                        "or the top level; batches = [1, 32], references = [...]); flags override it")
    return add_log_flags(p, quiet_help="do not print the table (-qq: also log errors only)")


def config_from_args(args, argv: Optional[List[str]] = None):
    """:class:`bench.BenchConfig`: its defaults, then the ``--config`` file, then the flags given."""
    from bench.core import BenchConfig
    from bench.stats import parse_batches
    from edge.configfile import layered

    flags = dict(vars(args), artifacts=args.artifacts or None,
                 batches=parse_batches(args.batch) if args.batch is not None else None)
    cfg = layered(BenchConfig, flags, args.config, "bench", BenchConfig.PATHS)
    cfg.progress = cfg.progress and not args.no_progress and sys.stderr.isatty()
    cfg.command = "edge-bench " + " ".join(argv if argv is not None else sys.argv[1:])
    return cfg


@cli_entry("edge-bench", log_level=logging.WARNING, flags=FLAGS)
def main(argv: Optional[List[str]] = None) -> int:
    from bench.api import run_bench

    args = build_parser().parse_args(argv)
    res = run_bench(config_from_args(args, argv))
    report = res.report
    if not args.quiet:
        print(res.table())
        if report.get("line_capacity"):
            from bench.capacity import sentence

            print("line capacity: " + sentence(report["line_capacity"]))
        for r in report["results"]:
            if r["latency_ms"]:
                b = min(r["latency_ms"], key=int)
                print(f"{Path(r['artifact']).name}: p50 {r['latency_ms'][b]['p50']:.3f} ms/batch at batch {b} "
                      f"(end-to-end host wall time, incl. preprocessing)")
    for r in res.failed:
        print(f"edge-bench: warning: {r['artifact']} did not run: {r['status_reason']}", file=sys.stderr)
    if not res.passed:
        raise GateFailed(f"accuracy drift gate failed (drop > {report['settings']['fail_on_drift']:g} pp): "
                         f"{'; '.join(res.gate_failures)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
