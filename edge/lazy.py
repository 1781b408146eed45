"""Lazy exports of a package: ``from train import train_model`` imports ``train.api`` only when asked.

So that ``import train`` or ``import bench`` (their configs, ``--help``) does not import TensorFlow::

    __getattr__, __dir__ = lazy_exports(__name__, {"train_model": "train.api"})
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Dict, List, Tuple


def lazy_exports(package: str, exports: Dict[str, str]) -> Tuple[Callable, Callable]:
    """The module-level ``__getattr__`` and ``__dir__`` (PEP 562) of ``package`` for ``exports``.

    Args:
        package: The package's ``__name__``.
        exports: Exported name -> the module that defines it.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
