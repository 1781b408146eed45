"""Artifact metadata: ``<artifact>.json`` beside every model, ONNX file and engine.

Schema (keys every stage relies on)::

    {
      "artifact": "model.int8.onnx",         # file name
      "format": "keras" | "onnx" | "engine",
      "backend": "keras" | "onnxruntime" | "tensorrt",
      "precision": "fp32" | "fp16" | "int8" | "int8-cpu",
      "classes": ["crazing", ...],
      "input": {"name": "input", "shape": [-1, H, W, C], "dtype": "float32", "layout": "NHWC"},
                                             # uint8-tile artifacts: "shape": [-1, th, tw, 1], "dtype": "uint8",
                                             # "form": "uint8_tiles", "tile": [th, tw] (see input_form)
      "output": {"name": "probs", "shape": [-1, K]},
      "preprocess": {... edge.preprocess.Preprocess.to_dict() ...},
      "source_model": {"path": "...", "sha256": "..."},
      "calibration": {...} | null,
      "drift_gate": {...} | null,
      "tools": {"tensorflow": "...", "onnx": "...", ...},
      "tensorrt": {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}   # engines only
    }

A Keras model folder made by ``edge-train`` also has ``preprocess.json`` and ``classes.json``;
:func:`read_meta` falls back to them for a ``.keras`` file without its own JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edge.errors import EdgeError
from edge.preprocess import Preprocess


@dataclass
class ArtifactMeta:
    """The metadata of one artifact, built in one place (:meth:`for_format` / :meth:`keras`).

    The common keys are fields; the per-kind sections (``calibration``, ``drift_gate``, ``checks``,
    ``quantization``, ``onnx``, ``onnxruntime``, ``tensorrt``, ``ood`` ...) are kept in ``sections``
    in the order they were added. :meth:`to_dict` gives the JSON object of the schema above.

    Example:
        >>> from edge.formats import by_name
        >>> m = ArtifactMeta.for_format(by_name("int8"), classes=["a", "b"], preprocess={}, input={"shape": [-1, 8, 8, 1]})
        >>> (m.format, m.backend, m.precision)
        ('onnx', 'onnxruntime', 'int8')
    """

    format: str
    backend: str
    precision: str
    classes: List[str]
    preprocess: Dict[str, Any]
    input: Dict[str, Any]
    output: Optional[Dict[str, Any]] = None
    source_model: Optional[Dict[str, Any]] = None
    tools: Optional[Dict[str, str]] = None
    sections: Dict[str, Any] = field(default_factory=dict)

    _COMMON = ("format", "backend", "precision", "classes", "input", "output", "preprocess", "source_model", "tools")

    @classmethod
    def for_format(cls, fmt, **values: Any) -> "ArtifactMeta":
        """Metadata of an artifact of the row ``fmt`` of :data:`edge.formats.FORMATS` (format, backend
        and precision come from the table); ``values``: the common fields, any other key a section."""
        common = {k: values.pop(k) for k in list(values) if k in cls._COMMON}
        return cls(format=fmt.fmt, backend=fmt.backend, precision=fmt.precision, **common, sections=values)

    @classmethod
    def keras(cls, classes: Sequence[str], prep: Preprocess, **values: Any) -> "ArtifactMeta":
        """A ``.keras`` model's metadata (FP32; input: float NHWC of the preprocessing's shape unless
        ``values`` gives it); ``values``: other common fields, any other key a section."""
        common = {k: values.pop(k) for k in list(values) if k in cls._COMMON}
        common.setdefault("input", {"shape": [-1, *prep.input_shape], "dtype": "float32", "layout": "NHWC"})
        return cls(format="keras", backend="keras", precision="fp32", classes=classes,
                   preprocess=prep.to_dict(), **common, sections=values)

    @classmethod
    def from_dict(cls, meta: Dict[str, Any]) -> "ArtifactMeta":
        """The dataclass of a metadata dict (``artifact`` is dropped: :func:`write_meta` sets it)."""
        names = {f.name for f in fields(cls)} - {"sections"}
        common = {k: meta.get(k) for k in names}
        return cls(**common, sections={k: v for k, v in meta.items() if k not in names and k != "artifact"})

    def derive(self, fmt, keep: Sequence[str] = (), **sections: Any) -> "ArtifactMeta":
        """Metadata of an artifact made from this one (an engine from its ONNX): the common fields,
        the sections named in ``keep`` (those present), the new ``sections``; format, backend and
        precision from the row ``fmt``."""
        kept = {k: self.sections[k] for k in keep if k in self.sections}
        return ArtifactMeta(format=fmt.fmt, backend=fmt.backend, precision=fmt.precision,
                            classes=list(self.classes), preprocess=self.preprocess, input=self.input,
                            output=self.output, source_model=self.source_model, tools=self.tools,
                            sections={**kept, **sections})

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object (common keys, then the sections; unset common keys left out)."""
        d = {k: getattr(self, k) for k in self._COMMON if getattr(self, k) is not None}
        d.update(self.sections)
        return d


def meta_path(artifact: str | os.PathLike) -> Path:
    """The metadata file of an artifact: ``model.int8.onnx`` → ``model.int8.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_meta(artifact: str | os.PathLike, meta: Dict[str, Any]) -> Path:
    """Write the metadata of ``artifact`` atomically."""
    from edge.fsutil import write_json

    meta = dict(meta)
    meta.setdefault("artifact", Path(artifact).name)
    return write_json(meta_path(artifact), meta)


def read_meta(artifact: str | os.PathLike) -> Dict[str, Any]:
    """Read the metadata of ``artifact``.

    Raises:
        EdgeError: the artifact or its metadata is missing or unreadable.
    """
    artifact = Path(artifact)
    try:
        return _read_meta(artifact)
    except OSError as e:  # e.g. a folder the service user may not enter
        raise EdgeError(f"cannot read {artifact} or its metadata: {e.strerror or e}") from None


def _read_meta(artifact: Path) -> Dict[str, Any]:
    if not artifact.exists():
        raise EdgeError(f"{artifact} does not exist")
    mp = meta_path(artifact)
    if mp.is_file():
        try:
            meta = json.loads(mp.read_text())
        except json.JSONDecodeError as e:
            raise EdgeError(f"metadata {mp} is not valid JSON: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise EdgeError(f"cannot read metadata {mp}: {getattr(e, 'strerror', None) or e}") from None
        if not isinstance(meta, dict):
            raise EdgeError(f"metadata {mp} must be a JSON object, not a {type(meta).__name__}")
        return meta
    # A Keras model folder from edge-train: preprocess.json + classes.json beside it.
    pp, cl = artifact.parent / "preprocess.json", artifact.parent / "classes.json"
    if pp.is_file() and cl.is_file():
        meta = ArtifactMeta.keras(json.loads(cl.read_text()), Preprocess.load(pp))
        if artifact.suffix != ".keras":  # e.g. model.h5: named after its suffix, as before
            meta.format = meta.backend = artifact.suffix.lstrip(".")
        return {"artifact": artifact.name, **meta.to_dict()}
    raise EdgeError(f"{artifact} has no metadata ({mp.name}, or preprocess.json + classes.json beside it)")


def preprocess_of(meta: Dict[str, Any]) -> Preprocess:
    """The :class:`Preprocess` stored in an artifact's metadata."""
    if "preprocess" not in meta:
        raise EdgeError(f"metadata of {meta.get('artifact', '?')} has no preprocessing")
    pp = meta["preprocess"]
    if not isinstance(pp, dict):
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: preprocess must be an object")
    try:
        return Preprocess.from_dict(pp)
    except (TypeError, ValueError) as e:
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: bad preprocess: {' '.join(str(e).split())}") from None


def input_form(meta: Dict[str, Any]) -> tuple:
    """``("float", None)`` or ``("uint8_tiles", (tile_h, tile_w))``: what an artifact's input takes.

    ``"input": {"form": "uint8_tiles", "tile": [h, w], "dtype": "uint8", ...}`` marks an artifact
    whose graph does the preprocessing (``edge-convert --uint8-tiles``); anything else is float.
    """
    inp = meta.get("input") or {}
    form = inp.get("form", "float") if isinstance(inp, dict) else "float"
    if form == "float":
        return "float", None
    if form != "uint8_tiles":
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: unknown input form {form!r} (float or uint8_tiles)")
    tile = inp.get("tile")
    if not (isinstance(tile, (list, tuple)) and len(tile) == 2 and all(isinstance(v, int) and v > 0 for v in tile)):
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: uint8_tiles input needs \"tile\": [height, width], got {tile!r}")
    return "uint8_tiles", (int(tile[0]), int(tile[1]))


def classes_of(meta: Dict[str, Any]) -> List[str]:
    """The class names stored in an artifact's metadata (a list of distinct, non-empty strings)."""
    classes = meta.get("classes")
    if not classes:
        raise EdgeError(f"metadata of {meta.get('artifact', '?')} has no class names")
    if (not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise EdgeError(f"metadata of {meta.get('artifact', '?')}: classes must be a list of distinct names, "
                        f"got {str(classes)[:120]}")
    return list(classes)


def _static(dims) -> List[Any]:
    return [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in dims]


def check_meta(meta: Dict[str, Any], where: str = "", input_shape: Optional[Sequence[int]] = None) -> None:
    """Check that an artifact's metadata agrees with itself: the input shape with the preprocessing
    (or with ``input_shape``, the (H, W, C) the artifact takes, e.g. uint8 tiles), the output
    width with the number of classes.

    Raises:
        EdgeError: one line saying what disagrees.
    """
    name = where or meta.get("artifact", "?")
    classes, prep = classes_of(meta), preprocess_of(meta)
    for key in ("input", "output"):
        spec = meta.get(key)
        if spec is None:
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("shape", []), list):
            raise EdgeError(f"metadata of {name}: {key} must be an object with a shape list")
    shape = (meta.get("input") or {}).get("shape")
    if shape:
        want = tuple(input_shape) if input_shape is not None else prep.input_shape
        dims = _static(shape[1:])
        if len(dims) != 3 or any(d is not None and d != e for d, e in zip(dims, want)):
            raise EdgeError(f"metadata of {name}: input shape {shape} does not match the preprocessing "
                            f"(H, W, C) = {want}")
    shape = (meta.get("output") or {}).get("shape")
    if shape:
        k = _static(shape[-1:])[0]
        if k is not None and k != len(classes):
            raise EdgeError(f"metadata of {name}: output width {k} does not match its {len(classes)} class names")


def check_class_order(artifact: str | os.PathLike, meta: Dict[str, Any]) -> None:
    """Refuse metadata whose class names are those of the model it came from, in another order.

    The order of ``classes`` is the order of the model's outputs: a permuted list labels every tile
    wrongly without any error. It is compared with ``classes.json`` beside the artifact (an
    ``edge-train`` folder) and with the source model's metadata / ``classes.json`` (converted
    artifacts), where those can be read.

    Raises:
        EdgeError: the same names in another order.
    """
    classes = classes_of(meta)
    artifact = Path(artifact)
    refs = [artifact.parent / "classes.json"]
    src = (meta.get("source_model") or {}).get("path") if isinstance(meta.get("source_model"), dict) else None
    if isinstance(src, str) and src:
        sp = Path(src)
        refs += [meta_path(sp), sp.parent / "classes.json"]
    for ref in refs:
        try:
            if ref.resolve() == meta_path(artifact).resolve() or not ref.is_file():
                continue
            other = json.loads(ref.read_text())
        except (OSError, ValueError):
            continue
        other = other.get("classes") if isinstance(other, dict) else other
        if (isinstance(other, list) and other != classes and len(other) == len(classes)
                and sorted(map(str, other)) == sorted(classes)):
            raise EdgeError(f"metadata of {artifact.name} lists the classes in another order than {ref}: "
                            f"{classes} vs {other}; the order must be the model's output order")


def check_model_io(artifact: str, input_shape, output_shape, meta: Dict[str, Any],
                   expected_input: Optional[Sequence[int]] = None) -> None:
    """Check a loaded model's own input/output shapes against its metadata (-1/None: dynamic, not checked).

    Raises:
        EdgeError: the model takes another (H, W, C) than the preprocessing makes, or gives
            another number of scores than the metadata has classes.
    """
    classes, prep = classes_of(meta), preprocess_of(meta)
    want = tuple(expected_input) if expected_input is not None else prep.input_shape
    dims = _static(list(input_shape)[1:])
    if len(dims) == 3 and any(d is not None and d != e for d, e in zip(dims, want)):
        raise EdgeError(f"{artifact}: the model takes (H, W, C) = {tuple(input_shape)[1:]} but its metadata's "
                        f"preprocessing makes {want}")
    k = _static(list(output_shape)[-1:])[0] if len(output_shape) else None
    if k is not None and k != len(classes):
        raise EdgeError(f"{artifact}: the model gives {k} class scores but its metadata names {len(classes)} "
                        f"classes")


def tool_versions() -> Dict[str, str]:
    """Versions of the tools that made an artifact (those installed)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime",
                 "onnxruntime-gpu", "numpy", "opencv-python-headless", "tensorrt", "cuda-python"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    from edge import __version__

    out["steel-edge"] = __version__
    return out
