"""The Python API of the bench stage: :func:`run_bench`.

Example::

    from bench import BenchConfig, run_bench

    rep = run_bench(BenchConfig(artifacts=["runs/convert-compact/model.onnx"],
                                references=["runs/compact-s42/model.keras"], data="data/NEU-CLS",
                                batches=[1, 32], iterations=100, warmup=10, md="out/bench.md"))
    print(rep.table())
    assert rep.passed

``edge-bench`` turns its flags (and ``--config FILE``) into the :class:`bench.BenchConfig`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from bench.core import BenchConfig
from edge.errors import EdgeError, param

log = logging.getLogger(__name__)


@dataclass
class BenchReport:
    """A benchmark's report and verdict.

    Attributes:
        report: The report (what ``json`` holds): ``environment``, ``reference(s)``, ``results`` (one per
            artifact: latency, throughput, accuracy, drift, status), ``corruptions``, ``settings``,
            ``line_capacity``.
        gate_failures: One line per artifact whose accuracy drop exceeds ``fail_on_drift``.
    """

    report: Dict[str, Any]
    gate_failures: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No artifact failed the ``fail_on_drift`` gate (True without a gate)."""
        return not self.gate_failures

    @property
    def failed(self) -> List[Dict[str, Any]]:
        """The results of artifacts that could not run (status ``failed``)."""
        return [r for r in self.report["results"] if r["status"] == "failed"]

    def table(self) -> str:
        """The summary table edge-bench prints."""
        from bench.report import summary_table

        return summary_table(self.report)


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


def _split_file(cfg: BenchConfig):
    from edge.data import resolve_split_file

    if cfg.split_file is not None or cfg.split == "all":
        return cfg.split_file
    reference = Path(cfg.references[0])
    beside = resolve_split_file(reference, which=cfg.split)
    if beside is not None:
        log.info("using the split file beside the reference: %s", beside)
        return str(beside)
    log.warning("no %s and no split.csv beside %s: recomputing the default seed-42 split", param("split_file"),
                reference)
    return None


def _line_capacity(cfg: BenchConfig, report: Dict[str, Any], tile: int) -> None:
    """The report's ``line_capacity`` (fastest artifact) and each result's own verdict."""
    from bench.capacity import best_throughput, line_capacity

    best = best_throughput(report["results"])
    if best is None:
        raise EdgeError("line capacity: no artifact was timed, so there is no throughput to compare with the line")
    figures = (cfg.line_speed, cfg.strip_width, cfg.mm_per_px, tile, cfg.stride)
    report["line_capacity"] = line_capacity(best.pop("measured_tiles_per_s"), *figures, **best)
    for r in report["results"]:  # each artifact's own verdict (at its best batch) beside the fastest one's
        own = best_throughput([r])
        if own is not None:
            r["line_capacity"] = line_capacity(own.pop("measured_tiles_per_s"), *figures, **own)


def _write(cfg: BenchConfig, report: Dict[str, Any]) -> None:
    from bench import report as rep

    if cfg.plots:
        written = rep.write_plots(cfg.plots, report)
        base = Path(cfg.md).resolve().parent if cfg.md else None
        report["plots"] = [os.path.relpath(p.resolve(), base) if base else str(p) for p in written]
    if cfg.json:
        rep.write_json_report(cfg.json, report)
    if cfg.md:
        rep.write_markdown(cfg.md, report)
    if cfg.html:
        rep.write_html_report(cfg.html, report, plots_base=Path(cfg.md).resolve().parent if cfg.md else None)


def run_bench(config: BenchConfig) -> BenchReport:
    """Benchmark artifacts against their FP32 Keras reference; write the reports the config names.

    Args:
        config: What to benchmark; validated first (outputs and line figures before anything runs).

    Returns:
        The :class:`BenchReport`; a failed ``fail_on_drift`` gate is in ``gate_failures`` (the reports
        are written all the same).

    Raises:
        edge.errors.EdgeError: bad input, one line.
    """
    from bench import core
    from bench.environment import environment
    from edge.data import load_images, select

    cfg = config.validate()
    refs = [Path(r) for r in cfg.references]
    ref_meta = core.load_reference_meta(refs[0])
    tile = None
    if cfg.line_speed is not None:
        from bench.capacity import required_tiles_per_s

        tile = cfg.tile or int(ref_meta["preprocess"]["width"])
        required_tiles_per_s(cfg.line_speed, cfg.strip_width, cfg.mm_per_px, tile, cfg.stride)  # checks them
    split_file = _split_file(cfg)
    ds = select(cfg.data, cfg.split, split_file, classes=ref_meta["classes"])
    images = load_images(ds, progress=cfg.progress)
    _check_other_splits(refs, ds, cfg.split)
    report = core.run(cfg.artifacts, refs, images, ds.labels, [s.rel(ds.root) for s in ds.samples], cfg)
    report = {"environment": environment(), **report}
    report["settings"] = {"data": str(cfg.data), "split": cfg.split, "split_file": split_file,
                          "batches": cfg.batches, "warmup": cfg.warmup,
                          "iterations": None if cfg.duration else cfg.iterations, "duration": cfg.duration,
                          "threads": cfg.threads, "corruptions": cfg.corruptions, "seed": cfg.seed,
                          "fail_on_drift": cfg.fail_on_drift, "command": cfg.command}
    if cfg.line_speed is not None:
        _line_capacity(cfg, report, tile)
    _write(cfg, report)
    gate = core.gate_failures(report, cfg.fail_on_drift) if cfg.fail_on_drift is not None else []
    return BenchReport(report, gate)


__all__ = ["BenchConfig", "BenchReport", "run_bench"]
