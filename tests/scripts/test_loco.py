"""scripts/loco.py's selection rule and scripts/loco_variants.py's validation-only table (synthetic arrays)."""

import numpy as np
import pytest

from scripts import loco, loco_variants


def test_choose_highest_val_auroc_ties_to_preference():
    assert loco.choose({"max_softmax": 0.80, "energy": 0.70, "logit_cosine": 0.90}) == "logit_cosine"
    # within 0.005 of the best: the first of PREFERENCE (round 4: knn, the current default, first)
    assert loco.choose({"max_softmax": 0.897, "logit_cosine": 0.90, "mahalanobis": 0.901}) == "max_softmax"
    assert loco.choose({"knn": 0.897, "logit_cosine": 0.85, "relative_mahalanobis": 0.901}) == "knn"
    assert loco.choose({"cosine": 0.80, "mahalanobis": 0.804, "logit_cosine": 0.70}) == "cosine"
    assert loco.choose({"relative_mahalanobis_l2": 0.95, "relative_mahalanobis": 0.948, "knn": 0.94}) \
        == "relative_mahalanobis"
    assert loco.choose({"relative_mahalanobis": 0.96, "knn": 0.954}) == "relative_mahalanobis"   # beyond the tie


def test_variants_reads_no_test_arrays_and_separates_a_far_class(tmp_path):
    rng = np.random.default_rng(0)
    k, d = 3, 8
    centres = rng.normal(0, 5, (k, 2 * d))

    def feats(y, shift=0.0):
        return np.abs(centres[y] + rng.normal(0, 1, (len(y), 2 * d)) + shift)

    y_tr, y_v = np.repeat(np.arange(k), 30), np.repeat(np.arange(k), 10)
    z = {"known_train_y": y_tr, "known_train_features": feats(y_tr), "known_val_features": feats(y_v),
         "unknown_val_features": feats(np.zeros(12, int), shift=25.0)}
    for pre, y in (("known_train", y_tr), ("known_val", y_v), ("unknown_val", np.zeros(12, int))):
        lg = z[f"{pre}_features"][:, :k]
        z[f"{pre}_logits"] = lg
        z[f"{pre}_probs"] = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
    np.savez(tmp_path / "crazing.npz", **z)                       # no test arrays at all: never read
    out = loco_variants.variants(np.load(tmp_path / "crazing.npz"))
    assert out["mahalanobis, features"] == pytest.approx(1.0)    # far off every class mean
    assert {"max_softmax", "energy", "centred cosine, logits", "relative mahalanobis, max half",
            "knn k=1, features", "knn k=50, logits"} <= set(out)
    assert out["knn k=1, features"] > 0.9                         # the unknown rows point elsewhere
    assert loco_variants.main([str(tmp_path), "--md", str(tmp_path / "v.md")]) == 0
    assert "| mahalanobis, features | 1.0000 |" in (tmp_path / "v.md").read_text()
