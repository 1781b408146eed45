"""Latency statistics in the trtexec convention (min, mean, percentiles, max, coefficient of variation).

All figures are milliseconds. The coefficient of variation is ``std / mean`` in **percent**
(population standard deviation, as trtexec computes it); trtexec prints a warning when it is
high, and :data:`COV_WARN_PCT` is the threshold this bench uses (2.5 %).

Example:
    >>> s = latency_stats([1.0, 2.0, 3.0, 4.0])
    >>> s["p50"], round(s["cov"], 2)
    (2.5, 44.72)
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from edge.errors import EdgeError

#: Warn when the coefficient of variation of a latency series exceeds this (percent).
COV_WARN_PCT = 2.5
#: The percentiles every latency block reports.
PERCENTILES = (50, 90, 95, 99)
#: Keys of one latency block, in report order.
STAT_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "max", "cov")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks.

    This is numpy's default ("linear", Hyndman & Fan type 7); on an even count the median is
    the mean of the two middle values.

    Raises:
        EdgeError: no values, or ``q`` outside 0..100.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise EdgeError("cannot take a percentile of no values")
    if not 0 <= q <= 100:
        raise EdgeError(f"percentile must be within 0..100, got {q}")
    return float(np.percentile(a, q))


def cov_percent(values: Sequence[float]) -> float:
    """Coefficient of variation ``100 * std / mean`` (population std); 0 for a zero mean."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise EdgeError("cannot take the coefficient of variation of no values")
    mean = float(a.mean())
    return 0.0 if mean == 0 else float(100.0 * a.std(ddof=0) / mean)


def latency_stats(values_ms: Iterable[float]) -> Dict[str, float]:
    """min, mean, p50, p90, p95, p99, max and cov (percent) of a latency series in ms.

    Raises:
        EdgeError: the series is empty or holds a non-finite or negative value.
    """
    a = np.asarray(list(values_ms), dtype=np.float64)
    if a.size == 0:
        raise EdgeError("no latency samples were recorded")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise EdgeError("latency samples must be finite and non-negative")
    out = {"min": float(a.min()), "mean": float(a.mean())}
    for q in PERCENTILES:
        out[f"p{q}"] = float(np.percentile(a, q))
    out["max"] = float(a.max())
    out["cov"] = cov_percent(a)
    return out


def scale_stats(stats: Dict[str, float], divisor: float) -> Dict[str, float]:
    """Divide the time figures of a block by ``divisor`` (per batch → per image); cov is kept."""
    if divisor <= 0:
        raise EdgeError(f"divisor must be positive, got {divisor}")
    return {k: (v if k == "cov" else v / divisor) for k, v in stats.items()}


def throughput_ips(batch: int, iterations: int, wall_s: float) -> float:
    """Images per second of ``iterations`` calls of ``batch`` images that took ``wall_s`` seconds."""
    if wall_s <= 0:
        raise EdgeError(f"wall time must be positive, got {wall_s}")
    return float(batch * iterations / wall_s)


def unstable(stats: Dict[str, float], threshold_pct: float = COV_WARN_PCT) -> bool:
    """True when the block's coefficient of variation is above ``threshold_pct``."""
    return stats.get("cov", 0.0) > threshold_pct


def cdf(values: Sequence[float]) -> tuple:
    """Sorted values and their empirical cumulative fractions (for a latency CDF plot)."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    return a, np.arange(1, a.size + 1) / max(a.size, 1)


def parse_batches(text: Optional[str]) -> list:
    """``"1,8,32"`` → ``[1, 8, 32]`` (sorted, unique).

    Raises:
        EdgeError: empty, not integers, or a value < 1.
    """
    if text is None or not str(text).strip():
        raise EdgeError("--batch needs at least one batch size, e.g. 1,8,32")
    try:
        vals = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise EdgeError(f"--batch takes comma-separated integers, got {text!r}") from None
    if not vals or vals[0] < 1:
        raise EdgeError(f"batch sizes must be >= 1, got {text!r}")
    return vals
