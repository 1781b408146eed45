"""The committed samples are honest subsets of models/neu-compact's split: test images in data/neu-sample,
train (calibration) and val (gates) images in data/neu-calib, never a test image there."""

import collections
import csv
from pathlib import Path

import pytest

from edge.fsutil import sha256_file

ROOT = Path(__file__).resolve().parents[2]
MODEL_SPLIT = ROOT / "models" / "neu-compact" / "split.csv"


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def model_rows():
    return {r["file"]: r for r in rows(MODEL_SPLIT)}


@pytest.mark.parametrize("folder, splits, per_class", [
    ("neu-sample", {"test": 10}, 60), ("neu-calib", {"train": 8, "val": 6}, 84)])
def test_sample_rows_are_the_models_rows(model_rows, folder, splits, per_class):
    d = ROOT / "data" / folder
    mine = rows(d / "split.csv")
    assert len(mine) == per_class
    assert {p.name for p in d.glob("*.bmp")} == {r["file"] for r in mine}     # no image without a row
    for r in mine:
        assert r == model_rows[r["file"]]                  # same class, split and hash as the model's split.csv
        assert sha256_file(d / r["file"]) == r["sha256"]  # and the file is that image
    count = collections.Counter((r["split"], r["class"]) for r in mine)
    assert set(count.values()) <= set(splits.values())
    for split, n in splits.items():
        assert sum(v for (s, _), v in count.items() if s == split) == 6 * n
    assert {r["split"] for r in mine} == set(splits)


def test_calibration_of_the_demo_reads_only_train_images():
    from calibrate.reader import calibration_set

    d = ROOT / "data" / "neu-calib"
    classes = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    cs = calibration_set(d, classes, d / "split.csv", size=48)
    split = {r["file"]: r["split"] for r in rows(d / "split.csv")}
    assert len(cs) == 48 and {split[s.path.name] for s in cs.dataset.samples} == {"train"}
