"""edge.ood: the energy score, the validation threshold and the open-set metrics."""

import numpy as np
import pytest

from edge import ood as O
from edge.errors import EdgeError


def test_energy_is_minus_logsumexp_and_stable():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1000.0, 999.0, -5.0]])
    expect = -np.log(np.exp(z[:2]).sum(1))
    assert O.energy(z)[:2] == pytest.approx(expect)
    assert O.energy(z)[2] == pytest.approx(-(1000 + np.log(1 + np.exp(-1) + np.exp(-1005))))
    # a confident, large-logit image is more "known" (lower score) than a flat one
    assert O.energy(np.array([[10.0, 0, 0]]))[0] < O.energy(np.array([[0.1, 0, 0]]))[0]


def test_max_softmax_score():
    assert O.max_softmax(np.array([[0.9, 0.1], [0.5, 0.5]])).tolist() == [-0.9, -0.5]


def test_calibrate_accepts_the_stated_share():
    s = np.arange(1000, dtype=float)
    thr = O.calibrate(s, 0.99)
    assert np.mean(s <= thr) >= 0.99 and np.mean(s <= thr - 1) < 0.99
    assert O.calibrate(s, 1.0) == 999
    for bad in (0.0, 1.5):
        with pytest.raises(EdgeError, match="acceptance"):
            O.calibrate(s, bad)
    with pytest.raises(EdgeError, match="no in-distribution"):
        O.calibrate([], 0.99)


def test_evaluate_against_counts():
    si = np.array([0.0, 1.0, 2.0, 3.0])
    so = np.array([2.5, 4.0, 5.0])
    r = O.evaluate(si, so, threshold=2.0)
    # pairs (out > in): 2.5 beats 3 of 4, 4 and 5 beat all 4 -> 11 of 12
    assert r["auroc"] == pytest.approx(11 / 12)
    assert r["accepted_in"] == 0.75 and r["rejected_out"] == 1.0 and (r["n_in"], r["n_out"]) == (4, 3)
    # rejecting >= 95 % of OOD needs threshold below 2.5: then 1 of 4 in-distribution images (3.0) is rejected
    assert r["fpr_at_95tpr"] == 0.25
    perfect = O.evaluate([0, 1], [2, 3])
    assert perfect["auroc"] == 1.0 and perfect["fpr_at_95tpr"] == 0.0 and perfect["threshold"] is None
    with pytest.raises(EdgeError, match="both kinds"):
        O.evaluate([], [1.0])


def test_score_of_metadata():
    assert O.score_of({}) is None
    b = {"score": "energy", "threshold": -3.0, "acceptance": 0.99}
    assert O.score_of({"ood": b}) == b
    with pytest.raises(EdgeError):
        O.score_of({"ood": {"score": "knn5", "threshold": 1.0}})
    assert O.is_unknown(-2.0, -3.0) and not O.is_unknown(-3.0, -3.0)


def test_knn_is_the_kth_nearest_training_feature():
    bank = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    f = np.array([[2.0, 0.1], [-1.0, -1.0]])
    # first row: nearest in angle is (1, 0); second: every bank row points away
    cos = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (bank / np.linalg.norm(bank, axis=1, keepdims=True)).T
    assert O.knn(f, bank) == pytest.approx(-cos.max(1))
    assert O.knn(f, bank, 2) == pytest.approx(-np.sort(cos, 1)[:, -2])
    assert O.knn(f, bank)[0] < O.knn(f, bank)[1]                       # the far one is more unknown
    assert O.knn(bank, bank) == pytest.approx(-1.0)                      # a training feature is its own neighbour
    assert np.allclose(np.linalg.norm(O.fit_knn_bank(bank)["bank"], axis=1), 1.0)
    for bad in (0, 4):
        with pytest.raises(EdgeError, match="k must be"):
            O.knn(f, bank, bad)
    with pytest.raises(EdgeError, match="training features"):
        O.fit_knn_bank(np.ones(3))
