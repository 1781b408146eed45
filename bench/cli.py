"""``edge-bench``: latency, throughput and accuracy drift of artifacts against the FP32 Keras reference.

Example:
    edge-bench runs/convert-compact/model.onnx runs/convert-compact/model.int8.onnx \\
        --reference runs/compact-s42/model.keras --data data/NEU-CLS \\
        --split-file runs/compact-s42/split.csv --batch 1,32 --iterations 100 --warmup 10 \\
        --json out/bench.json --md out/bench.md --plots out/plots --fail-on-drift 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from edge.errors import EdgeError, GateFailed, cli_entry
from edge.log import add_log_flags

log = logging.getLogger("edge-bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-bench",
        description="Latency (end-to-end host wall time, per batch and per image), throughput and accuracy "
                    "drift of model artifacts (ONNX, TensorRT engines) against the FP32 Keras reference "
                    "on the same test files.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact files, each with its <artifact>.json")
    p.add_argument("--reference", required=True, action="append", metavar="MODEL.keras",
                   help="the FP32 Keras reference model; repeat it for artifacts of several models (each artifact "
                        "is compared with the reference its metadata's source_model.sha256 names, else the first)")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (NEU-CLS or folder per class)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="which split to evaluate (default: test)")
    p.add_argument("--split-file", metavar="CSV",
                   help="split.csv to read the split from (default: split.csv beside the reference, "
                        "else the default seed-42 split recomputed)")
    p.add_argument("--batch", default="1", metavar="B[,B...]", help="batch sizes of the timing loops (default: 1)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls before each timed loop (default: 20)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iterations", type=int, default=200, help="timed calls per batch size (default: 200)")
    g.add_argument("--duration", type=float, metavar="S", help="seconds per timed loop instead of --iterations")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (default: its own choice)")
    p.add_argument("--corruptions", action="store_true",
                   help="also the robustness suite: accuracy under 9 line-capture corruption kinds x 5 severities, "
                        "mean corruption accuracy, agreement with FP32 (bench/corruptions.py)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption noise (default: 0)")
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
    return add_log_flags(p, quiet_help="do not print the table (-qq: also log errors only)")


def _check_output(path: Optional[str], what: str) -> None:
    from edge.fsutil import check_writable_dir

    if path is None:
        return
    p = Path(path)
    if p.exists() and p.is_dir() and what != "plots":
        raise EdgeError(f"--{what} {p} is a folder, expected a file")
    if what == "plots" and p.exists() and not p.is_dir():
        raise EdgeError(f"--plots {p} exists and is not a folder")
    check_writable_dir(p if what == "plots" else p.parent)


def _check_other_splits(refs: List[Path], ds, which: str) -> None:
    """No evaluated file may belong to another split in a reference's own split.csv (when it has one).

    Otherwise the evaluated images could be training images of one of the models. Evaluating a
    part of a model's split (a sample such as ``data/neu-sample``) is allowed.
    """
    from edge.data import read_split_csv, resolve_split_file

    if which == "all":
        return
    mine = {s.rel(ds.root) for s in ds.samples}
    for r in refs:
        own = resolve_split_file(r)
        if own is None:
            continue
        theirs = read_split_csv(own)
        other = sorted(f for f in mine if theirs.get(f, which) != which)
        if other:
            raise EdgeError(f"{len(other)} of the {len(mine)} evaluated {which} files are in another split of {own} "
                            f"(e.g. {other[0]}: {theirs[other[0]]}): {r} may have trained on the evaluated images")


@cli_entry("edge-bench", log_level=logging.WARNING)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    from bench import core, stats

    batches = stats.parse_batches(args.batch)
    cfg = core.BenchConfig(batches=batches, warmup=args.warmup, iterations=args.iterations,
                           duration=args.duration, threads=args.threads, corruptions=args.corruptions,
                           gate_pp=args.fail_on_drift, progress=not args.no_progress and sys.stderr.isatty(),
                           seed=args.seed)
    cfg.validate()
    for path, what in ((args.json, "json"), (args.md, "md"), (args.plots, "plots"), (args.html, "html")):
        _check_output(path, what)
    line = (args.line_speed, args.strip_width, args.mm_per_px)
    if any(v is not None for v in line + (args.tile, args.stride)) and any(v is None for v in line):
        raise EdgeError("line capacity needs all of --line-speed, --strip-width and --mm-per-px")
    refs = [Path(r) for r in args.reference]
    for r in refs:
        if not r.is_file():
            raise EdgeError(f"reference model {r} does not exist")
    reference = refs[0]
    for a in args.artifacts:
        if not Path(a).is_file() and not str(a).startswith(("triton://", "triton+grpc://", "triton+http://")):
            raise EdgeError(f"artifact {a} does not exist")
    ref_meta = core.load_reference_meta(reference)
    if args.line_speed is not None:
        from bench.capacity import required_tiles_per_s

        tile = args.tile or int(ref_meta["preprocess"]["width"])
        required_tiles_per_s(args.line_speed, args.strip_width, args.mm_per_px, tile, args.stride)  # checks the figures
    from edge.data import resolve_split_file

    split_file = args.split_file
    if split_file is None and args.split != "all":
        beside = resolve_split_file(reference, which=args.split)
        if beside is not None:
            split_file = str(beside)
            log.info("using the split file beside the reference: %s", beside)
        else:
            log.warning("no --split-file and no split.csv beside %s: recomputing the default seed-42 split", reference)

    from edge.data import load_images, select

    ds = select(args.data, args.split, split_file, classes=ref_meta["classes"])
    images = load_images(ds, progress=cfg.progress)
    files = [s.rel(ds.root) for s in ds.samples]
    _check_other_splits(refs, ds, args.split)

    report = core.run(args.artifacts, refs, images, ds.labels, files, cfg)
    from bench.environment import environment

    report = {"environment": environment(), **report}
    report["settings"] = {"data": str(args.data), "split": args.split, "split_file": split_file,
                          "batches": batches, "warmup": args.warmup,
                          "iterations": None if args.duration else args.iterations, "duration": args.duration,
                          "threads": args.threads, "corruptions": args.corruptions, "seed": args.seed,
                          "fail_on_drift": args.fail_on_drift,
                          "command": "edge-bench " + " ".join(argv if argv is not None else sys.argv[1:])}

    if args.line_speed is not None:
        from bench.capacity import best_throughput, line_capacity

        best = best_throughput(report["results"])
        if best is None:
            raise EdgeError("line capacity: no artifact was timed, so there is no throughput to compare with the line")
        report["line_capacity"] = line_capacity(best.pop("measured_tiles_per_s"), args.line_speed, args.strip_width,
                                                args.mm_per_px, tile, args.stride, **best)
        for r in report["results"]:  # each artifact's own verdict (at its best batch) beside the fastest one's
            own = best_throughput([r])
            if own is not None:
                r["line_capacity"] = line_capacity(own.pop("measured_tiles_per_s"), args.line_speed, args.strip_width,
                                                   args.mm_per_px, tile, args.stride, **own)

    from bench import report as rep

    if args.plots:
        written = rep.write_plots(args.plots, report)
        base = Path(args.md).resolve().parent if args.md else None
        report["plots"] = [os.path.relpath(p.resolve(), base) if base else str(p) for p in written]
    if args.json:
        rep.write_json_report(args.json, report)
    if args.md:
        rep.write_markdown(args.md, report)
    if args.html:
        rep.write_html_report(args.html, report, plots_base=Path(args.md).resolve().parent if args.md else None)
    if not args.quiet:
        print(rep.summary_table(report))
        if report.get("line_capacity"):
            from bench.capacity import sentence

            print("line capacity: " + sentence(report["line_capacity"]))
        for r in report["results"]:
            if r["latency_ms"]:
                b = min(r["latency_ms"], key=int)
                print(f"{Path(r['artifact']).name}: p50 {r['latency_ms'][b]['p50']:.3f} ms/batch at batch {b} "
                      f"(end-to-end host wall time, incl. preprocessing)")
    failed = [r for r in report["results"] if r["status"] == "failed"]
    for r in failed:
        print(f"edge-bench: warning: {r['artifact']} did not run: {r['status_reason']}", file=sys.stderr)
    if args.fail_on_drift is not None:
        bad = core.gate_failures(report, args.fail_on_drift)
        if bad:
            raise GateFailed(f"accuracy drift gate failed (drop > {args.fail_on_drift:g} pp): {'; '.join(bad)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
