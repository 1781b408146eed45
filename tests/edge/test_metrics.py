"""edge.metrics: accuracy, agreement, probability differences and drift on constructed cases."""

import math

import numpy as np
import pytest

from edge import metrics
from edge.errors import EdgeError

CLASSES = ["a", "b", "c"]


def onehot(idx, k=3, hi=0.9):
    p = np.full((len(idx), k), (1 - hi) / (k - 1))
    p[np.arange(len(idx)), idx] = hi
    return p


def test_identical_outputs_have_no_drift():
    y = [0, 1, 2, 0]
    ref = onehot([0, 1, 2, 1])
    r = metrics.compare(y, ref, ref.copy(), CLASSES)
    d = r["drift"]
    assert r["accuracy"] == r["reference_accuracy"] == 0.75
    assert d["accuracy_delta_pp"] == 0
    assert d["top1_agreement"] == 1.0
    assert d["max_abs_prob_diff"] == 0 and d["mean_abs_prob_diff"] == 0
    assert d["kl"] == pytest.approx(0, abs=1e-12)
    assert d["per_class_f1_delta"] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert r["disagreements"] == []


def test_one_flip_of_four():
    y = [0, 1, 2, 0]
    ref = onehot([0, 1, 2, 0])                  # all right
    art = onehot([0, 1, 2, 2])                  # last image wrong (a -> c)
    r = metrics.compare(y, ref, art, CLASSES, files=["w.bmp", "x.bmp", "y.bmp", "z.bmp"])
    d = r["drift"]
    assert r["reference_accuracy"] == 1.0 and r["accuracy"] == 0.75
    assert d["accuracy_delta_pp"] == pytest.approx(-25.0)
    assert d["top1_agreement"] == 0.75
    assert d["max_abs_prob_diff"] == pytest.approx(0.85)        # 0.9 vs 0.05
    # 2 of the 12 probabilities differ by 0.85
    assert d["mean_abs_prob_diff"] == pytest.approx(2 * 0.85 / 12)
    # KL of the flipped row: 0.9 ln(0.9/0.05) + 0.05 ln(0.05/0.9) + 0, averaged over 4 rows
    kl_row = 0.9 * math.log(0.9 / 0.05) + 0.05 * math.log(0.05 / 0.9)
    assert d["kl"] == pytest.approx(kl_row / 4)
    # class a: F1 1 -> 2/3 (precision 1, recall 1/2); class c: 1 -> 2/3 (precision 1/2, recall 1); b unchanged
    assert d["per_class_f1_delta"]["a"] == pytest.approx(2 / 3 - 1)
    assert d["per_class_f1_delta"]["b"] == 0
    assert d["per_class_f1_delta"]["c"] == pytest.approx(2 / 3 - 1)
    assert r["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert r["disagreements"] == [{"file": "z.bmp", "label": "a", "reference": "a", "reference_prob": pytest.approx(0.9),
                                   "artifact": "c", "artifact_prob": pytest.approx(0.9)}]


def test_artifact_better_than_reference_gives_positive_delta():
    y = [0, 1]
    r = metrics.compare(y, onehot([1, 1]), onehot([0, 1]), CLASSES)
    assert r["drift"]["accuracy_delta_pp"] == pytest.approx(50.0)
    assert not metrics.drop_exceeds(r["drift"], 0.0)


def test_drop_exceeds_gate():
    assert metrics.drop_exceeds({"accuracy_delta_pp": -1.5}, 1.0)
    assert not metrics.drop_exceeds({"accuracy_delta_pp": -1.0}, 1.0)
    assert not metrics.drop_exceeds({"accuracy_delta_pp": 3.0}, 0.0)


def test_kl_handles_zeros():
    p = np.array([[1.0, 0.0]])
    q = np.array([[0.0, 1.0]])
    kl = metrics.kl_divergence(p, q)
    assert np.isfinite(kl).all() and kl[0] > 10      # clipped at 1e-7, large but finite


@pytest.mark.parametrize("ref,art,labels", [
    (np.zeros((2, 3)), np.zeros((3, 3)), [0, 1]),          # shapes differ
    (np.zeros((2, 3)), np.zeros((2, 3)), [0]),             # label count
    (np.zeros((2, 2)), np.zeros((2, 2)), [0, 1]),          # K != len(classes)
    (np.full((2, 3), np.nan), np.zeros((2, 3)), [0, 1]),   # NaN
])
def test_bad_inputs_raise(ref, art, labels):
    with pytest.raises(EdgeError):
        metrics.compare(labels, ref, art, CLASSES)


def test_accuracy_takes_labels_first_and_probs_or_indices():
    y = [0, 1, 2, 2]
    probs = onehot([0, 1, 1, 2])
    assert metrics.accuracy(y, probs) == 0.75
    assert metrics.accuracy(labels=y, probs=probs) == 0.75
    assert metrics.accuracy(y, np.array([0, 1, 1, 2])) == 0.75  # top-1 indices, as the drift gate passes them


def test_agreement_and_prob_diffs():
    a, b = onehot([0, 1, 2, 0]), onehot([0, 1, 2, 2])
    assert metrics.agreement(a, b) == 0.75
    assert metrics.agreement(a.argmax(1), b) == 0.75
    assert metrics.agreement(np.zeros(0, int), np.zeros(0, int)) == 1.0
    d = metrics.prob_diffs(a, b)
    assert d["max_abs_prob_diff"] == pytest.approx(0.85) and d["mean_abs_prob_diff"] == pytest.approx(2 * 0.85 / 12)
    with pytest.raises(EdgeError, match="not the same images"):
        metrics.agreement(a, b[:3])
    with pytest.raises(EdgeError, match="differ in shape"):
        metrics.prob_diffs(a, b[:, :2])
