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
