"""Artifacts for the regression suite, made once per session by ``edge-convert`` (``convert.cli.main``).

* ``sample_case``: the committed compact model ``models/neu-compact/model.keras`` (trained on the full
  NEU set) evaluated on the 60-image embedded sample. Its ``split.csv`` is cut down to the sample's
  files, so calibration uses only sample images from the model's own train split. Without the
  committed model the tiny model of ``tests/conftest.py`` stands in for the FP32/FP16 checks; the
  INT8 checks then skip (models trained on 42 sample images are too unsure of themselves for a 98 %
  agreement bound to mean anything: measured 87-98 % for three such models).
* ``full_case``: the committed compact model on the full NEU test split, calibrated on 120 images of
  the full train split (skips without data/NEU-CLS or the model).

``EDGE_REGRESSION_MODEL=path/model.keras`` points the suite at another model folder (with
preprocess.json, classes.json, split.csv), e.g. a fresh ``runs/compact-s42`` before it is committed.
With TensorRT and a GPU, ``--engine auto`` also builds the engines; elsewhere those cases skip.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "models" / "neu-compact" / "model.keras"


def compact_model() -> Path:
    """The model the INT8 and full-split checks use (the committed one unless overridden)."""
    return Path(os.environ.get("EDGE_REGRESSION_MODEL") or COMMITTED)


@dataclass
class Case:
    """A Keras model, the data it is checked on and the edge-convert output folder."""

    model: Path
    data: Path
    split: str            # which split of model/split.csv is evaluated ("all": every file)
    outdir: Path
    real_model: bool      # False: the tiny stand-in (INT8 checks skip)


def _convert(model: Path, data: Path, out: Path, calib_size: int) -> Path:
    try:
        from convert.cli import main as convert_main
    except ImportError as e:
        pytest.skip(f"edge-convert (convert.cli) is not importable here: {e}")
    rc = convert_main([str(model), "--fp16", "--int8", "--int8-cpu", "--calib-data", str(data),
                       "--split-file", str(model.parent / "split.csv"), "--calib-size", str(calib_size),
                       # the converter's own val gate is not under test here; the tolerances below are
                       "--max-drift", "100", "--engine", "auto", "-o", str(out)])
    assert rc == 0, f"edge-convert failed with exit code {rc}"
    return out


def _model_for_sample(src: Path, sample_dir: Path, dst: Path) -> tuple:
    """Copy a model folder with its split.csv cut down to the sample's files; return (model, n_train)."""
    dst.mkdir(parents=True)
    for name in (src.name, src.name + ".json", "preprocess.json", "classes.json"):
        if (src.parent / name).is_file():
            shutil.copy(src.parent / name, dst / name)
    have = {p.name for p in sample_dir.iterdir()}
    with open(src.parent / "split.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"] in have]
    with open(dst / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "class", "split", "sha256"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return dst / src.name, sum(r["split"] == "train" for r in rows)


@pytest.fixture(scope="session")
def sample_case(sample_dir, tmp_path_factory, request) -> Case:
    """The sample check: the committed compact model if present, else the tiny stand-in."""
    tmp = tmp_path_factory.mktemp("regress-sample")
    src = compact_model()
    if src.is_file():
        model, n_train = _model_for_sample(src, sample_dir, tmp / "model")
        out = _convert(model, sample_dir, tmp / "convert", calib_size=min(40, n_train))
        return Case(model, sample_dir, "all", out, True)
    tiny = request.getfixturevalue("tiny_model")
    out = _convert(tiny, sample_dir, tmp / "convert", calib_size=40)
    return Case(tiny, sample_dir, "all", out, False)


@pytest.fixture(scope="session")
def full_case(full_neu, tmp_path_factory) -> Case:
    """The full NEU test split with the committed compact model."""
    src = compact_model()
    if not src.is_file():
        pytest.skip(f"no committed compact model at {src} (Engineer TRAIN commits models/neu-compact/)")
    out = _convert(src, full_neu, tmp_path_factory.mktemp("regress-full") / "convert", calib_size=120)
    return Case(src, full_neu, "test", out, True)
