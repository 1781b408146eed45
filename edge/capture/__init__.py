"""The capture daemon (``edge-capture``): sources, tiling, events, metrics."""

from edge.capture.config import CaptureConfig
from edge.capture.daemon import CaptureDaemon, classify_tiles, summary_line

__all__ = ["CaptureConfig", "CaptureDaemon", "classify_tiles", "summary_line"]
