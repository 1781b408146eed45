"""Shared fixtures: the embedded NEU sample, the full set when linked, and a tiny trained model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # scripts.* (the shared fixtures, the scripts under test) when pytest runs as `pytest`
    sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "neu-sample"
FULL = ROOT / "data" / "NEU-CLS"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 60-image embedded NEU sample (10 per class)."""
    assert SAMPLE.is_dir(), "data/neu-sample is part of the repository"
    return SAMPLE


@pytest.fixture(scope="session")
def full_neu() -> Path:
    """The full NEU-CLS set (skips where data/NEU-CLS is not linked)."""
    if not (FULL / "Cr_1.bmp").exists():
        pytest.skip("full NEU-CLS not at data/NEU-CLS (make data links ../shared/data/NEU-CLS)")
    return FULL


def _make_tiny_model(out: Path, data: Path, size: int = 64, epochs: int = 8, seed: int = 0) -> Path:
    """Train a tiny Conv-BN-ReLU model on ``data`` and write a model folder like edge-train's."""
    import keras

    from edge.data import load_dataset, load_images, make_split, write_split_csv
    from edge.fsutil import write_json
    from edge.preprocess import Preprocess

    keras.utils.set_random_seed(seed)
    ds = load_dataset(data)
    split = make_split(ds, seed=42)
    prep = Preprocess(size, size, 1, "unit")
    train = ds.subset(split, "train")
    x = prep(load_images(train))
    y = train.labels
    inp = keras.Input((size, size, 1), name="input")
    h = inp
    for f in (8, 16):
        h = keras.layers.Conv2D(f, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outp = keras.layers.Dense(len(ds.classes), activation="softmax", name="probs")(h)
    model = keras.Model(inp, outp)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    prep.save(out / "preprocess.json")
    write_json(out / "classes.json", ds.classes)
    write_split_csv(out / "split.csv", ds, split)
    return out / "model.keras"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, sample_dir) -> Path:
    """A tiny trained Keras model on the embedded sample: ``model.keras`` + preprocess/classes/split."""
    pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("tiny_model")
    return _make_tiny_model(out, sample_dir)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, sample_dir) -> Path:
    """edge-train compact on the embedded sample (48x48 input, 4 epochs, seed 3): a whole model folder."""
    pytest.importorskip("keras")
    from train import cli

    out = tmp_path_factory.mktemp("train") / "compact"
    rc = cli.main(["--data", str(sample_dir), "--model", "compact", "--epochs", "4", "--input-size", "48",
                   "--seed", "3", "--augment", "light", "--out", str(out)])  # recipe v4's, as the tests were written for
    assert rc == 0
    return out


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto broker on 127.0.0.1 at a free port (skips where mosquitto is not installed)."""
    pytest.importorskip("paho.mqtt.client")
    from scripts.fixtures.mosquitto import Mosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (.ci/run installs it with apt-get)")
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.kill()
