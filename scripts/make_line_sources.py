"""Write one synthetic line as the three sources of the throughput budget: raw .npy, PNG folder, MJPG video.

Frames are ``cols`` x ``rows`` tiles of ``tile`` px cut from dataset images (repeated in a fixed
shuffled order until ``frames`` frames are filled), the same pixels in each form (MJPG is lossy:
its pixels differ slightly, which does not matter for a throughput measurement). Not for accuracy:
use ``python scripts/synthline.py`` for labelled lines.

Example:
    python scripts/make_line_sources.py --data data/NEU-CLS --frames 200 --cols 8 --rows 2 --out runs/line-tp
    # → runs/line-tp/frames.npy (raw://), runs/line-tp/png/ (folder), runs/line-tp/line.avi (MJPG)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere


def main(argv=None) -> int:
    import cv2

    from edge.data import load_images, select
    from edge.fsutil import staged_dir, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--split-file")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--tile", type=int, default=200)
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    ds = select(a.data, a.split, a.split_file)
    images = load_images(ds, size=(a.tile, a.tile))
    per = a.cols * a.rows
    order = np.resize(np.random.default_rng(0).permutation(len(images)), a.frames * per)
    frames = np.zeros((a.frames, a.rows * a.tile, a.cols * a.tile), np.uint8)
    t = a.tile
    for f in range(a.frames):
        for k in range(per):
            y, x = divmod(k, a.cols)
            frames[f, y * t:(y + 1) * t, x * t:(x + 1) * t] = images[order[f * per + k]]
    with staged_dir(a.out, force=a.force) as stage:
        np.save(stage / "frames.npy", frames)
        (stage / "png").mkdir()
        w = cv2.VideoWriter(str(stage / "line.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                            (frames.shape[2], frames.shape[1]), isColor=False)
        w.set(cv2.VIDEOWRITER_PROP_QUALITY, a.jpeg_quality)
        for f, fr in enumerate(frames):
            cv2.imwrite(str(stage / "png" / f"frame_{f:05d}.png"), fr)
            w.write(fr)
        w.release()
        write_json(stage / "line.json", {"data": a.data, "split": a.split, "frames": a.frames, "cols": a.cols,
                                         "rows": a.rows, "tile": a.tile, "shape": list(frames.shape[1:]),
                                         "sources": {"raw": "frames.npy", "png": "png/", "mjpg": "line.avi"}})
    print(f"wrote {a.out}: {a.frames} frames {frames.shape[2]}x{frames.shape[1]} ({per} tiles of {t} px) as "
          f"frames.npy, png/, line.avi (MJPG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
