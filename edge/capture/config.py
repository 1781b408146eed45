"""edge-capture settings: defaults ← config file (TOML, or YAML when PyYAML is installed) ← flags.

Every setting is one row of :data:`SETTINGS`: its type, default, range or choices and help. The
command-line flags are generated from the table and the config file is checked against the same
table, so a value is validated in one place whichever way it came in, and a bad one is refused with
a one-line error naming the key. To add a setting, add one :class:`Setting` row (and use
``cfg.<name>`` where it matters); the flag, the config key and the checks follow.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edge.errors import EdgeError

#: Value kinds of a setting: int, float, bool, str, path (relative to the config file), list (of
#: strings; "a,b" on the command line), roi ("x,y,w,h" or [x, y, w, h]), address (HOST:PORT).
KINDS = ("int", "float", "bool", "str", "path", "list", "roi", "address")


@dataclass(frozen=True)
class Setting:
    """One setting of the daemon (a flag ``--name-with-dashes`` and a config key ``name``).

    Attributes:
        name: The key (``snake_case``).
        kind: One of :data:`KINDS`.
        default: The default (None: unset / optional).
        help: One line for ``--help``.
        min: Smallest value accepted (ints, floats; for lists and paths: not used).
        max: Largest value accepted.
        gt: The value must be strictly greater than this (e.g. 0 for "positive").
        choices: The values accepted (str).
        required: The daemon cannot run without it.
        metavar: Shown in ``--help``.
    """

    name: str
    kind: str
    default: Any = None
    help: str = ""
    min: Optional[float] = None
    max: Optional[float] = None
    gt: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    required: bool = False
    metavar: Optional[str] = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """What the setting accepts, e.g. ``an integer >= 1``."""
        base = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "path": "a path", "list": "a list of names", "roi": "x,y,w,h", "address": "HOST:PORT"}[self.kind]
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return base + (" " + " and ".join(parts) if parts else "")


S = Setting
#: The one table of settings (order = order in ``--help``).
SETTINGS: List[Setting] = [
    S("model", "path", None, "artifact with its metadata JSON (.onnx, .engine, .keras)", required=True),
    S("source", "str", None, "v4l2:///dev/video0, csi://0, rtsp://..., gst://PIPELINE, file://video.mp4, "
      "file://dir/, raw://frames.npy (uint8 N x H x W), or a plain path", required=True),
    S("tile", "int", None, "tile size in pixels (default: the model's input size)", min=1, max=65535),
    S("stride", "int", None, "step between tiles (default: the tile size)", min=1, max=65535),
    S("roi", "roi", None, "x,y,w,h region of the frame to tile (default: whole frame)"),
    S("batch", "int", 16, "tiles per inference call; also the chunk a frame is processed in (default 16)",
      min=1, max=4096),
    S("threshold", "float", 0.5, "top probability below this marks a tile uncertain (default 0.5)", min=0, max=1),
    S("events", "path", "events.jsonl", "JSONL events file (default events.jsonl)"),
    S("log_all", "bool", False, "log every tile, not only defects"),
    S("probs", "bool", False, "add all class probabilities to each event"),
    S("save_crops", "path", None, "folder for PNG crops of defect tiles (<run id>_<event id>_<label>.png), within the "
      "--crops-* budget"),
    S("crops_max_mb", "float", 1024.0, "crops budget: delete the oldest crops beyond this many MB (default 1024)",
      gt=0),
    S("crops_max_age", "float", None, "delete crops older than this many hours (default: no age limit)", gt=0),
    S("crops_per_minute", "int", 60, "crops saved per defect class per minute at most (default 60; 0: none)",
      min=0, max=1_000_000),
    S("ok_classes", "list", [], "comma-separated 'no defect' classes, logged only with --log-all "
      "(NEU has none: every tile is a defect class)"),
    S("metrics", "address", None, "serve /metrics and /healthz on HOST:PORT (e.g. 127.0.0.1:9108)"),
    S("preview", "bool", False, "also serve the latest annotated frame (/preview.jpg) and a page refreshing it "
      "with the counters (/) on the --metrics server"),
    S("realtime", "bool", False, "pace a file source at its frame rate, dropping stale frames"),
    S("queue", "int", 2, "frames the grab queue holds (default 2)", min=1, max=1000),
    S("rotate_mb", "float", 64.0, "rotate the events file at this size in MB (default 64)", gt=0),
    S("rotate_keep", "int", 5, "rotated events files kept (default 5; events in deleted files are counted as "
      "dropped, reason rotation)", min=0, max=10000),
    S("flush_interval", "float", 1.0, "seconds between event flushes (default 1)", gt=0, max=3600),
    S("retry_events", "int", 100_000, "events kept in memory while the disk refuses them, retried at every flush "
      "(default 100000; beyond it the oldest are dropped and counted)", min=0, max=10_000_000),
    S("max_frames", "int", None, "stop after this many frames", min=1),
    S("backend", "str", "auto", "runner (default: from metadata)",
      choices=("auto", "onnxruntime", "tensorrt", "keras")),
    S("threads", "int", 0, "ONNX Runtime intra-op threads (0: the runner's default: on the CPU each batch split into one "
      "part per core, each part on one thread)", min=0, max=1024),
    S("lanes", "int", 0, "frames classified at once, each on its own runner lane (0: the runner's: on the ONNX Runtime "
      "CPU runner one per core, each batch whole on one thread; 1: one frame at a time, its batches split over the "
      "cores)", min=0, max=64),
    S("cuda_backend", "str", "auto", "CUDA memory backend of the TensorRT runner",
      choices=("auto", "cuda-python", "pycuda")),
    S("cuda_graph", "bool", False, "TensorRT: capture the engine launch into a CUDA graph"),
    S("zero_copy", "bool", False, "TensorRT on Jetson: bind mapped pinned memory to the engine (no copies)"),
    S("width", "int", 1920, "CSI capture width (default 1920)", min=1, max=65535),
    S("height", "int", 1080, "CSI capture height (default 1080)", min=1, max=65535),
    S("fps", "int", 30, "CSI capture rate / image-folder rate for --realtime (default 30)", min=1, max=10000),
    S("hw_decode", "str", None, "Jetson: decode rtsp:// or an H.264/H.265 file with nvv4l2decoder + nvvidconv "
      "(GStreamer) instead of OpenCV's FFmpeg", choices=("h264", "h265")),
    S("reconnect_initial", "float", 0.5, "first reconnect backoff in s, doubled per failed attempt (default 0.5)",
      gt=0, max=3600),
    S("reconnect_max", "float", 10.0, "longest reconnect backoff in s (default 10)", gt=0, max=86400),
    S("max_reconnects", "int", None, "give up after N failed attempts in a row", min=0),
    S("open_timeout", "float", 10.0, "network/camera source: seconds to wait when opening (default 10)",
      gt=0, max=3600),
    S("read_timeout", "float", 5.0, "network/camera source: seconds to wait for a frame before the source counts "
      "as lost (default 5)", gt=0, max=3600),
    S("stale_after", "float", 10.0, "/healthz turns red when no frame arrived for this many seconds (default 10)",
      gt=0, max=86400),
    S("stop_timeout", "float", 10.0, "seconds after SIGTERM to finish queued work; beyond it the daemon exits "
      "with code 3 keeping what it flushed (default 10)", gt=0, max=3600),
    S("summary", "path", None, "also write the final summary as JSON to this file"),
    # -- the plant: events over MQTT (edge.capture.mqtt; the events file is the store-and-forward spool) --
    S("mqtt", "str", None, "publish events at QoS 1 to mqtt[s]://[user[:password]@]host[:port]/PREFIX "
      "(topics PREFIX/<line>/<camera>/events, .../status, .../metrics)", metavar="URL"),
    S("line", "str", None, "line name (one MQTT topic level; needed with --mqtt)"),
    S("camera", "str", None, "camera name (one MQTT topic level; needed with --mqtt)"),
    S("mqtt_password_file", "path", None, "file holding the broker password (else $EDGE_MQTT_PASSWORD); "
      "never logged"),
    S("mqtt_ca", "path", None, "CA bundle for mqtts://"),
    S("mqtt_cert", "path", None, "client certificate for mqtts://"),
    S("mqtt_key", "path", None, "client key for mqtts://"),
    S("mqtt_metrics_interval", "float", 10.0, "seconds between .../metrics messages (default 10; 0: none)",
      min=0, max=86400),
    S("mqtt_drain", "float", 3.0, "seconds a stopping daemon keeps sending its MQTT backlog (default 3; the rest "
      "stays in the spool for the next start)", min=0, max=3600),
]
del S

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
NAMES = set(BY_NAME)


def _to_dict(self) -> Dict[str, Any]:
    return asdict(self)


#: The settings as a dataclass (one field per row of :data:`SETTINGS`, with its default).
CaptureConfig = make_dataclass(
    "CaptureConfig",
    [(s.name, Any, field(default_factory=(lambda d=s.default: list(d)) if isinstance(s.default, list)
                         else (lambda d=s.default: d))) for s in SETTINGS],
    namespace={"to_dict": _to_dict, "__doc__": "Every setting of the daemon (see SETTINGS); a config file uses "
               "the same names (``-`` or ``_``)."},
)
CaptureConfig.__module__ = __name__


def _fail(where: str, s: Setting, value: Any) -> EdgeError:
    shown = repr(value) if not isinstance(value, str) or len(value) < 80 else repr(value[:77] + "...")
    return EdgeError(f"{where}{s.name} must be {s.describe()}, got {shown}")


def coerce(s: Setting, value: Any, where: str = "", from_text: bool = False) -> Any:
    """Check (and convert) one value of setting ``s``.

    Args:
        s: The setting.
        value: The value (None: unset, allowed for settings without a default or optional ones).
        where: Prefix of the error message (``"--tile: "``, ``"capture.toml: "``).
        from_text: The value came from the command line: strings are parsed ("16" → 16).

    Raises:
        EdgeError: one line naming the key, what it must be, and what it got.
    """
    if value is None:
        return None
    k = s.kind
    if k == "bool":
        if isinstance(value, bool):
            return value
        raise _fail(where, s, value)
    if k in ("int", "float"):
        v = value
        if isinstance(v, str) and from_text:
            try:
                v = int(v) if k == "int" else float(v)
            except ValueError:
                raise _fail(where, s, value) from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _fail(where, s, value)
        if k == "int":
            if isinstance(v, float):
                if not v.is_integer():
                    raise _fail(where, s, value)
                v = int(v)
        else:
            v = float(v)
            if not math.isfinite(v):
                raise _fail(where, s, value)
        if ((s.min is not None and v < s.min) or (s.max is not None and v > s.max)
                or (s.gt is not None and v <= s.gt)):
            raise _fail(where, s, value)
        return v
    if k in ("str", "path", "address"):
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise _fail(where, s, value)
        if s.choices and value not in s.choices:
            raise _fail(where, s, value)
        if k == "address":
            from edge.capture.metrics import parse_address

            try:
                parse_address(value)
            except EdgeError as e:
                raise EdgeError(f"{where}{s.name}: {e}") from None
        return value
    if k == "list":
        if isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) and c for c in value):
            raise _fail(where, s, value)
        return list(value)
    if k == "roi":
        from edge.capture.tiling import parse_roi

        if not isinstance(value, (str, list, tuple)) or (not isinstance(value, str)
                                                          and not all(type(c) is int for c in value)):
            raise _fail(where, s, value)
        try:
            if parse_roi(value) is None:
                return None
            return value if isinstance(value, str) else list(value)
        except EdgeError as e:
            raise EdgeError(f"{where}{s.name}: {e}") from None
    raise AssertionError(f"unknown kind {k}")  # pragma: no cover (a bad row of SETTINGS)


def validate(cfg, where: str = "") -> Any:
    """Check every field of a :class:`CaptureConfig` against the table (in place); return it.

    Also the checks between settings: a model and a source are given; ``reconnect_initial`` is not
    above ``reconnect_max``.
    """
    for s in SETTINGS:
        setattr(cfg, s.name, coerce(s, getattr(cfg, s.name), where))
    if not cfg.model:
        raise EdgeError("no model: give --model (or model = ... in the config file)")
    if not cfg.source:
        raise EdgeError("no source: give --source (or source = ... in the config file)")
    if cfg.mqtt:
        from edge.capture.mqtt import check_config

        check_config(cfg)
    if cfg.preview and not cfg.metrics:
        raise EdgeError(f"{where}preview is served on the metrics server: give metrics HOST:PORT too (--metrics)")
    if cfg.reconnect_initial > cfg.reconnect_max:
        raise EdgeError(f"{where}reconnect_initial ({cfg.reconnect_initial:g} s) must not exceed reconnect_max "
                        f"({cfg.reconnect_max:g} s)")
    return cfg


def load_config_file(path: str | os.PathLike) -> Dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a dict of checked values.

    A ``[capture]`` table (TOML) / ``capture:`` mapping (YAML) is used when present, else the top level.
    Relative paths are taken relative to the config file.

    Raises:
        EdgeError: missing file, parse error, unknown keys, a value of the wrong type or out of
            range, or YAML without PyYAML.
    """
    from edge.configfile import read_config_file

    path = Path(path)
    out = read_config_file(path, "capture")
    unknown = sorted(set(out) - NAMES)
    if unknown:
        raise EdgeError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    where = f"{path.name}: "
    out = {k: coerce(BY_NAME[k], v, where) for k, v in out.items()}
    base = path.resolve().parent
    for k, v in out.items():  # relative paths are relative to the config file
        if BY_NAME[k].kind == "path" and v and not os.path.isabs(v) and "://" not in v:  # triton://...
            out[k] = str(base / v)
    return out


def add_arguments(parser) -> None:
    """Add one flag per row of :data:`SETTINGS` to an argparse parser (values checked by :func:`merge`)."""
    for s in SETTINGS:
        kw: Dict[str, Any] = {"dest": s.name, "help": s.help}
        if s.kind == "bool":
            kw["action"] = "store_true"
        else:
            kw["metavar"] = s.metavar or (s.name.upper() if not s.choices else None)
            if s.choices:
                kw["choices"] = list(s.choices)
        parser.add_argument(s.flag, **kw)


def merge(file_values: Dict[str, Any], cli_values: Dict[str, Any]):
    """Defaults, overridden by the config file, overridden by the flags actually given; all checked.

    Raises:
        EdgeError: an unknown key or a bad value (one line naming the key).
    """
    cfg = CaptureConfig()
    for k, v in file_values.items():
        if k not in BY_NAME:
            raise EdgeError(f"unknown setting {k}")
        if v is not None:
            setattr(cfg, k, coerce(BY_NAME[k], v, "config: "))
    for k, v in cli_values.items():
        if k not in BY_NAME:
            raise EdgeError(f"unknown setting {k}")
        if v is not None:
            setattr(cfg, k, coerce(BY_NAME[k], v, f"{BY_NAME[k].flag}: ", from_text=True))
    return validate(cfg)


__all__ = ["CaptureConfig", "SETTINGS", "Setting", "add_arguments", "coerce", "load_config_file", "merge",
           "validate"]
