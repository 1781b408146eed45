"""Training-time augmentation with OpenCV, and the Keras data feed built on it.

One random affine warp per image (rotation, shift, zoom, flips) with reflected borders, then a
brightness factor; applied to the uint8 image at the model size, so the stored
:class:`edge.preprocess.Preprocess` is the only thing that turns pixels into model input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge.preprocess import Preprocess


@dataclass(frozen=True)
class Augment:
    """Random geometric and photometric changes of a grayscale uint8 image.

    Attributes:
        rotation: Maximum rotation in degrees (uniform in ±rotation).
        shift: Maximum shift as a fraction of the image size (each axis).
        zoom: Maximum zoom change (scale uniform in [1 - zoom, 1 + zoom]).
        hflip: Random horizontal flips.
        vflip: Random vertical flips.
        brightness: (low, high) factor range.
    """

    rotation: float = 30.0
    shift: float = 0.3
    zoom: float = 0.4
    hflip: bool = True
    vflip: bool = True
    brightness: tuple = (0.6, 1.4)

    @classmethod
    def preset(cls, name: str) -> Optional["Augment"]:
        """``seeds`` (DEVELOPERS.md: ±30°, ±30 % shift, ±40 % zoom, flips, brightness 0.6–1.4),
        ``light`` (the compact model's: ±15°, ±10 %, ±10 %, flips, 0.8–1.2; textures from scratch
        learn faster without heavy zoom), or ``none``."""
        if name == "seeds":
            return cls()
        if name == "light":
            return cls(15.0, 0.1, 0.1, True, True, (0.8, 1.2))
        if name == "none":
            return None
        from edge.errors import EdgeError

        raise EdgeError(f"unknown augmentation {name!r} (seeds, light or none)")

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        angle = rng.uniform(-self.rotation, self.rotation) if self.rotation else 0.0
        scale = rng.uniform(1 - self.zoom, 1 + self.zoom) if self.zoom else 1.0
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
        if self.shift:
            m[0, 2] += rng.uniform(-self.shift, self.shift) * w
            m[1, 2] += rng.uniform(-self.shift, self.shift) * h
        if self.hflip and rng.random() < 0.5:  # x -> w - 1 - x, composed after the warp
            m[0] = -m[0]
            m[0, 2] += w - 1
        if self.vflip and rng.random() < 0.5:
            m[1] = -m[1]
            m[1, 2] += h - 1
        out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        lo, hi = self.brightness
        if (lo, hi) != (1.0, 1.0):
            f = rng.uniform(lo, hi)
            out = np.clip(out.astype(np.float32) * f, 0, 255).astype(np.uint8)
        return out

    def describe(self) -> dict:
        return {"rotation_deg": self.rotation, "shift": self.shift, "zoom": self.zoom, "hflip": self.hflip,
                "vflip": self.vflip, "brightness": list(self.brightness)}


def make_feed(images: np.ndarray, y: np.ndarray, prep: Preprocess, batch_size: int,
              augment: Optional[Augment], seed: int, shuffle: bool = True):
    """A ``keras.utils.PyDataset`` of (float32 batch, one-hot labels), reshuffled and re-augmented each epoch.

    Args:
        images: uint8 (N, H, W) at the model size (``prep.resize`` already applied).
        y: One-hot labels (N, K).
        prep: The model's preprocessing (scale, channels).
        batch_size: Batch size.
        augment: Random changes, or None.
        seed: Seed of the shuffling/augmentation generator (deterministic runs).
        shuffle: Reshuffle every epoch.
    """
    import keras

    class Feed(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(images))
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(images) / batch_size)

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            batch = images[idx]
            if augment is not None:
                batch = np.stack([augment(im, self.rng) for im in batch])
            return prep(batch), y[idx]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return Feed()
