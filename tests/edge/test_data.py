"""edge.data: every layout, every bad-input case, and the split (stratified, deterministic, duplicates together)."""

from __future__ import annotations

import collections
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.data import (NEU_CLASSES, load_dataset, load_images, make_split, read_gray, read_split_csv,
                       select, stratified_subset, write_split_csv)
from edge.errors import EdgeError

PREFIX_OF = {"crazing": "Cr", "inclusion": "In", "patches": "Pa", "pitted_surface": "PS",
             "rolled-in_scale": "RS", "scratches": "Sc"}
KAGGLE = {"crazing": "Crazing", "inclusion": "Inclusion", "patches": "Patches",
          "pitted_surface": "Pitted", "rolled-in_scale": "Rolled", "scratches": "Scratches"}


def _by_class(sample_dir: Path):
    out = collections.defaultdict(list)
    for p in sorted(sample_dir.glob("*.bmp")):
        prefix = p.stem.rsplit("_", 1)[0]
        cls = [c for c, pre in PREFIX_OF.items() if pre == prefix][0]
        out[cls].append(p)
    return out


def test_flat_layout(sample_dir):
    ds = load_dataset(sample_dir)
    assert ds.layout == "neu-cls"
    assert ds.classes == NEU_CLASSES
    assert len(ds) == 60 and set(ds.counts().values()) == {10}
    for s in ds.samples:  # label follows the file prefix
        assert s.path.name.startswith(PREFIX_OF[ds.classes[s.label]] + "_")
        assert len(s.sha256) == 64


def test_folder_per_class_neu_names_map_to_neu_order(sample_dir, tmp_path):
    for cls, files in _by_class(sample_dir).items():
        d = tmp_path / KAGGLE[cls]
        d.mkdir()
        for p in files[:4]:
            shutil.copy(p, d / p.name)
    ds = load_dataset(tmp_path)
    assert ds.layout == "folders"
    assert ds.classes == NEU_CLASSES
    for s in ds.samples:
        assert s.path.parent.name == KAGGLE[ds.classes[s.label]]


def test_folder_per_class_any_names_sorted(sample_dir, tmp_path):
    files = sorted(sample_dir.glob("*.bmp"))
    for name, chunk in (("good", files[:5]), ("bad", files[5:12])):
        (tmp_path / name).mkdir()
        for p in chunk:
            shutil.copy(p, tmp_path / name / p.name)
    ds = load_dataset(tmp_path)
    assert ds.classes == ["bad", "good"]
    assert ds.counts() == {"bad": 7, "good": 5}


def test_kaggle_split_folders_are_merged(sample_dir, tmp_path):
    for cls, files in _by_class(sample_dir).items():
        for split, chunk in (("train", files[:6]), ("valid", files[6:8]), ("test", files[8:])):
            d = tmp_path / split / KAGGLE[cls]
            d.mkdir(parents=True)
            for p in chunk:
                shutil.copy(p, d / p.name)
    ds = load_dataset(tmp_path)
    assert ds.layout == "split-folders"
    assert ds.classes == NEU_CLASSES
    assert set(ds.counts().values()) == {10}


def _voc(names):
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
                   f"</bndbox></object>" for n in names)
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>"


def test_neu_det_class_from_annotation(sample_dir, tmp_path):
    (tmp_path / "IMAGES").mkdir()
    (tmp_path / "ANNOTATIONS").mkdir()
    files = sorted(sample_dir.glob("*.bmp"))[:4]
    # The most frequent object name of an image is its class; names are NEU spellings.
    names = [["crazing"], ["inclusion", "inclusion", "patches"], ["patches"], ["scratches", "crazing", "scratches"]]
    for i, (p, objs) in enumerate(zip(files, names)):
        shutil.copy(p, tmp_path / "IMAGES" / f"img_{i}.bmp")
        (tmp_path / "ANNOTATIONS" / f"img_{i}.xml").write_text(_voc(objs))
    ds = load_dataset(tmp_path)
    assert ds.layout == "neu-det"
    got = {s.path.stem: ds.classes[s.label] for s in ds.samples}
    assert got == {"img_0": "crazing", "img_1": "inclusion", "img_2": "patches", "img_3": "scratches"}


def test_neu_det_bad_xml_is_named(sample_dir, tmp_path):
    (tmp_path / "IMAGES").mkdir()
    (tmp_path / "ANNOTATIONS").mkdir()
    shutil.copy(sorted(sample_dir.glob("*.bmp"))[0], tmp_path / "IMAGES" / "a.bmp")
    (tmp_path / "ANNOTATIONS" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(EdgeError, match="a.xml"):
        load_dataset(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(EdgeError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(EdgeError, match="empty"):
        load_dataset(tmp_path)


def test_folders_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(EdgeError, match="no images"):
        load_dataset(tmp_path)


def test_unknown_prefixes_named(sample_dir, tmp_path):
    shutil.copy(sample_dir / "Cr_150.bmp", tmp_path / "Cr_150.bmp")
    shutil.copy(sample_dir / "Cr_150.bmp", tmp_path / "Xy_1.bmp")
    with pytest.raises(EdgeError, match="Xy_1.bmp"):
        load_dataset(tmp_path)


def test_corrupt_image_names_the_file(sample_dir, tmp_path):
    shutil.copy(sample_dir / "Cr_150.bmp", tmp_path / "Cr_1.bmp")
    (tmp_path / "Cr_2.bmp").write_bytes(b"BM not really a bitmap")
    (tmp_path / "Cr_3.bmp").write_bytes(b"")
    ds = load_dataset(tmp_path)
    with pytest.raises(EdgeError, match="Cr_2.bmp"):
        load_images(ds.samples[:2])
    with pytest.raises(EdgeError, match="Cr_3.bmp"):
        read_gray(tmp_path / "Cr_3.bmp")
    with pytest.raises(EdgeError, match="Cr_9.bmp"):
        read_gray(tmp_path / "Cr_9.bmp")


def test_mixed_sizes_resized_with_one_warning(sample_dir, tmp_path, caplog):
    import cv2

    files = sorted(sample_dir.glob("Cr_*.bmp"))[:4]
    for i, p in enumerate(files):
        img = read_gray(p)
        if i >= 2:
            img = cv2.resize(img, (150 + i, 120))
        cv2.imwrite(str(tmp_path / f"Cr_{i + 1}.bmp"), img)
    ds = load_dataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="edge.data"):
        x = load_images(ds)
    assert x.shape == (4, 200, 200) and x.dtype == np.uint8
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 4" in warnings[0].getMessage()
    # An explicit size resizes everything, same single warning rule.
    assert load_images(ds, size=(64, 80)).shape == (4, 64, 80)


def test_split_stratified_and_complete(sample_dir):
    ds = load_dataset(sample_dir)
    split = make_split(ds, seed=42)
    assert set(split) == {s.rel(ds.root) for s in ds.samples}
    per = collections.Counter(split.values())
    assert per["train"] == pytest.approx(42, abs=1) and per["test"] == pytest.approx(9, abs=1)
    for which in ("train", "val", "test"):
        counts = ds.subset(split, which).counts()
        # Stratified: every class present, and class counts differ by at most one.
        assert min(counts.values()) >= 1
        assert max(counts.values()) - min(counts.values()) <= 1


def test_split_deterministic_and_seeded(sample_dir):
    ds = load_dataset(sample_dir)
    assert make_split(ds, seed=42) == make_split(load_dataset(sample_dir), seed=42)
    assert make_split(ds, seed=42) != make_split(ds, seed=7)


def test_duplicates_stay_together(sample_dir, tmp_path):
    for p in sample_dir.glob("*.bmp"):
        shutil.copy(p, tmp_path / p.name)
    # Three copies of one image under other names (like Pa_101 / Pa_105 in NEU).
    for n in (901, 902, 903):
        shutil.copy(sample_dir / "Pa_127.bmp", tmp_path / f"Pa_{n}.bmp")
    ds = load_dataset(tmp_path)
    for seed in range(8):
        split = make_split(ds, seed=seed)
        assert len({split[f"Pa_{n}.bmp"] for n in (127, 901, 902, 903)}) == 1


def test_full_neu_known_duplicate(full_neu):
    ds = load_dataset(full_neu)
    assert len(ds) == 1800
    split = make_split(ds, seed=42)
    assert split["Pa_101.bmp"] == split["Pa_105.bmp"]


def test_split_csv_roundtrip_and_errors(sample_dir, tmp_path):
    ds = load_dataset(sample_dir)
    split = make_split(ds, seed=42)
    path = write_split_csv(tmp_path / "split.csv", ds, split)
    assert read_split_csv(path, ds) == split
    test = select(sample_dir, "test", split_file=path)
    assert {s.rel(ds.root) for s in test.samples} == {k for k, v in split.items() if v == "test"}
    # Without a split file the default seed-42 split is recomputed: the same files.
    assert [s.path for s in select(sample_dir, "test").samples] == [s.path for s in test.samples]

    with pytest.raises(EdgeError, match="does not exist"):
        read_split_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,split\nCr_150.bmp,holdout\n")
    with pytest.raises(EdgeError, match="unknown split"):
        read_split_csv(bad)
    other = tmp_path / "other.csv"
    other.write_text("file,split\nCr_99999.bmp,test\n")
    with pytest.raises(EdgeError, match="not in"):
        read_split_csv(other, ds)
    with pytest.raises(EdgeError, match="unknown split"):
        ds.subset(split, "holdout")


def test_stratified_subset(sample_dir):
    ds = load_dataset(sample_dir)
    sub = stratified_subset(ds, 12, seed=0)
    assert len(sub) == 12 and set(sub.counts().values()) == {2}
    with pytest.raises(EdgeError):
        stratified_subset(ds, 61)


def test_remap_to_model_classes(sample_dir):
    ds = load_dataset(sample_dir, classes=list(reversed(NEU_CLASSES)))
    for s in ds.samples:
        assert s.path.name.startswith(PREFIX_OF[ds.classes[s.label]] + "_")
    with pytest.raises(EdgeError, match="not among"):
        load_dataset(sample_dir, classes=["crazing"])


def test_resolve_split_file_the_given_one_else_beside_the_model(tmp_path):
    from edge.data import resolve_split_file

    model = tmp_path / "m" / "model.keras"
    model.parent.mkdir()
    given = tmp_path / "other.csv"
    assert resolve_split_file(model, given) == given                     # named: wins, even when missing
    assert resolve_split_file(model, str(given), which="val") == given
    assert resolve_split_file(model, given, which="all") is None           # the whole dataset: no split
    assert resolve_split_file(model) is None                               # nothing beside: default split
    assert resolve_split_file(model, fallback=False) == model.parent / "split.csv"  # needed: named in the error
    (model.parent / "split.csv").write_text("file,split\n")
    assert resolve_split_file(model) == model.parent / "split.csv"
