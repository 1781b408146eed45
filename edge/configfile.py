"""Config files of the commands: defaults, then a TOML/YAML file (``--config FILE``), then the flags.

Every stage's API takes one config dataclass (``train.TrainConfig``, ``train.EvalConfig``,
``bench.BenchConfig``, ``edge.capture.CaptureConfig``). A command fills it in three layers: the
dataclass defaults, the keys of the config file, the flags actually given. The file uses the
dataclass field names (``-`` or ``_``), optionally under a table named after the stage
(``[train]``, ``[bench]``, ``[capture]``); relative paths are relative to the file.

Example ``train.toml``::

    [train]
    data = "../data/NEU-CLS"
    model = "compact"
    epochs = 60
    out = "runs/compact-s42"
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from edge.errors import InputError


def read_config_file(path: str | os.PathLike, section: Optional[str] = None) -> Dict[str, Any]:
    """The settings of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file, keys with ``-`` read as ``_``.

    Args:
        path: The file.
        section: A table used instead of the top level when the file has it (``capture``, ``train``).

    Raises:
        InputError: missing or unreadable file, a parse error, not a table, or YAML without PyYAML.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"{path}: YAML config needs PyYAML (pip install pyyaml), or use TOML") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a table of settings")
    if section and isinstance(data.get(section), dict):
        data = data[section]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(name: str, kind: str, value: Any, where: str) -> Any:
    """Check one config-file value against the field's annotation (int, float, bool, str, list of int/str)."""
    if value is None:
        return None
    kind = kind.replace("typing.", "")
    if kind.startswith("Union[") and len([m for m in kind[6:-1].split(",") if m.strip() != "None"]) > 1:
        return value  # several types (uint8_tiles = "auto" or 200): the dataclass's own check decides
    if "List[int]" in kind or "Sequence[int]" in kind:
        what, ok = "a list of integers", isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif "List[" in kind or "Sequence[" in kind:
        value = [value] if isinstance(value, str) else value
        what, ok = "a list of strings", isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif "bool" in kind:
        what, ok = "true or false", isinstance(value, bool)
    elif "int" in kind:
        what, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif "float" in kind:
        what, ok = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        what, ok = "a string", isinstance(value, str)
    if not ok:
        raise InputError(f"{where}{name} must be {what}, got {value!r}")
    return value


def load_config(cls, path: str | os.PathLike, section: str, paths: Iterable[str] = ()) -> Dict[str, Any]:
    """The values of a config file for the dataclass ``cls``, checked by type; unknown keys refused.

    Args:
        cls: The config dataclass.
        path: The TOML/YAML file.
        section: Its table for this stage (``train``, ``eval``, ``bench``).
        paths: Fields holding paths (or lists of paths): made relative to the file's folder.

    Raises:
        InputError: see :func:`read_config_file`; an unknown key; a value of the wrong type.
    """
    values = read_config_file(path, section)
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise InputError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    where = f"{Path(path).name}: "
    out = {k: _coerce(k, kinds[k], v, where) for k, v in values.items()}
    base = Path(path).resolve().parent

    def rel(v: str) -> str:
        return v if os.path.isabs(v) or "://" in v else str(base / v)  # triton://... stays

    for k in paths:
        if out.get(k):
            out[k] = [rel(v) for v in out[k]] if isinstance(out[k], list) else rel(out[k])
    return out


def layered(cls, flags: Dict[str, Any], config: Optional[str | os.PathLike] = None, section: str = "",
            paths: Iterable[str] = ()):
    """``cls()`` defaults, overridden by the ``config`` file's keys, overridden by the flags given (not None).

    Args:
        cls: The config dataclass; every field needs a default.
        flags: Field name -> the flag's value (None: not given); names that are no field of ``cls``
            (``config``, ``verbose``, ``quiet``) are left out.
        config: The ``--config`` file, or None.
        section: See :func:`load_config`.
        paths: See :func:`load_config`.
    """
    values = load_config(cls, config, section, paths) if config else {}
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in flags.items() if v is not None and k in names})
    return cls(**values)


__all__ = ["layered", "load_config", "read_config_file"]
