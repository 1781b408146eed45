"""Line-capture corruptions at five severities (``edge-bench --corruptions``, ``edge-train --augment line``).

One set of functions serves the robustness benchmark (a fixed severity per condition, ImageNet-C style)
and the training augmentation (:class:`train.augment.LineCapture` draws a kind and a severity from these
tables). Every kind is an albumentations transform with a degenerate range (the severity's parameter),
so the pixels of a condition are what the table says. Applied to uint8 grayscale images *before* each
model's own preprocessing, so every model sees the same corrupted pixels.

Deterministic: image ``i`` of a condition gets albumentations' random state seeded from
``(seed, kind, severity, i)``, so results do not depend on batch order or size; the random choices left
inside a kind (brighter or darker, the direction of an illumination gradient, zoom in or out) follow that
seed.

Kinds and their parameter at severities 1..5 (NEU tiles are 200x200, grey levels around 60..200; the line
camera's strip moves along the image's vertical axis):

=============== ============================================================ ==========================
kind            what (albumentations transform)                              severities 1 / 2 / 3 / 4 / 5
=============== ============================================================ ==========================
gaussian_noise  additive sensor noise, sigma in grey levels (GaussNoise)     4 / 8 / 12 / 18 / 26
shot_noise      signal-dependent (Poisson) noise, std at grey 128 in grey    4 / 8 / 12 / 18 / 26
                levels (ShotNoise: Poisson in linear light, gamma 2.2
                re-applied, so darker pixels get more grey-level noise;
                scale = 4.2 (std/255)^2, see SHOT_SCALE)
motion_blur     blur along the strip (vertical), kernel length in pixels     3 / 5 / 7 / 9 / 13
                (MotionBlur, angle 90, centred)
defocus_blur    disc blur, radius in pixels (Defocus)                        1 / 2 / 3 / 4 / 5
exposure        gain 1+e, offset 25 e grey levels and gamma 1/(1+e), or the  0.04 / 0.08 / 0.12 / 0.18 / 0.25
                inverse (darker), one of the two per image (RandomGamma,
                RandomBrightnessContrast)
illumination    uneven lighting: linear gradient, corner (vignetting) or     0.04 / 0.08 / 0.12 / 0.16 / 0.2
                Gaussian spot, intensity (Illumination)
contrast        contrast loss around the image mean, factor                  0.8 / 0.65 / 0.5 / 0.35 / 0.2
                (RandomBrightnessContrast: c x + (1 - c) mean)
jpeg            JPEG compression, quality (ImageCompression)                 60 / 40 / 25 / 15 / 8
scale           zoom in by 1+z or out by 1/(1+z), one per image, reflected   0.05 / 0.1 / 0.15 / 0.2 / 0.3
                borders (Affine)
=============== ============================================================ ==========================

All results stay uint8 (albumentations clips).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError

SEVERITIES = (1, 2, 3, 4, 5)
#: Parameter of each kind at severities 1..5 (see the module table for the units).
PARAMS: Dict[str, Tuple[float, ...]] = {
    "gaussian_noise": (4.0, 8.0, 12.0, 18.0, 26.0),
    "shot_noise": (4.0, 8.0, 12.0, 18.0, 26.0),
    "motion_blur": (3, 5, 7, 9, 13),
    "defocus_blur": (1, 2, 3, 4, 5),
    "exposure": (0.04, 0.08, 0.12, 0.18, 0.25),
    "illumination": (0.04, 0.08, 0.12, 0.16, 0.2),
    "contrast": (0.8, 0.65, 0.5, 0.35, 0.2),
    "jpeg": (60, 40, 25, 15, 8),
    "scale": (0.05, 0.1, 0.15, 0.2, 0.3),
}
KINDS = tuple(PARAMS)
#: ShotNoise's scale per (std / 255)^2: albumentations draws the photons in linear light (gamma 2.2 removed),
#: measured: this factor gives the table's std at grey 128 within 10 %.
SHOT_SCALE = 4.2
#: Severities the issue's targets are stated on (mean corruption accuracy at severities 1-3).
TARGET_SEVERITIES = (1, 2, 3)


def _check(name: str, severity: int) -> None:
    if name not in PARAMS:
        raise EdgeError(f"unknown corruption {name!r} (one of {', '.join(PARAMS)})")
    if severity not in SEVERITIES:
        raise EdgeError(f"corruption severity must be 1..5, got {severity}")


@lru_cache(maxsize=None)
def transform(name: str, severity: int):
    """The albumentations pipeline (``A.Compose``, p = 1) of one kind at one severity.

    Raises:
        EdgeError: unknown kind or severity.
    """
    _check(name, severity)
    import cv2
    import albumentations as A

    p = PARAMS[name][severity - 1]
    if name == "gaussian_noise":
        s = p / 255.0
        t = A.GaussNoise(std_range=(s, s), mean_range=(0.0, 0.0), p=1.0)
    elif name == "shot_noise":
        s = SHOT_SCALE * (p / 255.0) ** 2
        t = A.ShotNoise(scale_range=(s, s), p=1.0)
    elif name == "motion_blur":
        k = int(p)
        t = A.MotionBlur(blur_limit=(k, k), angle_range=(90.0, 90.0), direction_range=(0.0, 0.0),
                         allow_shifted=False, p=1.0)
    elif name == "defocus_blur":
        t = A.Defocus(radius=(int(p), int(p)), alias_blur=(0.1, 0.1), p=1.0)
    elif name == "exposure":
        def exp(sign):
            gain = (1.0 + p) ** sign
            gamma = 100.0 * (1.0 + p) ** -sign
            off = sign * 25.0 * p / 255.0
            return A.Sequential([
                A.RandomGamma(gamma_limit=(gamma, gamma), p=1.0),
                A.RandomBrightnessContrast(brightness_limit=(off, off), contrast_limit=(gain - 1, gain - 1),
                                           brightness_by_max=True, p=1.0)], p=1.0)
        t = A.OneOf([exp(1), exp(-1)], p=1.0)
    elif name == "illumination":
        t = A.OneOf([A.Illumination(mode=m, intensity_range=(p, p), effect_type="both", p=1.0)
                     for m in ("linear", "corner", "gaussian")], p=1.0)
    elif name == "contrast":
        # uint8 LUT: alpha x + beta mean(x) with alpha = 1 + contrast, beta = brightness (by the mean)
        t = A.RandomBrightnessContrast(brightness_limit=(1 - p, 1 - p), contrast_limit=(p - 1, p - 1),
                                       brightness_by_max=False, p=1.0)
    elif name == "jpeg":
        t = A.ImageCompression(compression_type="jpeg", quality_range=(int(p), int(p)), p=1.0)
    else:  # scale
        t = A.OneOf([A.Affine(scale=(z, z), border_mode=cv2.BORDER_REFLECT_101, interpolation=cv2.INTER_LINEAR,
                              p=1.0) for z in (1.0 + p, 1.0 / (1.0 + p))], p=1.0)
    return A.Compose([t], p=1.0, seed=0)


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """The seed of image ``index`` under one condition (independent of batches)."""
    return int(np.random.SeedSequence([int(seed), KINDS.index(name), int(severity), int(index)]).generate_state(1)[0])


def apply(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One uint8 (H, W) image corrupted by one kind at one severity, its random choices seeded by ``seed``."""
    t = transform(name, severity)
    t.set_random_seed(int(seed))
    out = t(image=img)["image"]
    return out.reshape(img.shape)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Return a corrupted copy of uint8 images (N, H, W).

    Args:
        images: uint8 grayscale images (N, H, W).
        name: One of :data:`KINDS`.
        severity: 1..5.
        seed: Seed of the random parts (image ``i`` uses :func:`image_seed`).

    Raises:
        EdgeError: unknown corruption or severity, or images not uint8 (N, H, W).
    """
    _check(name, severity)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise EdgeError(f"corruptions take uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if not len(images):
        return images.copy()
    return np.stack([apply(np.ascontiguousarray(im), name, severity, image_seed(seed, name, severity, i))
                     for i, im in enumerate(images)])


def all_conditions() -> Iterator[Tuple[str, int, float]]:
    """(name, severity, parameter) for every kind and severity, in table order."""
    for name, params in PARAMS.items():
        for sev, p in zip(SEVERITIES, params):
            yield name, sev, p


def summarize(conditions: Sequence[dict], models: Sequence[str], reference_of: Dict[str, str]) -> Dict[str, dict]:
    """Per model: clean accuracy, mean accuracy per kind, mean corruption accuracy and relative to clean.

    Args:
        conditions: ``report["corruptions"]["conditions"]`` rows (the first has severity 0, clean).
        models: Reference model paths and artifact paths to summarize.
        reference_of: Artifact path -> its reference model path (references map to themselves).

    Returns:
        ``{model: {"clean", "per_kind": {kind: mean over severities}, "per_kind_1_3", "mca", "mca_1_3",
        "relative", "relative_1_3", "max_drop_pp_vs_reference_1_3", "min_agreement_1_3"}}``; accuracies
        0..1, ``mca`` = mean over every kind and severity, ``relative`` = ``mca / clean``; the last two
        (artifacts only) are the largest accuracy drop below the reference and the lowest top-1 agreement
        with it over the conditions of severity <= 3.
    """
    out: Dict[str, dict] = {}
    for m in models:
        ref = reference_of.get(m, m)
        is_ref = ref == m

        def acc(c):
            if is_ref:
                return (c.get("reference_accuracies") or {}).get(m)
            x = c["results"].get(m)
            return None if x is None else x["accuracy"]

        rows = [c for c in conditions if c["severity"]]
        clean = next((acc(c) for c in conditions if not c["severity"]), None)
        per: Dict[str, list] = {}
        low: Dict[str, list] = {}
        drops, agrees = [], []
        for c in rows:
            a = acc(c)
            if a is None:
                continue
            per.setdefault(c["corruption"], []).append(a)
            if c["severity"] in TARGET_SEVERITIES:
                low.setdefault(c["corruption"], []).append(a)
                if not is_ref:
                    x = c["results"][m]
                    drops.append(-x["accuracy_delta_pp"])
                    agrees.append(x["top1_agreement"])
        if not per:
            continue
        allv = [v for vs in per.values() for v in vs]
        lowv = [v for vs in low.values() for v in vs]
        mca, mca13 = float(np.mean(allv)), float(np.mean(lowv)) if lowv else None
        out[m] = {"clean": clean, "per_kind": {k: float(np.mean(v)) for k, v in per.items()},
                  "per_kind_1_3": {k: float(np.mean(v)) for k, v in low.items()},
                  "mca": mca, "mca_1_3": mca13,
                  "relative": mca / clean if clean else None,
                  "relative_1_3": mca13 / clean if clean and mca13 is not None else None,
                  "max_drop_pp_vs_reference_1_3": max(drops) if drops else None,
                  "min_agreement_1_3": min(agrees) if agrees else None}
    return out
