"""The one place where TensorRT versions fork (8.5, 8.6, 10.x, 11.x).

Every version-dependent TensorRT call of the project goes through a function here, each branch with
a comment saying why. ``tensorrt`` is never imported at module level: ``trt`` is passed in, so the
branching can be tested with a stand-in module (which proves only our branching, not TensorRT).

Sections: version parsing (shared), builder (used by ``convert/tensorrt.py``), runtime (used by
``edge/runtime/tensorrt/runner.py``).
"""

from __future__ import annotations

from typing import NamedTuple


class TRTVersion(NamedTuple):
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "TRTVersion":
        parts = [int(p) for p in str(text).split(".")[:3] if p.isdigit()]
        while len(parts) < 3:
            parts.append(0)
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def version_of(trt) -> TRTVersion:
    """The version of an imported ``tensorrt`` module."""
    return TRTVersion.parse(trt.__version__)


# ============================================================================ builder
# (owned by the converter: network flags, precision, memory pool, profiles, timing cache, DLA)


# ============================================================================ runtime
# (owned by the runtime: deserialisation, I/O tensor enumeration, shapes, addresses, execution)
