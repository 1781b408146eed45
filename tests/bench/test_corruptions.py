"""Line-capture corruptions: deterministic, of increasing strength, and what the table says they are."""

import numpy as np
import pytest

from bench import corruptions as C
from edge.errors import EdgeError


@pytest.fixture(scope="module")
def imgs():
    rng = np.random.default_rng(1)
    # a textured image: smooth gradient plus fine noise, grey levels like NEU's
    yy, xx = np.mgrid[0:48, 0:48]
    base = 90 + yy + xx // 2
    return np.stack([np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8) for _ in range(3)])


def _diff(a, b):
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_nine_kinds_by_five_severities():
    conds = list(C.all_conditions())
    assert len(conds) == 45 and len(C.KINDS) == 9
    assert {c[1] for c in conds} == {1, 2, 3, 4, 5}
    assert {"gaussian_noise", "shot_noise", "motion_blur", "defocus_blur", "exposure", "illumination", "contrast",
            "jpeg", "scale"} == set(C.KINDS)


@pytest.mark.parametrize("name", C.KINDS)
def test_every_kind_is_deterministic_uint8_and_grows(imgs, name):
    a = C.corrupt(imgs, name, 3, seed=5)
    assert a.dtype == np.uint8 and a.shape == imgs.shape
    assert np.array_equal(a, C.corrupt(imgs, name, 3, seed=5))
    assert np.array_equal(C.corrupt(imgs[:2], name, 3, seed=5)[1], a[1])  # image i does not depend on the batch size
    d = [_diff(C.corrupt(imgs, name, s, seed=5), imgs) for s in (1, 3, 5)]
    assert 0 < d[0] < d[2], d


def test_noise_has_the_tabled_strength():
    flat = np.full((2, 80, 80), 128, np.uint8)
    for name in ("gaussian_noise", "shot_noise"):
        for sev in (2, 4):
            std = (C.corrupt(flat, name, sev, seed=1).astype(float) - 128).std()
            assert std == pytest.approx(C.PARAMS[name][sev - 1], rel=0.12), (name, sev, std)
    assert not np.array_equal(C.corrupt(flat, "gaussian_noise", 2, seed=1), C.corrupt(flat, "gaussian_noise", 2, seed=2))
    # signal-dependent: Poisson in linear light, re-encoded with gamma 2.2, so dark pixels get more noise in
    # grey levels than bright ones; the additive Gaussian noise is the same everywhere
    dark, bright = np.full((1, 80, 80), 40, np.uint8), np.full((1, 80, 80), 200, np.uint8)
    sd = {n: [C.corrupt(x, n, 4).astype(float).std() for x in (dark, bright)] for n in ("shot_noise", "gaussian_noise")}
    assert sd["shot_noise"][0] > 1.3 * sd["shot_noise"][1]
    assert sd["gaussian_noise"][0] == pytest.approx(sd["gaussian_noise"][1], rel=0.1)


def test_motion_blur_runs_along_the_strip(imgs):
    b = C.corrupt(imgs, "motion_blur", 5).astype(float)
    along = np.abs(np.diff(b, axis=1)).mean() / np.abs(np.diff(imgs.astype(float), axis=1)).mean()
    across = np.abs(np.diff(b, axis=2)).mean() / np.abs(np.diff(imgs.astype(float), axis=2)).mean()
    assert along < 0.6 * across          # smoothed far more along the vertical axis than across it


def test_contrast_keeps_the_mean(imgs):
    c = C.corrupt(imgs, "contrast", 3)
    for i in range(len(imgs)):
        assert c[i].std() == pytest.approx(0.5 * imgs[i].std(), rel=0.05)
        assert c[i].mean() == pytest.approx(imgs[i].mean(), abs=1.5)


def test_input_is_not_modified(imgs):
    before = imgs.copy()
    for name, sev, _ in C.all_conditions():
        C.corrupt(imgs, name, sev)
    assert np.array_equal(imgs, before)


@pytest.mark.parametrize("name,sev,arr", [("fog", 1, None), ("gaussian_noise", 6, None), ("gaussian_noise", 0, None),
                                          ("jpeg", 1, np.zeros((2, 4, 4), np.float32))])
def test_bad_arguments(imgs, name, sev, arr):
    with pytest.raises(EdgeError):
        C.corrupt(imgs if arr is None else arr, name, sev)


def test_summarize_means_and_relative():
    conds = [{"corruption": "none", "severity": 0, "reference_accuracies": {"r": 1.0},
              "results": {"a": {"accuracy": 0.9, "accuracy_delta_pp": -10.0, "top1_agreement": 0.9}}}]
    for kind, accs in (("k1", (0.9, 0.8, 0.7, 0.6, 0.5)), ("k2", (1.0, 1.0, 0.9, 0.9, 0.8))):
        for sev, a in enumerate(accs, 1):
            conds.append({"corruption": kind, "severity": sev, "reference_accuracies": {"r": a},
                          "results": {"a": {"accuracy": a - 0.01 * sev, "accuracy_delta_pp": -1.0 * sev,
                                            "top1_agreement": 1 - 0.02 * sev}}})
    s = C.summarize(conds, ["r", "a"], {"a": "r"})
    assert s["r"]["clean"] == 1.0 and s["a"]["clean"] == 0.9
    assert s["r"]["per_kind"]["k1"] == pytest.approx(0.7) and s["r"]["mca"] == pytest.approx(0.81)
    assert s["r"]["mca_1_3"] == pytest.approx((0.9 + 0.8 + 0.7 + 1 + 1 + 0.9) / 6)
    assert s["a"]["relative"] == pytest.approx(s["a"]["mca"] / 0.9)
    assert s["a"]["max_drop_pp_vs_reference_1_3"] == pytest.approx(3.0)
    assert s["a"]["min_agreement_1_3"] == pytest.approx(0.94)
    assert s["r"]["max_drop_pp_vs_reference_1_3"] is None
