"""Collect the ``report.json`` of training runs into one results table (JSON + Markdown).

Usage::

    python scripts/train_results.py runs/compact-s42 runs/compact-s43 runs/compact-s44 runs/mobilenetv2 \\
        --json docs/results/train.json --md docs/results/train.md

Runs of the same architecture, weights, input size, epoch budget and (compact) global pooling form one group; a group of more
than one run also gets mean ± sample standard deviation (ddof=1) of every figure.

``--keep OLD.json`` carries over the rows of an earlier results file whose run folders are no longer on
disk (their figures are copied as measured, with their ``run`` path; a run given on the command line
replaces the kept row of the same path).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

from edge.errors import EdgeError, cli_entry  # noqa: E402

FIELDS = ("accuracy", "macro_f1", "roc_auc_ovr", "params", "wall_time_s", "epochs_run")


def _pool(r: Dict):
    """compact's global pooling; runs from before ``--pool`` existed have none recorded and are plain GAP."""
    return r.get("pool") or ("avg" if r.get("architecture") == "compact" else None)


def row_of(run: Path) -> Dict:
    """One run's figures from its report.json."""
    rp = Path(run) / "report.json"
    if not rp.is_file():
        raise EdgeError(f"{rp} does not exist (is {run} an edge-train output folder?)")
    rep = json.loads(rp.read_text())
    t = rep.get("training") or {}
    return {
        "run": str(run), "architecture": t.get("architecture"), "weights": t.get("weights"),
        "seed": t.get("seed"), "input": t.get("input"), "max_epochs": t.get("max_epochs"),
        "fine_tune_epochs": t.get("fine_tune_epochs"), "pool": _pool(t),
        "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "roc_auc_ovr": rep["roc_auc_ovr"],
        "n_test": rep["n"], "errors": int(rep["n"] - np.trace(np.array(rep["confusion_matrix"]))),
        "params": (t.get("params") or {}).get("total"), "wall_time_s": t.get("wall_time_s"),
        "epochs_run": t.get("epochs_run"),
        "phases": [{k: p[k] for k in ("phase", "epochs_run", "best_epoch", "seconds")} for p in t.get("phases", [])],
        "cpu_count": t.get("cpu_count"),
    }


def kept_rows(path: Path, replaced) -> List[Dict]:
    """Rows of an earlier ``--json`` output, minus those whose run path is in ``replaced``.

    Raises:
        EdgeError: the file is missing or is not a results JSON.
    """
    try:
        old = json.loads(Path(path).read_text())
        rows = old["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgeError(f"{path} is not a train_results JSON ({e.__class__.__name__}: {e})") from None
    return [r for r in rows if r.get("run") not in replaced]


def group(rows: List[Dict]) -> List[Dict]:
    """Mean ± std per (architecture, weights, input, epoch budget, pooling)."""
    keyf = lambda r: (r["architecture"], r["weights"], tuple(r["input"] or ()), r["max_epochs"], r["fine_tune_epochs"],  # noqa: E731
                      _pool(r))
    groups: Dict = {}
    for r in rows:
        groups.setdefault(keyf(r), []).append(r)
    out = []
    for (arch, w, inp, ep, ft, pool), rs in groups.items():
        g = {"architecture": arch, "weights": w, "input": list(inp), "max_epochs": ep, "fine_tune_epochs": ft,
             "pool": pool, "seeds": [r["seed"] for r in rs], "runs": len(rs)}
        for f in FIELDS:
            vals = [r[f] for r in rs if r[f] is not None]
            if vals:
                g[f] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}
        out.append(g)
    return out


def _name(r: Dict) -> str:
    """The model column: the architecture, and compact's pooling where it is not plain GAP."""
    pool = _pool(r)
    return r["architecture"] if pool in (None, "avg") else f"{r['architecture']} ({pool})"


def _pm(g: Dict, f: str, fmt: str, scale: float = 1.0) -> str:
    v = g.get(f)
    if not v:
        return "n/a"
    s = format(v["mean"] * scale, fmt)
    return s if v["std"] is None else f"{s} ± {format(v['std'] * scale, fmt)}"


def markdown(rows: List[Dict], groups: List[Dict]) -> str:
    lines = ["| model | weights | input | seed | test acc | errors/n | macro F1 | ROC-AUC (ovr) | params | epochs | train time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        auc = "n/a" if r["roc_auc_ovr"] is None else f"{r['roc_auc_ovr']:.5f}"
        lines.append(f"| {_name(r)} | {r['weights']} | {'x'.join(map(str, r['input'] or []))} | {r['seed']} "
                     f"| {r['accuracy']:.2%} | {r['errors']}/{r['n_test']} | {r['macro_f1']:.4f} | {auc} "
                     f"| {r['params'] / 1e6:.3f} M | {r['epochs_run']} | {r['wall_time_s'] / 60:.1f} min |")
    multi = [g for g in groups if g["runs"] > 1]
    if multi:
        lines += ["", "| model | seeds | test acc (mean ± std) | macro F1 | ROC-AUC | params | train time (s) |",
                  "|---|---|---|---|---|---|---|"]
        for g in multi:
            lines.append(f"| {_name(g)} | {', '.join(map(str, g['seeds']))} | {_pm(g, 'accuracy', '.2f', 100)} % "
                         f"| {_pm(g, 'macro_f1', '.4f')} | {_pm(g, 'roc_auc_ovr', '.5f')} | {_pm(g, 'params', '.0f')} "
                         f"| {_pm(g, 'wall_time_s', '.0f')} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python scripts/train_results.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="edge-train output folders")
    ap.add_argument("--keep", metavar="OLD.json",
                    help="also list the rows of an earlier results JSON (runs given here replace rows of the same path)")
    ap.add_argument("--json", help="write rows and groups here")
    ap.add_argument("--md", help="write the Markdown table here")
    return ap


@cli_entry("train_results")
def main(argv=None) -> int:
    from edge.fsutil import write_json, write_text

    args = build_parser().parse_args(argv)
    rows = [row_of(Path(r)) for r in args.runs]
    if args.keep:
        rows += kept_rows(Path(args.keep), {r["run"] for r in rows})
    groups = group(rows)
    md = markdown(rows, groups)
    if args.json:
        write_json(args.json, {"runs": rows, "groups": groups})
    if args.md:
        write_text(args.md, md)
    print(md, end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
