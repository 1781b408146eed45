"""edge-capture settings: defaults ← config file (TOML, or YAML when PyYAML is installed) ← flags."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge.errors import EdgeError


@dataclass
class CaptureConfig:
    """Every setting of the daemon; a config file uses the same names (``-`` or ``_``).

    Example TOML::

        model = "/opt/steel-edge/model.int8.onnx"
        source = "csi://0"
        tile = 200
        stride = 200
        roi = [0, 140, 1920, 800]
        batch = 16
        threshold = 0.6
        events = "/var/lib/steel-edge/events/events.jsonl"
        metrics = "127.0.0.1:9108"
    """

    model: Optional[str] = None
    source: Optional[str] = None
    tile: Optional[int] = None            # default: the model's input size
    stride: Optional[int] = None          # default: the tile size
    roi: Optional[Any] = None             # "x,y,w,h" or [x, y, w, h]
    batch: int = 16
    threshold: float = 0.5
    events: str = "events.jsonl"
    log_all: bool = False
    probs: bool = False
    save_crops: Optional[str] = None
    ok_classes: List[str] = field(default_factory=list)  # "no defect" classes: not logged without --log-all
    metrics: Optional[str] = None         # HOST:PORT for /metrics and /healthz
    realtime: bool = False
    queue: int = 2
    rotate_mb: float = 64.0
    rotate_keep: int = 5
    flush_interval: float = 1.0
    max_frames: Optional[int] = None
    backend: str = "auto"
    threads: int = 0
    cuda_backend: str = "auto"
    cuda_graph: bool = False              # TensorRT: replay the engine launch as a CUDA graph
    zero_copy: bool = False               # TensorRT on Jetson: mapped pinned memory, no copies
    width: int = 1920                     # CSI capture size and rate
    height: int = 1080
    fps: int = 30
    reconnect_initial: float = 0.5
    reconnect_max: float = 10.0
    max_reconnects: Optional[int] = None
    summary: Optional[str] = None         # write the final summary as JSON here

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


NAMES = {f.name for f in fields(CaptureConfig)}


def load_config_file(path: str | os.PathLike) -> Dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a dict of known keys.

    A ``[capture]`` table (TOML) / ``capture:`` mapping (YAML) is used when present, else the top level.

    Raises:
        EdgeError: missing file, parse error, unknown keys, or YAML without PyYAML.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise EdgeError(f"{path}: YAML config needs PyYAML (pip install pyyaml), or use TOML") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise EdgeError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise EdgeError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise EdgeError(f"{path}: the config must be a table of settings")
    if isinstance(data.get("capture"), dict):
        data = data["capture"]
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(out) - NAMES)
    if unknown:
        raise EdgeError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    base = Path(path).resolve().parent
    for k in ("model", "events", "save_crops", "summary"):  # relative paths are relative to the config file
        if isinstance(out.get(k), str) and out[k] and not os.path.isabs(out[k]):
            out[k] = str(base / out[k])
    return out


def merge(file_values: Dict[str, Any], cli_values: Dict[str, Any]) -> CaptureConfig:
    """Defaults, overridden by the config file, overridden by the flags actually given."""
    cfg = CaptureConfig()
    for src in (file_values, cli_values):
        for k, v in src.items():
            if v is not None:
                setattr(cfg, k, v)
    if isinstance(cfg.ok_classes, str):
        cfg.ok_classes = [c for c in cfg.ok_classes.split(",") if c]
    if not cfg.model:
        raise EdgeError("no model: give --model (or model = ... in the config file)")
    if not cfg.source:
        raise EdgeError("no source: give --source (or source = ... in the config file)")
    if cfg.batch < 1:
        raise EdgeError(f"--batch must be >= 1, got {cfg.batch}")
    if not 0.0 <= cfg.threshold <= 1.0:
        raise EdgeError(f"--threshold must be in [0, 1], got {cfg.threshold}")
    if cfg.queue < 1:
        raise EdgeError(f"--queue must be >= 1, got {cfg.queue}")
    return cfg
