"""Training-time augmentation with OpenCV and albumentations, and the Keras data feed built on it.

:class:`Augment`: one random affine warp per image (rotation, shift, zoom, flips) with reflected
borders, then a brightness factor. :class:`LineCapture` (``--augment line``): that warp, then the
line-capture corruptions of :mod:`bench.corruptions` (the same functions the robustness benchmark
uses), each with a probability and a severity range. Applied to the uint8 image at the model size,
so the stored :class:`edge.preprocess.Preprocess` is the only thing that turns pixels into model input.
Every random choice comes from the feed's generator, seeded with ``--seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

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
    def preset(cls, name: str):
        """``seeds`` (the original backbone recipe: ±30°, ±30 % shift, ±40 % zoom, flips, brightness 0.6–1.4),
        ``light`` (the compact model's: ±15°, ±10 %, ±10 %, flips, 0.8–1.2; textures from scratch
        learn faster without heavy zoom), ``line`` (``light`` + the line-capture corruptions, see
        :class:`LineCapture`), ``line-strong`` (``seeds`` + the corruptions more often and up to
        severity 4; the small-data recipe of ``edge-train --init``), or ``none``."""
        if name == "seeds":
            return cls()
        if name == "light":
            return cls(15.0, 0.1, 0.1, True, True, (0.8, 1.2))
        if name == "line":
            return LineCapture(cls.preset("light"))
        if name == "line-strong":
            return LineCapture(cls(), probability=0.3, severities=(1, 4))
        if name == "none":
            return None
        from edge.errors import EdgeError

        raise EdgeError(f"unknown augmentation {name!r} ({', '.join(PRESETS)})")

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


#: Names accepted by :meth:`Augment.preset` (``edge-train --augment``).
PRESETS = ("seeds", "light", "line", "line-strong", "none")
#: Order in which LineCapture applies the corruption kinds: geometry, lighting, optics, sensor, encoder.
LINE_ORDER = ("scale", "illumination", "exposure", "contrast", "defocus_blur", "motion_blur", "gaussian_noise",
              "shot_noise", "jpeg")


@dataclass(frozen=True)
class LineCapture:
    """The geometric :class:`Augment`, then line-capture corruptions, each kind independently.

    Each kind of :mod:`bench.corruptions` is applied with ``probability`` (per kind, per image) at a
    severity drawn uniformly from ``severities`` (inclusive), in :data:`LINE_ORDER`. The kinds and
    severity tables are the benchmark's: pixel parameters are stated for 200x200 NEU tiles and apply
    here at the model size (160x160 for compact, so a blur is ~25 % wider relative to the tile).

    Attributes:
        geometric: The warp applied first (None: none).
        probability: Chance of each kind per image; or a ``{kind: probability}`` mapping for some kinds
            (others 0).
        severities: (lowest, highest) severity drawn, within 1..5.
    """

    geometric: Optional[Augment] = None
    probability: object = 0.2
    severities: Tuple[int, int] = (1, 3)

    def __post_init__(self):
        from bench.corruptions import KINDS, SEVERITIES
        from edge.errors import EdgeError

        lo, hi = self.severities
        if not (SEVERITIES[0] <= lo <= hi <= SEVERITIES[-1]):
            raise EdgeError(f"line-capture severities must satisfy 1 <= low <= high <= 5, got {self.severities}")
        for k, p in self.probabilities().items():
            if k not in KINDS:
                raise EdgeError(f"unknown corruption {k!r} (one of {', '.join(KINDS)})")
            if not 0.0 <= p <= 1.0:
                raise EdgeError(f"probability of {k} must be in [0, 1], got {p}")

    def probabilities(self) -> Dict[str, float]:
        if isinstance(self.probability, dict):
            return {k: float(v) for k, v in self.probability.items()}
        return {k: float(self.probability) for k in LINE_ORDER}

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from bench.corruptions import apply

        out = self.geometric(img, rng) if self.geometric is not None else img
        probs = self.probabilities()
        lo, hi = self.severities
        for kind in LINE_ORDER:
            p = probs.get(kind, 0.0)
            # draw all three numbers every time, so one kind's choice does not shift the others' streams
            hit, sev, seed = rng.random(), int(rng.integers(lo, hi + 1)), int(rng.integers(0, 2 ** 32))
            if hit < p:
                out = apply(np.ascontiguousarray(out), kind, sev, seed)
        return out

    def describe(self) -> dict:
        return {"geometric": self.geometric.describe() if self.geometric else None, "line_capture": {
            "probability": self.probabilities(), "severities": list(self.severities),
            "kinds": "bench.corruptions (same tables as edge-bench --corruptions)"}}


def make_feed(images: np.ndarray, y: np.ndarray, prep: Preprocess, batch_size: int,
              augment, seed: int, shuffle: bool = True):
    """A ``keras.utils.PyDataset`` of (float32 batch, one-hot labels), reshuffled and re-augmented each epoch.

    Args:
        images: uint8 (N, H, W) at the model size (``prep.resize`` already applied).
        y: One-hot labels (N, K).
        prep: The model's preprocessing (scale, channels).
        batch_size: Batch size.
        augment: Random changes (:class:`Augment`, :class:`LineCapture`), or None.
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
