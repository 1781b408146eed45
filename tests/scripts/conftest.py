"""Tests of the scripts under scripts/ (not installed): they are imported as ``scripts.NAME``."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` through its entry point does not put the repository root on sys.path
    sys.path.insert(0, str(ROOT))
