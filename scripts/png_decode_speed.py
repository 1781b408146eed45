"""PNG frame decoding: OpenCV (``cv2.imdecode``) against ``edge.capture.png.decode``, CPU ms per frame.

Two forms of the same frames (a line recording's PNG folder, ``scripts/make_line_sources.py``):

* ``as written``: the files as OpenCV's encoder wrote them (libpng's adaptive filters pick Sub for
  steel texture): the numpy path;
* ``pillow``: re-encoded by Pillow (its own per-row filter choice, Paeth rows among them): the stored
  re-wrap handed to libpng.

Each decoder reads the bytes from memory, one thread, best of ``--repeats`` passes; the numpy path is
also timed with zlib's inflate (why ``decode`` without ISA-L is OpenCV alone). Every decoded frame is
compared with OpenCV's, bit for bit.

Example:
    python scripts/png_decode_speed.py --png runs/line-tp/png --frames 100 \\
        -o docs/results/png-decode.json --md docs/results/png-decode.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere


def _cpu_ms(fn, blobs, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for b in blobs:
            fn(b)
        best = min(best, (time.process_time() - t0) / len(blobs) * 1e3)
    return best


def _forms(files, n):
    import cv2
    import numpy as np
    from PIL import Image

    as_written = [f.read_bytes() for f in files[:n]]
    pillow = []
    for b in as_written:
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
        bio = io.BytesIO()
        Image.fromarray(img).save(bio, format="PNG")
        pillow.append(bio.getvalue())
    return {"as written": as_written, "pillow": pillow}


def measure(png_dir: Path, n: int, repeats: int) -> dict:
    import cv2
    import numpy as np

    from bench.environment import cpu_model
    from edge.capture import png
    from edge.capture.sources import image_files

    files = [f for f in image_files(png_dir) if f.suffix.lower() == ".png"]
    if not files:
        raise SystemExit(f"error: no PNG files in {png_dir}")

    def opencv(b):
        return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)

    out = {"machine": {"cpu": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count()},
           "versions": {"opencv": cv2.__version__, "numpy": np.__version__, "inflater": png.inflater()},
           "frames": min(n, len(files)), "repeats": repeats, "source": str(png_dir), "forms": {}}
    impl = png._zlib_impl
    for form, blobs in _forms(files, n).items():
        h, w = opencv(blobs[0]).shape[:2]
        same = all(np.array_equal(png.decode(b), opencv(b)) for b in blobs)
        paths = Counter("numpy" if png.decode_gray8(b) is not None else "stored re-wrap" for b in blobs)
        row = {"shape": [h, w], "bytes_per_frame": int(np.mean([len(b) for b in blobs])),
               "paths": dict(paths), "bit_identical": same,
               "opencv_ms": _cpu_ms(opencv, blobs, repeats)}
        row["edge_ms"] = _cpu_ms(png.decode, blobs, repeats)
        row["speedup"] = row["opencv_ms"] / row["edge_ms"]
        if paths.get("numpy") == len(blobs):
            try:
                png._zlib_impl = zlib
                row["numpy_path_zlib_ms"] = _cpu_ms(png.decode_gray8, blobs, repeats)
            finally:
                png._zlib_impl = impl
        out["forms"][form] = row
        zl = f", numpy path on zlib {row['numpy_path_zlib_ms']:.2f} ms" if "numpy_path_zlib_ms" in row else ""
        print(f"{form:>10}: {row['paths']}, OpenCV {row['opencv_ms']:.2f} ms, edge {row['edge_ms']:.2f} ms "
              f"({row['speedup']:.2f}x{zl}), bit-identical {same}")
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# PNG frame decoding: OpenCV vs edge.capture.png",
        "",
        f"Measured {res['when']} on {m['cpu']} ({m['cpus']} cores), OpenCV {res['versions']['opencv']}, "
        f"numpy {res['versions']['numpy']}, inflate: {res['versions']['inflater']}; {res['frames']} frames of "
        f"`{res['source']}` decoded from memory on one thread, CPU ms per frame (best of {res['repeats']} "
        "passes). Every frame decoded by `edge.capture.png.decode` is compared with `cv2.imdecode(..., "
        "IMREAD_UNCHANGED)`. Source: `scripts/png_decode_speed.py`.",
        "",
        "| form | frame | bytes | path taken | OpenCV ms | edge ms | speed-up | numpy path on zlib's inflate ms | "
        "bit-identical |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for form, r in res["forms"].items():
        paths = ", ".join(f"{k} {v}" for k, v in r["paths"].items())
        zl = f"{r['numpy_path_zlib_ms']:.2f}" if "numpy_path_zlib_ms" in r else ""
        lines.append(f"| {form} | {r['shape'][1]}x{r['shape'][0]} | {r['bytes_per_frame']:,} | {paths} | "
                     f"{r['opencv_ms']:.2f} | {r['edge_ms']:.2f} | {r['speedup']:.2f}x | {zl} | "
                     f"{'yes' if r['bit_identical'] else '**no**'} |")
    lines += [
        "",
        "Forms: *as written* = the files as OpenCV wrote them (libpng chose Sub rows for the steel texture); "
        "*pillow* = re-encoded by Pillow (Paeth rows). Paths: *numpy* = 8-bit gray with None/Sub/Up rows, "
        "reconstructed in numpy; *stored re-wrap* = the inflated image data handed to OpenCV as stored deflate "
        "blocks. Without ISA-L `decode` is OpenCV alone (the last column: the numpy path with zlib's inflate gains little).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--png", default="runs/line-tp/png", help="folder of PNG frames")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-o", "--out", help="JSON results")
    ap.add_argument("--md", help="Markdown table")
    a = ap.parse_args(argv)
    res = measure(Path(a.png), a.frames, a.repeats)
    res["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    if a.md:
        Path(a.md).write_text(markdown(res))
    return 0 if all(r["bit_identical"] for r in res["forms"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
