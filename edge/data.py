"""Datasets: NEU-CLS (flat), folder-per-class (incl. the Kaggle NEU layout), NEU-DET (VOC xml).

One loader for every stage (training, calibration, the bench), and one split definition
(``split.csv``) that every later stage reuses so the test files never leak into calibration.

Example:
    >>> ds = load_dataset("data/NEU-CLS")
    >>> split = make_split(ds, seed=42)
    >>> write_split_csv("split.csv", ds, split)
    >>> test = ds.subset(split, "test")
    >>> images = load_images(test)          # uint8 (N, H, W) grayscale
"""

from __future__ import annotations

import collections
import csv
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.fsutil import sha256_file

log = logging.getLogger(__name__)

IMAGE_EXTS = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm"}

#: NEU class names in the canonical order (the model's output order for NEU).
NEU_CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
#: NEU-CLS file prefixes (``Cr_1.bmp`` ...).
NEU_PREFIXES = {"Cr": "crazing", "In": "inclusion", "Pa": "patches", "PS": "pitted_surface",
                "RS": "rolled-in_scale", "Sc": "scratches"}
#: Other spellings of the NEU classes (Kaggle folders, NEU-DET annotations), lower-cased.
NEU_ALIASES = {
    "crazing": "crazing", "cr": "crazing",
    "inclusion": "inclusion", "in": "inclusion",
    "patches": "patches", "pa": "patches",
    "pitted": "pitted_surface", "pitted_surface": "pitted_surface", "ps": "pitted_surface",
    "rolled": "rolled-in_scale", "rolled-in_scale": "rolled-in_scale", "rolled_in_scale": "rolled-in_scale",
    "rs": "rolled-in_scale",
    "scratches": "scratches", "sc": "scratches",
}
SPLITS = ("train", "val", "test")
#: The file a model folder keeps its split in (written by edge-train beside ``model.keras``).
SPLIT_CSV = "split.csv"


@dataclass
class Sample:
    """One image file with its label."""

    path: Path
    label: int
    sha256: str = ""

    def rel(self, root: Path) -> str:
        return Path(os.path.relpath(self.path, root)).as_posix()


@dataclass
class Dataset:
    """Image files with labels, the class names, and the layout they were found in."""

    root: Path
    classes: List[str]
    samples: List[Sample]
    layout: str
    notes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def counts(self) -> Dict[str, int]:
        c = collections.Counter(s.label for s in self.samples)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, split: Dict[str, str], which: str) -> "Dataset":
        """Return the samples whose split (from :func:`make_split` / :func:`read_split_csv`) is ``which``.

        ``which`` may be ``all``.
        """
        if which == "all":
            return self
        if which not in SPLITS:
            raise EdgeError(f"unknown split {which!r}: choose one of {', '.join(SPLITS)} or all")
        keep = [s for s in self.samples if split.get(s.rel(self.root)) == which]
        if not keep:
            raise EdgeError(f"the {which} split of {self.root} is empty")
        return Dataset(self.root, self.classes, keep, self.layout, list(self.notes))

    def remap(self, classes: Sequence[str]) -> "Dataset":
        """Re-index labels to ``classes`` (a model's class order); error if a class is unknown."""
        classes = list(classes)
        missing = [c for c in self.classes if c not in classes]
        if missing:
            raise EdgeError(
                f"dataset classes {missing} are not among the model's classes {classes}")
        idx = {c: i for i, c in enumerate(classes)}
        samples = [Sample(s.path, idx[self.classes[s.label]], s.sha256) for s in self.samples]
        return Dataset(self.root, classes, samples, self.layout, list(self.notes))


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _subdirs(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _natural_key(p: Path):
    stem = p.stem
    head, _, tail = stem.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (stem, -1)


def _canonical_neu(names: Iterable[str]) -> Optional[Dict[str, str]]:
    """Map folder/annotation names to NEU class names if every name is a NEU alias."""
    names = list(names)
    m = {n: NEU_ALIASES.get(n.lower()) for n in names}
    if names and all(m.values()) and len(set(m.values())) == len(names):
        return m
    return None


def load_dataset(root: str | os.PathLike, classes: Optional[Sequence[str]] = None,
                 hash_files: bool = True) -> Dataset:
    """Find the images under ``root`` and their labels, detecting the layout.

    Layouts:
        * ``neu-cls``: image files directly in ``root`` named ``<prefix>_<n>.<ext>`` with
          the NEU prefixes (Cr, In, Pa, PS, RS, Sc).
        * ``folders``: one folder per class (``root/<class>/*.bmp``), or one more level of
          split folders (``root/{train,valid,test}/<class>/...``, the Kaggle NEU layout), merged.
          Folder names that are NEU classes in another spelling are mapped to the NEU names.
        * ``neu-det``: ``IMAGES/`` (or ``images/``) and ``ANNOTATIONS/`` with VOC xml; the
          class is the annotation's object name (the most frequent one if several).

    Args:
        root: The dataset folder.
        classes: Class order to use (for example a model's); by default NEU order for NEU
            data, sorted folder names otherwise.
        hash_files: Compute the content hash of each file (needed for the split).

    Raises:
        EdgeError: missing or empty folder, unknown file prefixes, no images.
    """
    root = Path(root)
    if not root.exists():
        raise EdgeError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise EdgeError(f"dataset path {root} is not a folder")

    subdirs = _subdirs(root)
    lower = {d.name.lower(): d for d in subdirs}
    files = _images_in(root)
    if "images" in lower and "annotations" in lower:
        ds = _load_neu_det(root, lower["images"], lower["annotations"])
    elif files:
        ds = _load_flat(root, files)
    elif subdirs:
        ds = _load_folders(root, subdirs)
    else:
        raise EdgeError(f"dataset folder {root} is empty (no images, no class folders)")

    if classes is not None:
        ds = ds.remap(classes)
    if hash_files:
        for s in ds.samples:
            s.sha256 = sha256_file(s.path)
    return ds


def _load_flat(root: Path, files: List[Path]) -> Dataset:
    unknown = []
    samples = []
    idx = {c: i for i, c in enumerate(NEU_CLASSES)}
    for p in sorted(files, key=_natural_key):
        prefix = p.stem.rsplit("_", 1)[0] if "_" in p.stem else ""
        if prefix not in NEU_PREFIXES:
            unknown.append(p.name)
            continue
        samples.append(Sample(p, idx[NEU_PREFIXES[prefix]]))
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise EdgeError(
            f"{root}: {len(unknown)} file(s) without a NEU prefix ({'/'.join(NEU_PREFIXES)}_N): {shown}; "
            "use one folder per class for other data")
    return Dataset(root, list(NEU_CLASSES), samples, "neu-cls")


def _load_folders(root: Path, subdirs: List[Path]) -> Dataset:
    # Either root/<class>/img or root/<split>/<class>/img (Kaggle NEU: train/valid/test).
    direct = {d.name: _images_in(d) for d in subdirs}
    if any(direct.values()):
        per_class = {k: v for k, v in direct.items() if v}
        layout = "folders"
    else:
        per_class: Dict[str, List[Path]] = collections.defaultdict(list)
        for split_dir in subdirs:
            for cdir in _subdirs(split_dir):
                per_class[cdir.name].extend(_images_in(cdir))
        per_class = {k: v for k, v in per_class.items() if v}
        layout = "split-folders"
    if not per_class:
        raise EdgeError(f"dataset folder {root} has folders but no images in them")
    neu = _canonical_neu(per_class)
    if neu:
        classes = list(NEU_CLASSES) if set(neu.values()) == set(NEU_CLASSES) else \
            [c for c in NEU_CLASSES if c in set(neu.values())]
        name_of = neu
    else:
        classes = sorted(per_class)
        name_of = {k: k for k in per_class}
    idx = {c: i for i, c in enumerate(classes)}
    samples = [Sample(p, idx[name_of[k]]) for k in sorted(per_class) for p in sorted(per_class[k], key=_natural_key)]
    return Dataset(root, classes, samples, layout)


def _load_neu_det(root: Path, img_dir: Path, ann_dir: Path) -> Dataset:
    images = {p.stem: p for p in _images_in(img_dir)}
    for sub in _subdirs(img_dir):  # NEU-DET variants keep images/<class>/*.jpg
        images.update({p.stem: p for p in _images_in(sub)})
    if not images:
        raise EdgeError(f"{img_dir} holds no images")
    labels: Dict[str, str] = {}
    for xml in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml)
        except ET.ParseError as e:
            raise EdgeError(f"annotation {xml} is not valid XML: {e}") from None
        names = [o.findtext("name", "").strip() for o in tree.getroot().iter("object")]
        names = [n for n in names if n]
        if names:
            labels[xml.stem] = collections.Counter(names).most_common(1)[0][0]
    pairs = [(images[k], v) for k, v in labels.items() if k in images]
    if not pairs:
        raise EdgeError(f"{root}: no image in {img_dir.name}/ has an annotation with an object in {ann_dir.name}/")
    found = sorted({v for _, v in pairs})
    neu = _canonical_neu(found)
    if neu:
        classes = [c for c in NEU_CLASSES if c in set(neu.values())]
        name_of = neu
    else:
        classes, name_of = found, {k: k for k in found}
    idx = {c: i for i, c in enumerate(classes)}
    samples = [Sample(p, idx[name_of[v]]) for p, v in sorted(pairs, key=lambda t: _natural_key(t[0]))]
    return Dataset(root, classes, samples, "neu-det")


# --------------------------------------------------------------------------- images

def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read one image as uint8 grayscale (H, W).

    Raises:
        EdgeError: the file is missing, empty or not a decodable image (the file is named).
    """
    import cv2

    path = Path(path)
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise EdgeError(f"cannot read image {path}: {e.strerror or e}") from None
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
    if img is None:
        raise EdgeError(f"cannot decode image {path} (corrupt or not an image)")
    return img


def load_images(ds: Dataset | Sequence[Sample] | Sequence[str], size: Optional[tuple] = None,
                progress: bool = False) -> np.ndarray:
    """Read images as a uint8 array (N, H, W).

    Images of mixed sizes are resized (cv2.INTER_AREA) to ``size`` or, if ``size`` is None,
    to the most common size, and a single warning says so.
    """
    import cv2

    items = ds.samples if isinstance(ds, Dataset) else ds
    paths = [s.path if isinstance(s, Sample) else Path(s) for s in items]
    it = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="reading images", unit="img", leave=False)
    imgs = [read_gray(p) for p in it]
    if not imgs:
        return np.zeros((0, 0, 0), np.uint8)
    shapes = collections.Counter(im.shape for im in imgs)
    target = tuple(size) if size else shapes.most_common(1)[0][0]
    odd = sum(n for s, n in shapes.items() if s != target)
    if odd:
        log.warning("%d of %d images are not %dx%d: resized (sizes seen: %s)", odd, len(imgs),
                    target[1], target[0], ", ".join(f"{w}x{h}" for (h, w) in shapes))
        imgs = [im if im.shape == target else cv2.resize(im, (target[1], target[0]), interpolation=cv2.INTER_AREA)
                for im in imgs]
    return np.stack(imgs)


# --------------------------------------------------------------------------- split

def make_split(ds: Dataset, seed: int = 42, fractions=(0.70, 0.15, 0.15)) -> Dict[str, str]:
    """Stratified train/val/test split that keeps exact duplicates (same sha256) together.

    Returns:
        ``{relative file path: "train"|"val"|"test"}``.
    """
    from sklearn.model_selection import train_test_split

    if abs(sum(fractions) - 1) > 1e-6:
        raise EdgeError(f"split fractions must add up to 1, got {fractions}")
    if not all(s.sha256 for s in ds.samples):
        for s in ds.samples:
            s.sha256 = s.sha256 or sha256_file(s.path)
    groups: Dict[str, List[Sample]] = collections.OrderedDict()
    for s in ds.samples:
        groups.setdefault(s.sha256, []).append(s)
    keys = list(groups)
    y = [groups[k][0].label for k in keys]
    f_train, f_val, f_test = fractions
    try:
        rest, test = train_test_split(keys, test_size=f_test, stratify=y, random_state=seed)
        y_rest = [groups[k][0].label for k in rest]
        train, val = train_test_split(rest, test_size=f_val / (f_train + f_val), stratify=y_rest,
                                      random_state=seed)
    except ValueError as e:
        raise EdgeError(f"cannot make a stratified split of {len(ds)} images in {len(ds.classes)} classes: {e}") from None
    out: Dict[str, str] = {}
    for name, ks in (("train", train), ("val", val), ("test", test)):
        for k in ks:
            for s in groups[k]:
                out[s.rel(ds.root)] = name
    return out


def write_split_csv(path: str | os.PathLike, ds: Dataset, split: Dict[str, str]) -> Path:
    """Write ``file,class,split,sha256`` rows (files relative to the dataset root), atomically."""
    from edge.fsutil import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "split", "sha256"])
        for s in ds.samples:
            rel = s.rel(ds.root)
            if rel in split:
                w.writerow([rel, ds.classes[s.label], split[rel], s.sha256])
    return Path(path)


def resolve_split_file(model: str | os.PathLike, split_file: Optional[str | os.PathLike] = None,
                       which: str = "test", fallback: bool = True) -> Optional[Path]:
    """The ``split.csv`` that says which files of a dataset are ``model``'s train / val / test images.

    The one rule of every stage ("use the split.csv beside the model"): ``split_file`` when given,
    else ``split.csv`` in the model's folder, as edge-train writes it.

    Args:
        model: The model or artifact file (its folder is searched).
        split_file: A split file the caller named; it wins (its existence is checked by the reader).
        which: The split wanted; ``all`` needs no split file (returns None).
        fallback: True: None when the model's folder has no ``split.csv`` (the caller then recomputes
            the default seed-42 split, which is what edge-train wrote). False: the stage needs the
            model's own split (calibration, thresholds), so the path is returned even when missing
            and the caller's error names it.

    Returns:
        The path, or None (``which == "all"``, or nothing beside the model with ``fallback``).
    """
    if which == "all":
        return None
    if split_file:
        return Path(split_file)
    beside = Path(model).parent / SPLIT_CSV
    return beside if beside.is_file() or not fallback else None


def read_split_csv(path: str | os.PathLike, ds: Optional[Dataset] = None) -> Dict[str, str]:
    """Read a ``split.csv``; with ``ds``, check that its files are in the dataset.

    Raises:
        EdgeError: missing/malformed file, unknown split names, or (with ``ds``) files of the
            split that the dataset does not have.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"split file {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "split"} <= set(rows[0]):
        raise EdgeError(f"split file {path} needs the columns file,split")
    out = {r["file"]: r["split"] for r in rows}
    bad = sorted(set(out.values()) - set(SPLITS))
    if bad:
        raise EdgeError(f"split file {path} has unknown split names {bad}")
    if ds is not None:
        have = {s.rel(ds.root) for s in ds.samples}
        missing = [k for k in out if k not in have]
        if missing:
            raise EdgeError(f"split file {path} names {len(missing)} file(s) not in {ds.root}, e.g. {missing[0]}")
    return out


def select(data: str | os.PathLike, which: str = "test", split_file: Optional[str | os.PathLike] = None,
           classes: Optional[Sequence[str]] = None, seed: int = 42) -> Dataset:
    """Load a dataset and return one split of it: the common entry of eval, calibration and bench.

    With ``split_file`` the split is read from it; without it, the default split
    (:func:`make_split` with ``seed``) is recomputed, which is what training wrote.
    """
    ds = load_dataset(data, classes=classes)
    if which == "all":
        return ds
    split = read_split_csv(split_file, ds) if split_file else make_split(ds, seed=seed)
    return ds.subset(split, which)


def stratified_subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """Pick ``n`` samples with the class proportions of ``ds`` (calibration sets)."""
    from sklearn.model_selection import train_test_split

    if n > len(ds):
        raise EdgeError(f"asked for {n} images but only {len(ds)} are available")
    if n == len(ds):
        return ds
    try:
        keep, _ = train_test_split(ds.samples, train_size=n, stratify=ds.labels, random_state=seed)
    except ValueError:
        rng = np.random.default_rng(seed)
        keep = [ds.samples[i] for i in sorted(rng.choice(len(ds), n, replace=False))]
    keep = sorted(keep, key=lambda s: (s.label, _natural_key(s.path)))
    return Dataset(ds.root, ds.classes, keep, ds.layout, list(ds.notes))
