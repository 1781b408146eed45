"""edge-train --init: fine-tuning a trained model on a plant's own folders (known classes kept, new ones
added, early layers frozen, a held-out part carved out and reported), and its bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("keras")

from edge.data import load_dataset, read_split_csv  # noqa: E402
from edge.metadata import read_meta  # noqa: E402
from train import cli  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory, sample_dir):
    """The model to fine-tune, trained through the Python API (train.train_model; the CLI: test_cli.py)."""
    from train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("base") / "compact"
    res = train_model(TrainConfig(data=str(sample_dir), model="compact", epochs=2, input_size=32, seed=1,
                                  out=str(out)))
    assert res.model == out / "model.keras" and res.report["training"]["epochs_run"] == 2
    assert json.loads((out / "report.json").read_text())["accuracy"] == res.accuracy
    return res.model


@pytest.fixture(scope="module")
def plant(tmp_path_factory, sample_dir):
    """Folder per class: three NEU classes (scratches, inclusion, patches) and a new no_defect class."""
    import cv2

    d = tmp_path_factory.mktemp("plant")
    for prefix, name in (("Sc", "scratches"), ("In", "inclusion"), ("Pa", "patches")):
        (d / name).mkdir()
        for p in sorted(sample_dir.glob(f"{prefix}_*.bmp"))[:6]:
            shutil.copy(p, d / name / p.name)
    (d / "no_defect").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(d / "no_defect" / f"ok{i}.png"), np.clip(rng.normal(128, 6, (200, 200)), 0, 255).astype(np.uint8))
    return d


def test_finetune_keeps_known_adds_new_and_freezes_early_layers(base, plant, tmp_path):
    from edge.runtime.keras.runner import load_keras_model

    out = tmp_path / "ft"
    rc = cli.main(["--init", str(base), "--data", str(plant), "--epochs", "3", "--seed", "2", "--out", str(out)])
    assert rc == 0
    ds = load_dataset(plant)
    meta = read_meta(out / "model.keras")
    assert meta["classes"] == ds.classes == ["inclusion", "no_defect", "patches", "scratches"]
    assert meta["output"]["shape"] == [-1, 4] and meta["preprocess"] == read_meta(base)["preprocess"]
    rep = json.loads((out / "report.json").read_text())
    info = rep["training"]["classes"]
    assert info["added"] == ["no_defect"] and set(info["kept"]) == {"inclusion", "patches", "scratches"}
    assert set(info["dropped"]) == {"crazing", "pitted_surface", "rolled-in_scale"}
    # the held-out part: 20 % of 6 = 1 image per class, reported and written as val
    split = read_split_csv(out / "split.csv", ds)
    assert sorted(split.values()).count("val") == 4 == rep["n"] == rep["training"]["counts"]["val"]
    assert rep["split"] == "val" and 0.0 <= rep["accuracy"] <= 1.0
    old, new = load_keras_model(base), load_keras_model(out / "model.keras")
    # frozen stem and blocks 1-2: unchanged weights; the head was trained
    for name in rep["training"]["frozen_layers"]:
        for a, b in zip(old.get_layer(name).get_weights(), new.get_layer(name).get_weights()):
            assert np.array_equal(a, b), name
    assert {"stem_conv", "block1_conv", "block2_conv"} <= set(rep["training"]["frozen_layers"])
    assert "block3_conv" not in rep["training"]["frozen_layers"] and "block3_bn" in rep["training"]["frozen_layers"]
    assert not np.array_equal(old.get_layer("block4_conv").get_weights()[0], new.get_layer("block4_conv").get_weights()[0])


def test_adapt_head_copies_known_columns(base):
    from edge.runtime.keras.runner import load_keras_model
    from train.finetune import adapt_head

    m = load_keras_model(base)
    old = read_meta(base)["classes"]
    new_classes = ["scratches", "oxide_scale", "crazing"]
    m2, info = adapt_head(m, old, new_classes)
    wa_old, ba_old = m.get_layer("logits_gap").get_weights()
    wa_new, ba_new = m2.get_layer("logits_gap").get_weights()
    assert wa_new.shape == (wa_old.shape[0], 3)
    assert np.array_equal(wa_new[:, 0], wa_old[:, old.index("scratches")])
    assert np.array_equal(wa_new[:, 2], wa_old[:, old.index("crazing")]) and ba_new[1] == 0.0
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    assert np.asarray(m2(x)).shape == (2, 3)
    assert info["added"] == ["oxide_scale"]


def test_finetune_bad_inputs(base, plant, tmp_path, capsys):
    def err(argv, *needles):
        rc = cli.main(argv)
        e = capsys.readouterr().err.strip()
        assert rc == 2 and len(e.splitlines()) == 1, e
        for n in needles:
            assert n in e, e

    out = str(tmp_path / "o")
    err(["--init", str(tmp_path / "nope.keras"), "--data", str(plant), "--out", out], "does not exist")
    err(["--init", str(base), "--model", "compact", "--data", str(plant), "--out", out], "either --model")
    err(["--data", str(plant), "--out", out], "either --model")
    err(["--init", str(base), "--pool", "avg", "--data", str(plant), "--out", out], "--pool")
    err(["--model", "compact", "--holdout", "0.3", "--data", str(plant), "--out", out], "--init only")
    err(["--init", str(base), "--holdout", "1.5", "--data", str(plant), "--out", out], "--holdout")
    lonely = tmp_path / "lonely"
    shutil.copytree(plant, lonely)
    for p in list((lonely / "no_defect").iterdir())[1:]:
        p.unlink()
    err(["--init", str(base), "--data", str(lonely), "--out", out], "no_defect", "at least 2")
    assert not (tmp_path / "o").exists()
