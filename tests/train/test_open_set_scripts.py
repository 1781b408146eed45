"""scripts/loco.py (rule and tables) and scripts/shots.py (the simulated camera) without training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fold(c, e_val, m_val):
    t = {"auroc": 0.8, "fpr_at_95tpr": 0.4, "accepted_in": 0.98, "rejected_out": 0.1, "threshold": -0.5}
    return {"held_out": c, "known_test_accuracy": 0.95, "scores": {
        "energy": {"val_auroc": e_val, "val_fpr_at_95tpr": 0.5, "test": t},
        "max_softmax": {"val_auroc": m_val, "val_fpr_at_95tpr": 0.5, "test": t}}}


def test_loco_rule_and_markdown():
    loco = _load("loco")
    assert loco.summarize([_fold("a", 0.70, 0.80), _fold("b", 0.74, 0.84)])["chosen"] == "max_softmax"
    assert loco.summarize([_fold("a", 0.803, 0.80)])["chosen"] == "max_softmax"   # within 0.005: the baseline
    s = loco.summarize([_fold("a", 0.9, 0.7)])
    assert s["chosen"] == "energy" and s["energy"]["val_auroc_mean"] == pytest.approx(0.9)
    md = loco.markdown({"settings": {"seed": 42, "epochs": 12, "input_size": 64, "acceptance": 0.99, "command": "x",
                                     "cpu": "cpu", "cores": 2}, "folds": [_fold("a", 0.9, 0.7)], "summary": s})
    assert "| a | 95.00% | - | energy | 0.9000 | 50.0% | 0.8000 | 40.0% |" in md and "**energy**" in md


def test_loco_fold_data_keeps_the_reference_split(tmp_path, sample_dir):
    import csv

    from edge.data import load_dataset, make_split, write_split_csv

    loco = _load("loco")
    ds = load_dataset(sample_dir)
    write_split_csv(tmp_path / "split.csv", ds, make_split(ds, seed=42))
    groups = loco._fold_data(sample_dir, tmp_path / "split.csv", "crazing", tmp_path / "fold")
    rows = list(csv.DictReader(open(tmp_path / "fold" / "split.csv")))
    assert rows and all(r["class"] != "crazing" for r in rows)
    assert sum(len(v) for v in groups["unknown"].values()) == 10          # every crazing image is unknown
    assert load_dataset(tmp_path / "fold" / "data").classes == [c for c in ds.classes if c != "crazing"]


def test_new_camera_is_fixed_and_changes_what_it_says():
    shots = _load("shots")
    img = np.tile(np.linspace(60, 200, 200, dtype=np.float32), (200, 1)).astype(np.uint8)
    a, b = shots.new_camera(img, 1), shots.new_camera(img, 1)
    assert a.shape == (256, 256) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, shots.new_camera(img, 2))                  # the noise follows the seed
    # rotated 90 degrees: the left-to-right ramp of the input becomes a top-to-bottom ramp
    assert a[:, 128].astype(float)[-20:].mean() > a[:, 128].astype(float)[:20].mean() + 50


def test_loco_reads_saved_fold_arrays_instead_of_recomputing(tmp_path, monkeypatch):
    import argparse
    import os

    loco = _load("loco")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes(b"x")
    rng = np.random.default_rng(0)
    arrays = {"known_train_y": np.array([0, 1, 1])}
    for pre in ("known_train", "known_val", "known_test", "unknown_val", "unknown_test"):
        arrays.update({f"{pre}_{k}": rng.random((3, 4)) for k in ("probs", "logits", "features")})
    np.savez(tmp_path / "crazing.npz", **arrays)
    args = argparse.Namespace(arrays=str(tmp_path))

    def no_inference(*a):
        raise AssertionError("recomputed")

    monkeypatch.setattr(loco, "_outputs", no_inference)
    tr, y, outs = loco._fold_outputs(args, "crazing", {}, model_dir, ["a", "b"])
    assert y == [0, 1, 1] and np.array_equal(tr["features"], arrays["known_train_features"])
    assert np.array_equal(outs[("unknown", "test")]["logits"], arrays["unknown_test_logits"])
    # a model newer than the arrays: they belong to an older model, so they are recomputed
    os.utime(model_dir / "model.keras", (2e9, 2e9))
    with pytest.raises(AssertionError, match="recomputed"):
        loco._fold_outputs(args, "crazing", {"known": {"train": []}}, model_dir, ["a", "b"])


def test_loco_passes_label_smoothing_to_edge_train(tmp_path, sample_dir, monkeypatch):
    import argparse

    from edge.data import load_dataset, make_split, write_split_csv
    from edge.errors import EdgeError
    from train import cli

    loco = _load("loco")
    ds = load_dataset(sample_dir)
    write_split_csv(tmp_path / "split.csv", ds, make_split(ds, seed=42))
    seen = []
    monkeypatch.setattr(cli, "main", lambda argv: seen.append(argv) or 1)   # a failed training, nothing trained
    args = argparse.Namespace(data=str(sample_dir), split_file=str(tmp_path / "split.csv"), out=str(tmp_path / "o"),
                              seed=44, epochs=2, input_size=48, augment="line", label_smoothing=0.0)
    with pytest.raises(EdgeError, match="training without crazing failed"):
        loco.run_fold(args, "crazing")
    argv = seen[0]
    assert argv[argv.index("--label-smoothing") + 1] == "0.0" and argv[argv.index("--seed") + 1] == "44"
    args.label_smoothing = None                                    # not given: the recipe's default
    with pytest.raises(EdgeError):
        loco.run_fold(args, "crazing")
    assert "--label-smoothing" not in seen[1]
