"""Corruptions: deterministic, of increasing strength, and what they claim to be."""

import numpy as np
import pytest

from bench import corruptions as C
from edge.errors import EdgeError


@pytest.fixture(scope="module")
def imgs():
    rng = np.random.default_rng(1)
    base = rng.integers(60, 190, size=(3, 40, 40)).astype(np.uint8)
    return base


def test_all_conditions_is_four_by_three():
    conds = list(C.all_conditions())
    assert len(conds) == 12
    assert {c[0] for c in conds} == {"noise", "blur", "brightness", "contrast"}
    assert {c[1] for c in conds} == {1, 2, 3}


def test_noise_is_seeded_per_image_and_grows(imgs):
    a = C.corrupt(imgs, "noise", 2, seed=5)
    b = C.corrupt(imgs, "noise", 2, seed=5)
    assert np.array_equal(a, b)
    # image i's noise does not depend on the batch it is in
    assert np.array_equal(C.corrupt(imgs[:1], "noise", 2, seed=5)[0], a[0])
    assert not np.array_equal(a, C.corrupt(imgs, "noise", 2, seed=6))
    stds = [np.std(C.corrupt(imgs, "noise", s).astype(float) - imgs) for s in (1, 2, 3)]
    assert stds[0] < stds[1] < stds[2]
    assert stds[1] == pytest.approx(16, rel=0.1)


def test_blur_smooths_more_with_severity(imgs):
    def roughness(x):
        return np.abs(np.diff(x.astype(float), axis=2)).mean()
    r = [roughness(C.corrupt(imgs, "blur", s)) for s in (1, 2, 3)]
    assert roughness(imgs) > r[0] > r[1] > r[2]
    const = np.full((1, 20, 20), 77, np.uint8)
    assert np.array_equal(C.corrupt(const, "blur", 3), const)   # blur keeps flat images


def test_brightness_and_contrast(imgs):
    b = C.corrupt(imgs, "brightness", 1)
    assert np.array_equal(b.astype(int), np.clip(imgs.astype(int) + 30, 0, 255))
    assert C.corrupt(imgs, "brightness", 3).max() == 255          # clipped, still uint8
    c = C.corrupt(imgs, "contrast", 3)
    assert c.dtype == np.uint8
    for i in range(len(imgs)):
        assert c[i].std() == pytest.approx(0.2 * imgs[i].std(), rel=0.05)
        assert c[i].mean() == pytest.approx(imgs[i].mean(), abs=1)


def test_input_is_not_modified(imgs):
    before = imgs.copy()
    for name, sev, _ in C.all_conditions():
        C.corrupt(imgs, name, sev)
    assert np.array_equal(imgs, before)


@pytest.mark.parametrize("name,sev,arr", [("fog", 1, None), ("noise", 4, None), ("noise", 1, np.zeros((2, 4, 4), np.float32))])
def test_bad_arguments(imgs, name, sev, arr):
    with pytest.raises(EdgeError):
        C.corrupt(imgs if arr is None else arr, name, sev)
