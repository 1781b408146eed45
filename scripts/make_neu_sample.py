"""Rebuild the committed samples of ``models/neu-compact``'s split from the full NEU-CLS set.

* ``data/neu-sample/``: test-split images (10 per class): the demo's accuracy is a held-out figure.
* ``data/neu-calib/``: train-split images (INT8 calibration) and val-split images (the drift gates).

Each folder gets a ``split.csv`` whose rows are copied from the model's ``split.csv`` (same file,
class, split and sha256), so ``edge-convert --split-file`` / ``edge-bench --split-file`` read exactly
the model's assignment of these files: calibration can only see train images, the gates only val
images, the bench only test images. The pick is stratified and seeded (reproducible).

Example:
    python scripts/make_neu_sample.py --data data/NEU-CLS --model-dir models/neu-compact
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.data import sha256_file  # noqa: E402
from edge.errors import EdgeError, cli_entry  # noqa: E402

FIELDS = ["file", "class", "split", "sha256"]


def pick(rows, split: str, per_class: int, seed: int):
    """``per_class`` rows of ``split`` per class, seeded, in natural file order."""
    rng = np.random.default_rng(seed)
    out = []
    classes = sorted({r["class"] for r in rows})
    for c in classes:
        mine = sorted((r for r in rows if r["split"] == split and r["class"] == c),
                      key=lambda r: (r["file"].rsplit("_", 1)[0], int(r["file"].rsplit("_", 1)[1].split(".")[0])))
        if len(mine) < per_class:
            raise EdgeError(f"the {split} split has only {len(mine)} {c} images")
        idx = sorted(rng.choice(len(mine), per_class, replace=False))
        out += [mine[i] for i in idx]
    return out


def write(folder: Path, data: Path, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.bmp"):
        old.unlink()
    for r in rows:
        shutil.copyfile(data / r["file"], folder / r["file"])
        if sha256_file(folder / r["file"]) != r["sha256"]:
            raise EdgeError(f"{r['file']}: content differs from the model's split.csv")
    with open(folder / "split.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows({k: r[k] for k in FIELDS} for r in rows)


@cli_entry("make_neu_sample")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "NEU-CLS"))
    ap.add_argument("--model-dir", default=str(ROOT / "models" / "neu-compact"))
    ap.add_argument("--test", type=int, default=10, help="test images per class (data/neu-sample)")
    ap.add_argument("--train", type=int, default=8, help="train images per class (data/neu-calib)")
    ap.add_argument("--val", type=int, default=6, help="val images per class (data/neu-calib)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    data = Path(a.data)
    if not (data / "Cr_1.bmp").is_file():
        raise EdgeError(f"{data} is not the full NEU-CLS set")
    with open(Path(a.model_dir) / "split.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    write(ROOT / "data" / "neu-sample", data, pick(rows, "test", a.test, a.seed))
    write(ROOT / "data" / "neu-calib", data, pick(rows, "train", a.train, a.seed) + pick(rows, "val", a.val, a.seed))
    print("wrote data/neu-sample (test) and data/neu-calib (train + val)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
