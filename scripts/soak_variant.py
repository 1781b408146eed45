#!/usr/bin/env python3
"""Run the ``edge-capture`` CLI with one component changed, for the A/B soaks of ``scripts/soak.py --variant``.

Usage: ``soak_variant.py VARIANT [edge-capture arguments...]``. Variants:

- ``base``: unchanged (the control run);
- ``ort-noarena``: ONNX Runtime sessions made with ``enable_cpu_mem_arena=False`` and
  ``enable_mem_pattern=False``;
- ``fixed-probs``: the ONNX Runtime runner returns the probabilities of its first batch for every
  later batch of the same size (ONNX Runtime is loaded but no longer run);
- ``malloc-trim``: a thread calls glibc ``malloc_trim(0)`` every 10 s;
- ``count-64k``: the events writer counts the lines of the file a rotation deletes in 64 KiB
  blocks instead of 1 MiB blocks;
- ``no-rotate``: the events file is never rotated (its size limit raised to 1 TiB);
- ``no-decode``: the image folder source decodes each distinct file (inode) once and then returns a
  copy of that frame (the soak's stream is hard links to 62 files), so no PNG is decoded after the
  first pass.

Not part of the installed packages: a measuring aid only.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: run from anywhere

VARIANTS = ("base", "ort-noarena", "fixed-probs", "malloc-trim", "no-decode", "count-64k", "no-rotate")


def _ort_noarena() -> None:
    import onnxruntime as ort

    real = ort.InferenceSession

    def session(path, sess_options=None, **kw):
        so = sess_options or ort.SessionOptions()
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
        return real(path, sess_options=so, **kw)

    ort.InferenceSession = session


def _fixed_probs() -> None:
    import numpy as np

    from edge.runtime.onnxrt.runner import OnnxRuntimeRunner

    real = OnnxRuntimeRunner.infer_impl
    cache = {}

    def infer_impl(self, batch):
        n = len(batch)
        if n not in cache:
            cache[n] = real(self, batch)
        out, timing = cache[n]
        if isinstance(out, tuple):
            return tuple(np.array(o) for o in out), timing
        return np.array(out), timing

    OnnxRuntimeRunner.infer_impl = infer_impl


def _malloc_trim() -> None:
    import ctypes
    import time

    libc = ctypes.CDLL("libc.so.6")

    def loop():
        while True:
            time.sleep(10)
            libc.malloc_trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()


def _no_decode() -> None:
    import os

    from edge.capture.sources import EndOfStream, ImageFolderSource

    real = ImageFolderSource.read
    cache = {}

    def read(self):
        if self._i >= len(self.files):
            raise EndOfStream()
        f = self.files[self._i]
        ino = os.stat(f).st_ino
        if ino not in cache:
            cache[ino] = real(self)              # decodes (PNG: edge.capture.png, else cv2.imread)
        else:
            self._i += 1
            self.frame_name = f.name
        img = cache[ino]
        return None if img is None else img.copy()

    ImageFolderSource.read = read


def _count_64k() -> None:
    from edge.capture import events

    def count_lines(path) -> int:
        n = 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                n += block.count(b"\n")
        return n

    events._count_lines = count_lines


def _no_rotate() -> None:
    from edge.capture import daemon, events

    class Writer(events.EventWriter):
        def __init__(self, path, max_bytes=0, *a, **kw):
            super().__init__(path, 1 << 40, *a, **kw)

    daemon.EventWriter = Writer


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        print(f"usage: soak_variant.py {{{','.join(VARIANTS)}}} [edge-capture args...]", file=sys.stderr)
        return 2
    variant = sys.argv[1]
    {"base": lambda: None, "ort-noarena": _ort_noarena, "fixed-probs": _fixed_probs,
     "malloc-trim": _malloc_trim, "no-decode": _no_decode,
     "count-64k": _count_64k, "no-rotate": _no_rotate}[variant]()
    from edge.capture.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
