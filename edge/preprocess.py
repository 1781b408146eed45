"""The one preprocessing definition, stored with the model and every artifact made from it.

Training, conversion, calibration, the capture daemon and the bench all build their input
tensors with :class:`Preprocess`, so a model never sees pixels prepared another way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.errors import EdgeError

#: How uint8 pixels become the model's input values.
SCALES = {
    "unit": (1.0 / 255.0, 0.0),        # [0, 1]
    "symmetric": (1.0 / 127.5, -1.0),  # [-1, 1]: keras.applications mobilenet_v2/resnet_v2/nasnet "tf" mode
    "raw": (1.0, 0.0),                 # [0, 255]: the model rescales itself
}
INTERPOLATIONS = ("area", "linear", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """Grayscale uint8 image(s) → float32 NHWC batch.

    Attributes:
        height: Model input height.
        width: Model input width.
        channels: 1 (gray) or 3 (gray replicated, for ImageNet backbones).
        scale: One of :data:`SCALES`.
        interpolation: Resize method (OpenCV), used when the image is not height x width.
    """

    height: int
    width: int
    channels: int = 1
    scale: str = "unit"
    interpolation: str = "area"
    layout: str = "NHWC"
    dtype: str = "float32"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise EdgeError(f"unknown preprocessing scale {self.scale!r} (one of {', '.join(SCALES)})")
        if self.channels not in (1, 3):
            raise EdgeError(f"preprocessing channels must be 1 or 3, got {self.channels}")
        if self.interpolation not in INTERPOLATIONS:
            raise EdgeError(f"unknown interpolation {self.interpolation!r}")
        if self.layout != "NHWC":
            raise EdgeError(f"only NHWC layout is supported, got {self.layout}")

    @property
    def input_shape(self) -> tuple:
        """(H, W, C) of one model input."""
        return (self.height, self.width, self.channels)

    @property
    def value_range(self) -> tuple:
        """(low, high) of every input value this preprocessing can produce (from uint8 pixels 0..255)."""
        a, b = SCALES[self.scale]
        return (min(b, 255 * a + b), max(b, 255 * a + b))

    def resize(self, img: np.ndarray) -> np.ndarray:
        """Grayscale uint8 (H, W) at the model size (BGR/BGRA frames are converted to gray)."""
        import cv2

        if img.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            img = cv2.cvtColor(img, code) if img.shape[2] in (3, 4) else img[..., 0]
        if img.shape[:2] != (self.height, self.width):
            interp = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[self.interpolation]
            img = cv2.resize(img, (self.width, self.height), interpolation=interp)
        return img

    def __call__(self, images: np.ndarray | Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """Preprocess a batch.

        Args:
            images: uint8 array (N, H, W) / (H, W), or a list of gray or BGR images.
            out: Optional float32 array (N, H, W, C) to write into (e.g. a pinned host buffer).

        Returns:
            float32 (N, height, width, channels).
        """
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = images[None]
        n = len(images)
        if out is None:
            out = np.empty((n, self.height, self.width, self.channels), dtype=np.float32)
        a, b = SCALES[self.scale]
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[1:] == (self.height, self.width):
            # gray images already at the model size: the whole batch in one vectorized step
            np.multiply(images, a, out=out[..., 0], dtype=np.float32, casting="unsafe")
            if b:
                out[..., 0] += b
            for c in range(1, self.channels):
                out[..., c] = out[..., 0]
            return out
        for i, img in enumerate(images):
            g = self.resize(np.asarray(img))
            np.multiply(g, a, out=out[i, :, :, 0], dtype=np.float32, casting="unsafe")
            if b:
                out[i, :, :, 0] += b
            if self.channels == 3:
                out[i, :, :, 1] = out[i, :, :, 0]
                out[i, :, :, 2] = out[i, :, :, 0]
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        try:
            return cls(**{k: d[k] for k in ("height", "width", "channels", "scale", "interpolation", "layout", "dtype") if k in d})
        except TypeError as e:
            raise EdgeError(f"bad preprocessing definition {d}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        from edge.fsutil import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preprocess":
        path = Path(path)
        if not path.is_file():
            raise EdgeError(f"preprocessing file {path} does not exist")
        return cls.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class TileInput:
    """Gray uint8 tiles → the uint8 NHWC batch of an artifact that preprocesses in its graph.

    Such an artifact (``edge-convert --uint8-tiles``) takes the camera's tiles as they are,
    ``uint8 (N, height, width, 1)``; the resize to the network's input and the scaling run inside
    the model. The host only packs the tiles (one uint8 copy into the batch, or none when
    ``out`` is already the batch). A tile of another size is resized to ``height`` x ``width``
    with ``interpolation`` first (OpenCV), BGR/BGRA images are converted to gray.

    Attributes:
        height: Tile height the artifact takes.
        width: Tile width the artifact takes.
        interpolation: Resize method for images that are not ``height`` x ``width``.
    """

    height: int
    width: int
    interpolation: str = "area"
    channels: int = 1
    dtype: str = "uint8"

    @property
    def input_shape(self) -> tuple:
        """(H, W, 1) of one input."""
        return (self.height, self.width, 1)

    def resize(self, img: np.ndarray) -> np.ndarray:
        """Gray uint8 (height, width) (BGR/BGRA converted, other sizes resized)."""
        return Preprocess(self.height, self.width, 1, "raw", self.interpolation).resize(img)

    def __call__(self, images: np.ndarray | Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """Pack tiles into a uint8 batch (N, height, width, 1).

        Args:
            images: uint8 array (N, h, w) / (N, h, w, 1) / (h, w), or a list of tiles (views are fine).
            out: Optional uint8 array (N, height, width, 1) to write into (e.g. a pinned host buffer).
        """
        if isinstance(images, np.ndarray) and images.dtype == np.uint8:
            arr = images[None] if images.ndim == 2 else images
            if arr.ndim == 3:
                arr = arr[..., None]
            if arr.ndim == 4 and arr.shape[1:] == self.input_shape:
                if out is None:
                    return np.ascontiguousarray(arr)
                out[...] = arr
                return out
            images = list(arr[..., 0] if arr.ndim == 4 and arr.shape[-1] == 1 else arr)
        n = len(images)
        if out is None:
            out = np.empty((n, self.height, self.width, 1), dtype=np.uint8)
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.dtype != np.uint8:
                raise EdgeError(f"tile {i} is {img.dtype}: an artifact with preprocessing in its graph takes uint8 tiles")
            out[i, :, :, 0] = self.resize(img)
        return out
