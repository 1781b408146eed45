"""Training augmentation: the line-capture preset is deterministic under the seed, keeps shape and dtype,
and really applies the benchmark's corruptions."""

import numpy as np
import pytest

from bench import corruptions as C
from edge.errors import EdgeError
from train.augment import LINE_ORDER, PRESETS, Augment, LineCapture


@pytest.fixture(scope="module")
def img():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    return np.clip(100 + yy + rng.normal(0, 12, (64, 64)), 0, 255).astype(np.uint8)


def test_presets():
    assert set(PRESETS) == {"seeds", "light", "line", "line-strong", "none"}
    line = Augment.preset("line")
    assert isinstance(line, LineCapture) and line.geometric == Augment.preset("light")
    assert set(line.probabilities()) == set(C.KINDS) == set(LINE_ORDER)
    assert Augment.preset("line-strong").severities == (1, 4)
    assert Augment.preset("none") is None
    with pytest.raises(EdgeError, match="line-strong"):
        Augment.preset("heavy")
    d = line.describe()
    assert d["line_capture"]["severities"] == [1, 3] and d["geometric"]["rotation_deg"] == 15.0


def test_line_capture_is_deterministic_under_the_seed(img):
    aug = Augment.preset("line")
    a = [aug(img, r) for r in [np.random.default_rng(7)] for _ in range(20)]
    b = [aug(img, r) for r in [np.random.default_rng(7)] for _ in range(20)]
    c = [aug(img, r) for r in [np.random.default_rng(8)] for _ in range(20)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert all(x.dtype == np.uint8 and x.shape == img.shape for x in a + c)


def test_each_kind_alone_applies_the_benchmark_function(img):
    for kind in C.KINDS:
        aug = LineCapture(None, probability={kind: 1.0}, severities=(2, 2))
        out = aug(img, np.random.default_rng(3))
        # replay the generator: the kind's seed is the third draw of its slot in LINE_ORDER
        rng = np.random.default_rng(3)
        for k in LINE_ORDER:
            _, sev, seed = rng.random(), int(rng.integers(2, 3)), int(rng.integers(0, 2 ** 32))
            if k == kind:
                break
        assert np.array_equal(out, C.apply(img, kind, 2, seed)), kind
        assert not np.array_equal(out, img), kind


def test_probability_zero_is_the_identity_and_one_changes_every_image(img):
    none = LineCapture(None, probability=0.0)
    rng = np.random.default_rng(1)
    assert all(np.array_equal(none(img, rng), img) for _ in range(5))
    allk = LineCapture(None, probability=1.0, severities=(3, 3))
    assert np.abs(allk(img, rng).astype(float) - img).mean() > 5


def test_feed_batches_are_float_and_reproducible(img):
    from edge.preprocess import Preprocess
    from train.augment import make_feed

    pytest.importorskip("keras")
    x = np.stack([img] * 10)
    y = np.eye(2, dtype=np.float32)[np.arange(10) % 2]
    prep = Preprocess(64, 64, 1, "unit")
    f1 = make_feed(x, y, prep, 4, Augment.preset("line"), seed=5)
    f2 = make_feed(x, y, prep, 4, Augment.preset("line"), seed=5)
    (b1, l1), (b2, l2) = f1[0], f2[0]
    assert b1.dtype == np.float32 and b1.shape == (4, 64, 64, 1) and l1.shape == (4, 2)
    assert np.array_equal(b1, b2) and np.array_equal(l1, l2)
    assert 0.0 <= b1.min() and b1.max() <= 1.0


@pytest.mark.parametrize("kw,msg", [(dict(severities=(0, 3)), "severities"), (dict(severities=(4, 2)), "severities"),
                                    (dict(probability={"fog": 0.5}), "fog"), (dict(probability=1.5), "probability")])
def test_bad_line_capture_settings(kw, msg):
    with pytest.raises(EdgeError, match=msg):
        LineCapture(None, **kw)


def test_compact_default_is_recipe_v5_and_light_turns_it_off():
    """Recipe v5 (docs/results/recipe-trials.md, Trial 3): compact trains with the line-capture corruptions
    unless ``augment`` names another preset (``light`` = recipe v4)."""
    from train import TrainConfig
    from train.augment import LineCapture
    from train.recipe import COMPACT_DEFAULT_AUGMENT, Recipe

    assert COMPACT_DEFAULT_AUGMENT == "line"
    r = Recipe.of(TrainConfig(data="data", model="compact", out="o"))
    assert isinstance(r.augment, LineCapture) and r.augment.describe() == Augment.preset("line").describe()
    v4 = Recipe.of(TrainConfig(data="data", model="compact", out="o", augment="light"))
    assert not isinstance(v4.augment, LineCapture) and v4.augment == Augment.preset("light")
