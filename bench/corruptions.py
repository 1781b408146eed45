"""Image corruptions at three severities for the robustness table (``edge-bench --corruptions``).

Applied to the uint8 grayscale images *before* each model's own preprocessing, so every model
sees the same corrupted pixels. Deterministic: the noise of image ``i`` comes from a generator
seeded with ``(seed, i)``, so results do not depend on batch order or size.

Severities (ImageNet-C style, chosen for 200x200 NEU images with grey levels around 60..200):

========== ================================================== =====================
corruption what                                               severities 1 / 2 / 3
========== ================================================== =====================
noise      additive Gaussian noise, sigma in grey levels      8 / 16 / 32
blur       Gaussian blur (OpenCV), sigma in pixels             1 / 2 / 3
brightness additive shift of grey levels                       +30 / +60 / +90
contrast   scale around the image mean, factor                 0.6 / 0.4 / 0.2
========== ================================================== =====================

All results are clipped to 0..255 and rounded back to uint8.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, Tuple

import numpy as np

from edge.errors import EdgeError

SEVERITIES = (1, 2, 3)
#: Parameter of each corruption at severities 1, 2, 3.
PARAMS: Dict[str, Tuple[float, float, float]] = {
    "noise": (8.0, 16.0, 32.0),
    "blur": (1.0, 2.0, 3.0),
    "brightness": (30.0, 60.0, 90.0),
    "contrast": (0.6, 0.4, 0.2),
}


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``sigma`` grey levels."""
    return _to_u8(img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with ``sigma`` pixels (kernel size from sigma, OpenCV's rule)."""
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def brightness(img: np.ndarray, shift: float) -> np.ndarray:
    """Add ``shift`` grey levels."""
    return _to_u8(img.astype(np.float32) + shift)


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale the deviations from the image mean by ``factor``."""
    f = img.astype(np.float32)
    m = f.mean()
    return _to_u8((f - m) * factor + m)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Return a corrupted copy of uint8 images (N, H, W).

    Args:
        images: uint8 grayscale images (N, H, W).
        name: One of :data:`PARAMS` (noise, blur, brightness, contrast).
        severity: 1, 2 or 3.
        seed: Seed of the noise (image ``i`` uses ``default_rng((seed, i))``).

    Raises:
        EdgeError: unknown corruption or severity, or images not uint8 (N, H, W).
    """
    if name not in PARAMS:
        raise EdgeError(f"unknown corruption {name!r} (one of {', '.join(PARAMS)})")
    if severity not in SEVERITIES:
        raise EdgeError(f"corruption severity must be 1, 2 or 3, got {severity}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise EdgeError(f"corruptions take uint8 images (N, H, W), got {images.dtype} {images.shape}")
    p = PARAMS[name][severity - 1]
    fn: Callable[[int, np.ndarray], np.ndarray]
    if name == "noise":
        fn = lambda i, im: gaussian_noise(im, p, np.random.default_rng((seed, i)))  # noqa: E731
    elif name == "blur":
        fn = lambda i, im: blur(im, p)  # noqa: E731
    elif name == "brightness":
        fn = lambda i, im: brightness(im, p)  # noqa: E731
    else:
        fn = lambda i, im: contrast(im, p)  # noqa: E731
    return np.stack([fn(i, im) for i, im in enumerate(images)]) if len(images) else images.copy()


def all_conditions() -> Iterator[Tuple[str, int, float]]:
    """(name, severity, parameter) for every corruption and severity, in table order."""
    for name, params in PARAMS.items():
        for sev, p in zip(SEVERITIES, params):
            yield name, sev, p
