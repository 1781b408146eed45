"""The fast gray PNG path decodes exactly what OpenCV decodes, and hands everything else back to OpenCV."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from edge.capture import png
from edge.capture.sources import ImageFolderSource


def _cv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _encode(img: np.ndarray, filters, extra=(), interlace=0, idat_parts=1) -> bytes:
    """A gray 8-bit PNG with the given filter type per row (0 None, 1 Sub, 2 Up, 3/4 raw bytes as-is)."""
    h, w = img.shape
    rows = []
    prev = np.zeros(w, np.uint8)
    for r in range(h):
        cur, f = img[r], filters[r % len(filters)]
        if f == 1:
            body = cur - np.concatenate(([0], cur[:-1])).astype(np.uint8)
        elif f == 2:
            body = cur - prev
        else:
            body = cur
        rows.append(bytes([f]) + body.astype(np.uint8).tobytes())
        prev = cur
    stream = zlib.compress(b"".join(rows), 6)
    step = -(-len(stream) // idat_parts)
    idats = b"".join(_chunk(b"IDAT", stream[i:i + step]) for i in range(0, len(stream), step))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, interlace))
    return png.SIGNATURE + ihdr + b"".join(extra) + idats + _chunk(b"IEND", b"")


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2)
    return np.clip(smooth.astype(np.int16) + rng.integers(-20, 21, (h, w)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("level", [0, 1, 3, 9])
@pytest.mark.parametrize("shape", [(400, 1600), (200, 200), (7, 1), (1, 5), (33, 257)])
@pytest.mark.parametrize("texture", ["smooth", "noisy"])
def test_opencv_written_gray_png_is_bit_identical(shape, level, texture):
    img = _image(*shape, seed=level) if texture == "smooth" else \
        np.random.default_rng(level).integers(0, 256, shape, dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, level])
    data = buf.tobytes()
    out = png.decode(data)
    assert out.dtype == np.uint8 and out.shape == shape and out.flags.writeable
    np.testing.assert_array_equal(out, _cv(data))
    np.testing.assert_array_equal(out, img)
    fast = png.decode_gray8(data)           # libpng picks filters per row: smooth images get Average/Paeth
    if fast is not None:
        np.testing.assert_array_equal(fast, img)


def test_line_texture_takes_the_numpy_path():
    """Steel-like texture written by OpenCV gets Sub rows, which the numpy path reconstructs."""
    rng = np.random.default_rng(3)
    img = np.clip(128 + rng.normal(0, 25, (400, 1600)), 0, 255).astype(np.uint8)
    data = cv2.imencode(".png", img)[1].tobytes()
    out = png.decode_gray8(data)
    assert out is not None
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("filters", [[0], [1], [2], [0, 1, 2], [2, 2, 2, 1], [1, 2, 2, 0, 2], [2, 0]])
def test_mixed_none_sub_up_rows(filters):
    img = _image(61, 97, seed=len(filters))
    data = _encode(img, filters, idat_parts=3)
    np.testing.assert_array_equal(_cv(data), img)
    np.testing.assert_array_equal(png.decode_gray8(data), img)
    np.testing.assert_array_equal(png.decode(data), img)


def test_harmless_chunks_are_skipped():
    img = _image(20, 30)
    data = _encode(img, [1], extra=[_chunk(b"tEXt", b"Camera\x00line-3"), _chunk(b"pHYs", bytes(9))])
    np.testing.assert_array_equal(png.decode_gray8(data), img)
    np.testing.assert_array_equal(png.decode(data), img)


@pytest.mark.parametrize("case", ["paeth", "average", "interlaced", "gamma", "trns", "rgb", "gray16",
                                  "truncated", "bad-zlib", "bad-crc", "bad-text-crc", "not-png", "empty"])
def test_other_files_decode_as_opencv_decodes_them(case, tmp_path):
    """Not for the numpy path: re-wrapped (stored) for OpenCV, or handed over as they are; same result."""
    img = _image(24, 40)
    if case == "paeth":
        data = _encode(img, [1, 4])
    elif case == "average":
        data = _encode(img, [3])
    elif case == "interlaced":
        data = _encode(img, [0], interlace=1)
    elif case == "gamma":
        data = _encode(img, [1], extra=[_chunk(b"gAMA", struct.pack(">I", 45455))])
    elif case == "trns":
        data = _encode(img, [1], extra=[_chunk(b"tRNS", struct.pack(">H", 7))])
    elif case == "rgb":
        data = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))[1].tobytes()
    elif case == "gray16":
        data = cv2.imencode(".png", img.astype(np.uint16) * 257)[1].tobytes()
    elif case == "truncated":
        data = _encode(img, [1])[:-30]
    elif case == "bad-zlib":
        good = bytearray(_encode(img, [1]))
        good[60] ^= 0xFF                     # inside the IDAT stream: Adler-32 or the inflate fails
        data = bytes(good)
    elif case in ("bad-crc", "bad-text-crc"):
        good = bytearray(_encode(img, [1], extra=[_chunk(b"tEXt", b"Camera\x00line-3")]))
        good[20 if case == "bad-crc" else 8 + 25 + 10] ^= 0x01   # in IHDR's width, or in the text
        data = bytes(good)
    elif case == "not-png":
        data = cv2.imencode(".bmp", img)[1].tobytes()
    else:
        data = b""
    assert png.decode_gray8(data) is None
    expected = _cv(data) if data else None
    got = png.decode(data)
    if expected is None:
        assert got is None
    else:
        np.testing.assert_array_equal(got, expected)
    # the folder source still returns what OpenCV makes of the file (or a corrupt frame for None)
    f = tmp_path / "f.png"
    f.write_bytes(data)
    src = ImageFolderSource(str(f))
    src.open()
    got = src.read()
    if expected is None or expected.size == 0:
        assert got is None
    else:
        np.testing.assert_array_equal(got, expected)


def test_pillow_written_png_matches_opencv_whatever_the_path():
    Image = pytest.importorskip("PIL.Image")
    img = _image(50, 80)
    for optimize in (False, True):
        bio = io.BytesIO()
        Image.fromarray(img).save(bio, format="PNG", optimize=optimize)
        data = bio.getvalue()
        out = png.decode_gray8(data)       # Pillow picks filters per row: Paeth rows go to OpenCV
        if out is not None:
            np.testing.assert_array_equal(out, img)
        np.testing.assert_array_equal(_cv(data), img)
        np.testing.assert_array_equal(png.decode(data), img)


def test_folder_source_reads_gray_png_frames_through_the_fast_path(tmp_path, monkeypatch):
    frames = [_image(40, 160, seed=s) for s in range(3)]
    for i, fr in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), fr)
    calls = []
    real = png.decode
    monkeypatch.setattr("edge.capture.sources.decode_png", lambda d: calls.append(1) or real(d))
    src = ImageFolderSource(str(tmp_path))
    src.open()
    for fr in frames:
        np.testing.assert_array_equal(src.read(), fr)
    assert len(calls) == 3


def test_inflater_names_the_implementation():
    assert png.inflater() in ("isal", "zlib")
    try:
        import isal  # noqa: F401
    except ImportError:
        assert png.inflater() == "zlib"
    else:
        assert png.inflater() == "isal"


@pytest.mark.parametrize("kind", ["smooth-gray", "color", "gray16"])
def test_stored_rewrap_hands_libpng_the_same_image_data(kind):
    """The re-wrapped file has one IDAT of stored blocks whose inflate is the original image data."""
    img = _image(300, 500)                  # > 64 KiB of image data: several stored blocks
    if kind == "color":
        img = np.dstack([img, img[::-1], 255 - img])
    elif kind == "gray16":
        img = img.astype(np.uint16) * 257
    data = cv2.imencode(".png", img)[1].tobytes()
    parsed = png._Png.parse(data)
    raw = parsed.inflate()
    rewrapped = png._Png.parse(parsed.stored(raw))
    assert len(rewrapped.idat) == 1 and rewrapped.ihdr == parsed.ihdr
    assert zlib.decompress(bytes(rewrapped.idat[0])) == raw
    np.testing.assert_array_equal(_cv(parsed.stored(raw)), img)
    np.testing.assert_array_equal(png.decode(data), img)


def test_without_isal_decode_is_opencv_on_the_file_itself(monkeypatch):
    img = np.random.default_rng(5).integers(0, 256, (30, 50), dtype=np.uint8)
    data = cv2.imencode(".png", img)[1].tobytes()
    seen = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: seen.append(bytes(buf)) or real(buf, flags))
    monkeypatch.setattr(png, "_zlib_impl", zlib)
    assert png.inflater() == "zlib"
    np.testing.assert_array_equal(png.decode(data), img)
    assert seen == [data]


def test_with_isal_paeth_frames_reach_opencv_rewrapped(monkeypatch):
    pytest.importorskip("isal", reason="isal not installed: decode is OpenCV alone")
    img = _image(40, 64)
    data = _encode(img, [4])                 # Paeth bytes as-is: whatever libpng makes of them
    expected = _cv(data)
    seen = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: seen.append(bytes(buf)) or real(buf, flags))
    np.testing.assert_array_equal(png.decode(data), expected)
    assert len(seen) == 1 and seen[0] != data
    assert len(png._Png.parse(seen[0]).idat) == 1


def test_an_image_over_the_pixel_bound_is_left_to_opencv(monkeypatch):
    img = _image(24, 40)
    data = _encode(img, [1])
    monkeypatch.setattr(png, "_MAX_PIXELS", 24 * 40 - 1)
    assert png._Png.parse(data) is None and png.decode_gray8(data) is None
    seen = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: seen.append(bytes(buf)) or real(buf, flags))
    np.testing.assert_array_equal(png.decode(data), img)
    assert seen == [data]
