"""Latency statistics on known inputs."""

import math

import numpy as np
import pytest

from bench import stats
from edge.errors import EdgeError


def test_percentiles_on_1_to_100():
    vals = np.arange(1, 101, dtype=float)   # 1..100: linear interpolation p = 1 + 0.99 * q
    s = stats.latency_stats(vals[::-1])     # order must not matter
    assert s["min"] == 1 and s["max"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert list(s) == list(stats.STAT_KEYS)


def test_median_of_even_and_odd_counts():
    assert stats.percentile([4, 1, 3, 2], 50) == 2.5
    assert stats.percentile([5, 1, 3], 50) == 3
    assert stats.percentile([7.0], 99) == 7.0


def test_cov_is_population_std_over_mean_in_percent():
    # values 2 and 4: mean 3, population std 1 -> 33.33 %
    assert stats.cov_percent([2, 4]) == pytest.approx(100 / 3)
    assert stats.cov_percent([5, 5, 5]) == 0.0
    assert stats.cov_percent([0, 0]) == 0.0
    s = stats.latency_stats([1.0, 2.0, 3.0, 4.0])
    assert s["cov"] == pytest.approx(100 * math.sqrt(1.25) / 2.5)


def test_unstable_threshold_is_2_5_percent():
    steady = stats.latency_stats([10.0, 10.2, 9.8, 10.0])     # cov ~1.4 %
    noisy = stats.latency_stats([10.0, 11.0, 9.0, 10.0])      # cov ~7.1 %
    assert stats.COV_WARN_PCT == 2.5
    assert not stats.unstable(steady)
    assert stats.unstable(noisy)


def test_scale_stats_per_image_keeps_cov():
    s = stats.latency_stats([8.0, 16.0])
    per = stats.scale_stats(s, 8)
    assert per["min"] == 1.0 and per["max"] == 2.0 and per["p50"] == 1.5
    assert per["cov"] == s["cov"]
    with pytest.raises(EdgeError):
        stats.scale_stats(s, 0)


def test_throughput():
    assert stats.throughput_ips(32, 100, 2.0) == 1600.0
    with pytest.raises(EdgeError):
        stats.throughput_ips(1, 1, 0)


def test_bad_series_raise():
    with pytest.raises(EdgeError, match="no latency"):
        stats.latency_stats([])
    with pytest.raises(EdgeError):
        stats.latency_stats([1.0, float("nan")])
    with pytest.raises(EdgeError):
        stats.latency_stats([-1.0])
    with pytest.raises(EdgeError):
        stats.percentile([1, 2], 101)


def test_cdf():
    x, y = stats.cdf([3.0, 1.0, 2.0])
    assert list(x) == [1.0, 2.0, 3.0]
    assert list(y) == pytest.approx([1 / 3, 2 / 3, 1.0])


@pytest.mark.parametrize("text,expect", [("1", [1]), ("32,1,8", [1, 8, 32]), ("4, 4,2", [2, 4])])
def test_parse_batches(text, expect):
    assert stats.parse_batches(text) == expect


@pytest.mark.parametrize("text", ["", "a,b", "0,1", "-2"])
def test_parse_batches_rejects(text):
    with pytest.raises(EdgeError):
        stats.parse_batches(text)
