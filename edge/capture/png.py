"""PNG frames decoded faster than OpenCV alone, to the same pixels.

Decoding a 1600x400 gray PNG with OpenCV (libpng on zlib) costs about 4.5 ms of CPU, half as much as
classifying its 16 tiles with the CPU int8 model: it is what bounds a PNG folder source
(``docs/results/daemon-throughput-lanes.md``). Two thirds of that is zlib's inflate, the rest libpng's
per-byte undoing of the row filters. :func:`decode` inflates the image data once with Intel ISA-L
(`python-isal <https://pypi.org/project/isal/>`_, wheels for x86-64 and aarch64 and every JetPack
Python), then:

* an 8-bit gray, non-interlaced image whose rows all use the None, Sub or Up filter (what OpenCV's
  encoder picks for textured surfaces, and what a line recorder writing raw sensor rows typically
  gives) is reconstructed in numpy (:func:`decode_gray8`): Sub rows as a log-step prefix sum mod 256
  (11 passes of whole-array uint8 adds for a 1600-px row), runs of Up rows as a running sum down the
  columns, None rows as they are;
* any other PNG (Average or Paeth rows, colour, 16 bits, interlaced, a ``tRNS``/``gAMA`` chunk, ...)
  goes to OpenCV with its image data re-wrapped as *stored* deflate blocks (a copy, no compression),
  so that libpng skips the slow inflate and does the rest exactly as before;
* a file it cannot parse or inflate (truncated, a chunk whose CRC does not match, a bad zlib stream)
  goes to OpenCV as it is, which decides whether it is corrupt.

Without ISA-L (``isal`` not installed) :func:`decode` is OpenCV alone: with zlib's inflate the numpy
path gains only 1.2-1.25x on a line frame, and a Paeth-filtered gray frame would be inflated twice.

``tests/edge/capture/test_png.py`` checks the result against ``cv2.imdecode(..., IMREAD_UNCHANGED)``
bit for bit on each path; ``scripts/png_decode_speed.py`` measures both paths against OpenCV.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional

import numpy as np

try:  # Intel ISA-L's inflate: about 3x zlib's speed on a camera frame (without it: OpenCV alone)
    from isal import isal_zlib as _zlib_impl
except ImportError:  # pragma: no cover - isal is an install requirement; kept optional for odd platforms
    _zlib_impl = zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Ancillary chunks that do not change the pixels OpenCV returns with IMREAD_UNCHANGED.
_HARMLESS = frozenset((b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"))
#: Animated PNG: left to OpenCV as it is.
_ANIMATION = frozenset((b"acTL", b"fcTL", b"fdAT"))
_SUB, _UP = 1, 2                             # row filter types (0 None, 3 Average, 4 Paeth)
#: Larger images (pixels) are left to OpenCV as they are.
_MAX_PIXELS = 1 << 30
_STORED_BLOCK = 65535


def inflater() -> str:
    """The inflate implementation in use: ``"isal"`` or ``"zlib"``."""
    return "zlib" if _zlib_impl is zlib else "isal"


class _Png:
    """A PNG's chunks, split at its (consecutive) IDAT chunks; None from :meth:`parse` if it is not one."""

    __slots__ = ("data", "ihdr", "head_end", "tail_start", "idat", "harmless")

    @classmethod
    def parse(cls, data) -> Optional["_Png"]:
        mv = memoryview(data).cast("B")
        n = len(mv)
        if n < 8 + 25 or mv[:8] != SIGNATURE:
            return None
        self = cls()
        self.data, self.idat, self.harmless = mv, [], True
        self.head_end = self.tail_start = None
        pos = 8
        while True:
            if pos + 8 > n:
                return None                  # truncated before IEND
            length, ctype = struct.unpack_from(">I4s", mv, pos)
            body, end = pos + 8, pos + 8 + length
            if end + 4 > n or struct.unpack_from(">I", mv, end)[0] != _zlib_impl.crc32(mv[pos + 4:end]) & 0xFFFFFFFF:
                return None                  # truncated, or a chunk's CRC does not match: OpenCV decides
            if pos == 8:
                if ctype != b"IHDR" or length != 13:
                    return None
                self.ihdr = struct.unpack_from(">IIBBBBB", mv, body)
                if self.ihdr[0] * self.ihdr[1] > _MAX_PIXELS:
                    return None
            elif ctype == b"IDAT":
                if self.tail_start is not None:
                    return None              # IDAT chunks must be consecutive
                if self.head_end is None:
                    self.head_end = pos
                self.idat.append(mv[body:end])
            else:
                if self.head_end is not None and self.tail_start is None:
                    self.tail_start = pos
                if ctype == b"IEND":
                    break
                if ctype in _ANIMATION:
                    return None
                self.harmless &= ctype in _HARMLESS
            pos = end + 4
        return self if self.idat else None

    def inflate(self) -> Optional[bytes]:
        try:
            return _zlib_impl.decompress(b"".join(self.idat))
        except Exception:                    # isal raises its own error type, zlib zlib.error
            return None

    def gray8(self, raw: bytes) -> Optional[np.ndarray]:
        """The numpy reconstruction, when the image is 8-bit gray with None/Sub/Up rows only."""
        w, h, depth, color, comp, filt, interlace = self.ihdr
        if (depth, color, comp, filt, interlace) != (8, 0, 0, 0, 0) or not self.harmless or w == 0 \
                or len(raw) != h * (w + 1):
            return None
        rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
        ftype = rows[:, 0]
        if int(ftype.max()) > _UP:
            return None
        return _unfilter(rows[:, 1:], ftype)

    def stored(self, raw: bytes) -> bytes:
        """The same PNG with its image data in one IDAT of stored (uncompressed) deflate blocks."""
        mv, n = memoryview(raw), len(raw)
        parts = [b"\x78\x01"]
        for i in range(0, max(n, 1), _STORED_BLOCK):
            block = mv[i:i + _STORED_BLOCK]
            k = len(block)
            parts += [struct.pack("<BHH", int(i + _STORED_BLOCK >= n), k, k ^ 0xFFFF), block]
        parts.append(struct.pack(">I", _zlib_impl.adler32(raw) & 0xFFFFFFFF))
        body = b"IDAT" + b"".join(parts)
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", _zlib_impl.crc32(body) & 0xFFFFFFFF)
        return b"".join((self.data[:self.head_end], chunk, self.data[self.tail_start:]))


def decode_gray8(data) -> Optional[np.ndarray]:
    """Decodes an 8-bit grayscale PNG whose rows use the None, Sub or Up filter, in numpy.

    Args:
        data: the file's bytes (``bytes``, ``bytearray``, ``memoryview`` or a uint8 array).

    Returns:
        The image, a writable uint8 array of shape (height, width), the same pixels as
        ``cv2.imdecode(data, cv2.IMREAD_UNCHANGED)``; None when the file is not such a PNG or is
        damaged.
    """
    png = _Png.parse(data)
    if png is None:
        return None
    raw = png.inflate()
    return None if raw is None else png.gray8(raw)


def decode(data) -> Optional[np.ndarray]:
    """Decodes PNG bytes to exactly what ``cv2.imdecode(data, cv2.IMREAD_UNCHANGED)`` returns, faster.

    The image data is inflated once, by ISA-L. An 8-bit gray image with None/Sub/Up rows is then
    reconstructed in numpy (:func:`decode_gray8`); any other PNG is handed to OpenCV with its image
    data re-wrapped as stored deflate blocks, so that libpng only undoes the filters and converts, as it
    would have. A file that cannot be parsed or inflated is handed to OpenCV as it is (which decides
    whether it is corrupt).

    Args:
        data: the file's bytes.

    Returns:
        The image (what OpenCV returns), or None when OpenCV cannot decode the file.
    """
    import cv2

    png = _Png.parse(data) if _zlib_impl is not zlib else None   # zlib's inflate: no gain over libpng's
    if png is not None:
        raw = png.inflate()
        if raw is not None:
            img = png.gray8(raw)
            if img is None:
                img = cv2.imdecode(np.frombuffer(png.stored(raw), np.uint8), cv2.IMREAD_UNCHANGED)
            return img
    buf = np.frombuffer(data, np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None


def _prefix_rows(a: np.ndarray) -> np.ndarray:
    """Running sum mod 256 along each row (the Sub filter's reconstruction with 1 byte per pixel)."""
    if a.shape[1] < 2:
        return np.array(a)
    bufs = (np.empty(a.shape, np.uint8), np.empty(a.shape, np.uint8))
    x, k, i = a, 1, 0                        # the first pass reads ``a`` (it may be read-only)
    while k < a.shape[1]:                    # Hillis-Steele: ceil(log2 w) passes of vectorised adds
        y = bufs[i]
        y[:, :k] = x[:, :k]
        np.add(x[:, k:], x[:, :-k], out=y[:, k:])
        x, k, i = y, k << 1, i ^ 1
    return x


def _unfilter(filtered: np.ndarray, ftype: np.ndarray) -> np.ndarray:
    sub = ftype == _SUB
    if sub.all():
        return _prefix_rows(filtered)
    out = np.array(filtered)                 # None rows are final as they are
    if sub.any():
        idx = np.flatnonzero(sub)
        out[idx] = _prefix_rows(out[idx])    # Sub rows depend only on their own row
    up = (ftype == _UP).astype(np.int8)
    if up.any():
        # A run of Up rows adds, column by column, onto the row before it (zeros before row 0).
        edges = np.diff(np.concatenate(([0], up, [0])))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            base = max(int(start) - 1, 0)
            np.add.accumulate(out[base:stop], axis=0, dtype=np.uint8, out=out[base:stop])
    return out
