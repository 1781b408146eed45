"""The timing loop, batch cycling, reference matching and display names (no model needed)."""

import numpy as np
import pytest

from bench import core
from edge.errors import EdgeError
from edge.runtime.base import Timing


class CountingRunner:
    """Records the batches it is given; reports a timing split like a GPU runner's."""

    classes = ["a", "b"]

    def __init__(self, with_copies=True):
        self.seen = []
        self.with_copies = with_copies

    def infer_images(self, x):
        self.seen.append(np.array(x))
        self.last_timing = Timing(preprocess_ms=0.5, h2d_ms=0.1 if self.with_copies else None, compute_ms=1.0,
                                  d2h_ms=0.05 if self.with_copies else None, total_ms=1.65)
        return np.tile([0.3, 0.7], (len(x), 1))


def test_batches_cycle_through_the_images():
    imgs = np.arange(5, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    bs = core.batches_of(imgs, 4)
    assert len(bs) == 2
    assert [int(b[i, 0, 0]) for b in bs for i in range(4)] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert len(core.batches_of(imgs, 1, max_batches=3)) == 3
    with pytest.raises(EdgeError):
        core.batches_of(imgs[:0], 1)


def test_measure_counts_warmup_separately_and_collects_parts():
    r = CountingRunner()
    cfg = core.BenchConfig(batches=[2], warmup=3, iterations=7, progress=False)
    m = core.measure(r, np.zeros((5, 2, 2), np.uint8), 2, cfg)
    assert len(r.seen) == 3 + 7 and m["iterations"] == 7 and len(m["total"]) == 7
    assert all(len(b) == 2 for b in r.seen)
    assert m["parts"]["h2d"] == [0.1] * 7 and m["parts"]["compute"] == [1.0] * 7
    assert m["wall_s"] >= sum(m["total"]) / 1e3 * 0.99


def test_measure_drops_parts_the_backend_cannot_time():
    m = core.measure(CountingRunner(with_copies=False), np.zeros((2, 2, 2), np.uint8), 1,
                     core.BenchConfig(warmup=0, iterations=3, progress=False))
    assert m["parts"]["h2d"] is None and m["parts"]["d2h"] is None and m["parts"]["preprocess"] == [0.5] * 3


def test_measure_by_duration_runs_at_least_the_minimum():
    cfg = core.BenchConfig(warmup=0, duration=1e-6, progress=False, min_iterations=10)
    m = core.measure(CountingRunner(), np.zeros((2, 2, 2), np.uint8), 1, cfg)
    assert m["iterations"] >= 10


def test_predict_concatenates_chunks():
    r = CountingRunner()
    p = core.predict(r, np.zeros((5, 2, 2), np.uint8), batch=2)
    assert p.shape == (5, 2) and [len(b) for b in r.seen] == [2, 2, 1]


@pytest.mark.parametrize("kw", [dict(batches=[0]), dict(warmup=-1), dict(iterations=0), dict(duration=0.0),
                                dict(threads=-1), dict(fail_on_drift=-1.0), dict(fail_on_drift=float("nan"))])
def test_config_validation(kw):
    with pytest.raises(EdgeError):
        core.BenchConfig(**kw).validate_measurement()


def test_display_names_add_the_folder_only_when_names_repeat():
    assert core.display_names(["a/model.onnx", "b/model.onnx", "b/model.int8.onnx"]) == \
        ["a/model.onnx", "b/model.onnx", "model.int8.onnx"]


def test_match_reference_by_sha256():
    class Ref:
        def __init__(self, name, sha):
            self.model, self.sha256 = core.Path(name), sha

    a, b = Ref("a/model.keras", "aa" * 32), Ref("b/model.keras", "bb" * 32)
    assert core.match_reference({"source_model": {"sha256": "bb" * 32}}, [a, b]) == (b, "")
    assert core.match_reference({}, [a, b]) == (a, "")
    ref, note = core.match_reference({"source_model": {"path": "c/model.keras", "sha256": "cc" * 32}}, [a, b])
    assert ref is a and "none of the references" in note


@pytest.mark.parametrize("delta,agree,status,words", [
    (0.0, 1.0, "ok", []),
    (-0.5, 0.99, "ok", []),
    (-1.5, 0.99, "drift", ["accuracy drop 1.50 pp > 1 pp"]),
    (-0.7, 0.60, "drift", ["top-1 agreement 60.00% < 98%"]),          # same accuracy, many changed decisions
    (-2.0, 0.50, "drift", ["accuracy drop 2.00 pp", "top-1 agreement 50.00%"]),
    (+3.0, 0.979, "drift", ["top-1 agreement 97.90%"]),
])
def test_status_of(delta, agree, status, words):
    st, reason = core.status_of({"accuracy_delta_pp": delta, "top1_agreement": agree}, 1.0)
    assert st == status
    assert all(w in reason for w in words) and (reason == "") == (status == "ok")
