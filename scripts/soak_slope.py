#!/usr/bin/env python3
"""RSS slope of one or more soak runs (``samples.csv`` of ``scripts/soak.py``): a linear fit of RSS over time.

Prints one line per run: samples used, RSS at the first and last of them (MiB, kB / 1024, as
``soak.py`` reports), and the least-squares slope in MiB/hour over the samples at or after ``--from-s``.

Example:
    .venv/bin/python scripts/soak_slope.py /work/soak-out/ab-base /work/soak-out/ab-fixed-probs --from-s 120
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def slope(run: Path, from_s: float) -> dict:
    """Fit RSS (MiB) against time (hours) over the samples of ``run`` at or after ``from_s`` seconds."""
    f = run / "samples.csv" if run.is_dir() else run
    rows = list(csv.DictReader(open(f)))
    t = np.array([float(r["t_s"]) for r in rows])
    rss = np.array([int(r["rss_kb"]) for r in rows]) / 1024.0
    keep = t >= from_s
    if keep.sum() < 3:
        raise SystemExit(f"{f}: fewer than 3 samples at or after {from_s} s")
    k = float(np.polyfit(t[keep] / 3600.0, rss[keep], 1)[0])
    return {"run": str(run), "n": int(keep.sum()), "from_s": float(t[keep][0]), "to_s": float(t[keep][-1]),
            "rss_first": float(rss[keep][0]), "rss_last": float(rss[keep][-1]), "slope_mib_h": k}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="--out folders of scripts/soak.py (or samples.csv files)")
    ap.add_argument("--from-s", type=float, default=120.0, help="fit the samples at or after this time")
    args = ap.parse_args(argv)
    for run in args.runs:
        s = slope(run, args.from_s)
        print(f"{s['run']}: {s['n']} samples {s['from_s']:.0f}-{s['to_s']:.0f} s, RSS {s['rss_first']:.1f} -> "
              f"{s['rss_last']:.1f} MiB, slope {s['slope_mib_h']:+.2f} MiB/h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
