"""edge.preprocess.Preprocess: resize, scales, gray->3 channels, BGR frames, bad definitions, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.preprocess import SCALES, Preprocess


def _ramp(h=20, w=30):
    return (np.arange(h * w, dtype=np.int64).reshape(h, w) % 256).astype(np.uint8)


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_scales_map_uint8_range(scale):
    p = Preprocess(2, 2, 1, scale)
    x = p(np.array([[0, 255], [255, 0]], np.uint8))
    a, b = SCALES[scale]
    assert x.dtype == np.float32 and x.shape == (1, 2, 2, 1)
    assert x.min() == pytest.approx(b) and x.max() == pytest.approx(255 * a + b)
    assert p.value_range == pytest.approx((x.min(), x.max()))   # what the CPU int8 converter relies on


def test_unit_and_symmetric_values():
    img = np.array([[0, 51], [127, 255]], np.uint8)
    np.testing.assert_allclose(Preprocess(2, 2, 1, "unit")(img)[0, ..., 0], img / 255.0, rtol=1e-6)
    np.testing.assert_allclose(Preprocess(2, 2, 1, "symmetric")(img)[0, ..., 0], img / 127.5 - 1, rtol=1e-6, atol=1e-6)


def test_resize_uses_opencv_area():
    import cv2

    img = _ramp(40, 60)
    p = Preprocess(10, 15, 1, "raw", "area")
    expected = cv2.resize(img, (15, 10), interpolation=cv2.INTER_AREA).astype(np.float32)
    np.testing.assert_array_equal(p(img)[0, ..., 0], expected)


def test_three_channels_replicate_gray():
    x = Preprocess(8, 8, 3, "symmetric")(np.stack([_ramp(), _ramp()[::-1]]))
    assert x.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_bgr_frame_converted_to_gray():
    import cv2

    bgr = np.dstack([_ramp(), _ramp()[:, ::-1], np.full((20, 30), 9, np.uint8)])
    p = Preprocess(20, 30, 1, "raw")
    np.testing.assert_array_equal(p([bgr])[0, ..., 0], cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32))


def test_out_buffer_is_filled_in_place():
    p = Preprocess(4, 4, 1, "unit")
    buf = np.zeros((1, 4, 4, 1), np.float32)
    res = p(np.full((4, 4), 255, np.uint8), out=buf)
    assert res is buf and np.all(buf == 1.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(scale="imagenet"), "scale"),
    (dict(channels=2), "channels"),
    (dict(interpolation="cubic"), "interpolation"),
    (dict(layout="NCHW"), "NHWC"),
])
def test_bad_definitions(kwargs, match):
    with pytest.raises(EdgeError, match=match):
        Preprocess(8, 8, **kwargs)


def test_save_load_roundtrip(tmp_path):
    p = Preprocess(96, 128, 3, "symmetric", "linear")
    p.save(tmp_path / "preprocess.json")
    assert Preprocess.load(tmp_path / "preprocess.json") == p
    assert p.input_shape == (96, 128, 3)
    with pytest.raises(EdgeError, match="does not exist"):
        Preprocess.load(tmp_path / "missing.json")
    with pytest.raises(EdgeError, match="bad preprocessing"):
        Preprocess.from_dict({"height": 8})


def test_a_batch_at_the_model_size_takes_the_vectorized_path_with_the_same_values():
    from edge.preprocess import Preprocess

    x = np.random.default_rng(5).integers(0, 256, (4, 20, 24), dtype=np.uint8)
    for scale, ch in (("unit", 1), ("symmetric", 3), ("raw", 1)):
        p = Preprocess(20, 24, ch, scale)
        assert np.array_equal(p(x), p(list(x)))          # array (one step) == list (per image)
