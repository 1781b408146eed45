"""The calibration image set and the onnxruntime data reader that feeds it.

The set is a stratified subset of the **training split only**, read from the model's
``split.csv`` (:func:`edge.data.select` + :func:`edge.data.stratified_subset`): validation and
test files are never read. Images are decoded chunk by chunk, so only one chunk is in memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from edge.data import Dataset, read_gray, select, stratified_subset
from edge.errors import EdgeError, param
from edge.preprocess import Preprocess

#: The only split calibration may read (``--calib-split``).
CALIB_SPLITS = ("train",)


@dataclass
class CalibrationSet:
    """The images chosen for calibration and where they came from.

    Attributes:
        dataset: The chosen samples (labels in the model's class order).
        split: The split they were drawn from (always ``train``).
        split_file: The ``split.csv`` that defined the split.
        available: Number of images in that split.
    """

    dataset: Dataset
    split: str
    split_file: Path
    available: int

    @property
    def files(self) -> List[str]:
        """Relative paths of the chosen images (sorted, as hashed)."""
        return sorted(s.rel(self.dataset.root) for s in self.dataset.samples)

    def __len__(self) -> int:
        return len(self.dataset)

    def image_list_sha256(self) -> str:
        """sha256 over the sorted ``relative-path:content-sha256`` lines of the chosen images."""
        lines = sorted(f"{s.rel(self.dataset.root)}:{s.sha256}" for s in self.dataset.samples)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def summary(self) -> Dict:
        """What the calibration record and the metadata say about the image set."""
        return {
            "data": str(self.dataset.root),
            "split": self.split,
            "split_file": str(self.split_file),
            "size": len(self.dataset),
            "available_in_split": self.available,
            "per_class": self.dataset.counts(),
            "image_list_sha256": self.image_list_sha256(),
        }


def calibration_set(data: str | os.PathLike, classes: Sequence[str], split_file: str | os.PathLike,
                    size: int = 500, split: str = "train", seed: int = 0) -> CalibrationSet:
    """Choose the calibration images: a stratified subset of the training split.

    Args:
        data: Dataset folder (any layout :func:`edge.data.load_dataset` reads).
        classes: The model's class names, in output order.
        split_file: The model's ``split.csv``.
        size: Number of images (all of the split if it has exactly that many).
        split: Must be ``train``; anything else is refused (never calibrate on val/test).
        seed: Seed of the stratified draw.

    Raises:
        EdgeError: wrong split, missing/empty folder, class names not matching the model, split
            file not matching the folder, ``size`` larger than the split, or ``size`` < 1.
    """
    if split not in CALIB_SPLITS:
        raise EdgeError(f"calibration may only use the training split, not {split!r} "
                        "(validation is for the drift gate, test for the final figures)")
    if size < 1:
        raise EdgeError(f"{param('calib_size')} must be at least 1, got {size}")
    split_file = Path(split_file)
    if not split_file.is_file():
        raise EdgeError(f"split file {split_file} does not exist: calibration needs the model's split.csv "
                        f"so that it never reads test images (pass {param('split_file')})")
    try:
        ds = select(data, split, split_file=split_file, classes=list(classes))
    except EdgeError as e:
        if "not among the model's classes" in str(e):
            raise EdgeError(f"calibration data {data}: {e}") from None
        raise
    if size > len(ds):
        raise EdgeError(f"{param('calib_size', size)} is larger than the {split} split of {data} "
                        f"({len(ds)} images in {split_file.name})")
    sub = stratified_subset(ds, size, seed=seed)
    return CalibrationSet(sub, split, split_file, len(ds))


def iter_batches(paths: Sequence[Path], prep: Preprocess, batch: int) -> Iterator[np.ndarray]:
    """Read, preprocess and yield float32 batches of at most ``batch`` images."""
    for i in range(0, len(paths), batch):
        yield prep([read_gray(p) for p in paths[i:i + batch]])


class _IterableReader:
    """``__iter__``/``__next__`` over ``get_next()``: onnxruntime >= 1.16 also iterates readers."""

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        x = self.get_next()
        if x is None:
            raise StopIteration
        return x


class ArrayReader(_IterableReader):
    """A CalibrationDataReader over an in-memory float32 batch (e.g. for the loss debugger).

    Args:
        input_name: The ONNX input name.
        x: Preprocessed inputs (N, H, W, C).
        batch: Images per ``get_next``.
    """

    def __init__(self, input_name: str, x: np.ndarray, batch: int = 16):
        self.input_name, self.x, self.batch, self.i = input_name, x, batch, 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.i >= len(self.x):
            return None
        b = self.x[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.input_name: b}


def chunks(paths: Sequence[Path], size: int) -> Iterator[List[Path]]:
    """Split ``paths`` into lists of ``size`` (the unit of one ``collect_data`` call)."""
    for i in range(0, len(paths), size):
        yield list(paths[i:i + size])
