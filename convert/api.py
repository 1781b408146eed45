"""The converter's Python API: :func:`convert_model` (Keras → ONNX artifacts → TensorRT engines) and
:func:`convert_onnx` (an engine, or a Triton repository, from one ONNX artifact: the target's step).

One :class:`ConvertConfig` holds every setting and is validated in one place
(:meth:`ConvertConfig.checked`); errors name its parameters (``max_batch must be at least 1``), and
``edge-convert`` words them as its flags. Progress goes to this package's loggers
(``logging.getLogger("convert")``): a caller sees it once it configures logging.

Example (README, "Python API")::

    import logging
    from convert import ConvertConfig, convert_model
    logging.basicConfig(format="%(message)s")
    logging.getLogger("convert").setLevel(logging.INFO)      # the lines edge-convert prints
    res = convert_model("models/neu-compact/model.keras",
                        ConvertConfig(out="runs/api-convert", fp16=True, int8=True, calib_data="data/NEU-CLS"))
    res.paths["int8"], res.gates["int8"].passed, res.gate_failure()
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from edge.errors import InputError, param
from edge.formats import TOLERANCES, by_name

log = logging.getLogger(__name__)

#: The values some parameters accept.
CALIB_METHODS = ("entropy", "minmax", "percentile")
ENGINE_MODES = ("auto", "always", "never")
GATE_VIEW_CHOICES = (1, 2, 4)


@dataclass
class ConvertConfig:
    """Every setting of a conversion (the ``edge-convert`` flags, by their parameter names).

    Attributes:
        out: Output folder (refused if it exists, unless ``force``).
        fp16: Also write ``model.fp16.onnx`` (FP16 weights/compute, FP32 I/O).
        int8: Also write ``model.int8.onnx`` (explicit Q/DQ for TensorRT) and the calibration record.
        int8_cpu: Also write ``model.int8cpu.onnx`` (fast int8 for ONNX Runtime on x86).
        calib_data: Dataset folder for calibration, the FP32 check and the drift gate.
        split_file: ``split.csv`` (default: the one beside the model).
        calib_split: Split to calibrate on (only ``train`` is allowed).
        calib_size: Calibration images (stratified).
        calib_method: ``entropy``, ``minmax`` or ``percentile``; None (default): the model's
            (:func:`convert.quantize.default_calib_method`: entropy, or for a model with an open-set
            score output the method that keeps the score within its drift gate).
        calib_chunk: Images per calibrator ``collect_data`` call (bounds memory).
        max_drift: Allowed INT8 val accuracy drop in percentage points.
        min_agreement: Required INT8 top-1 agreement with FP32 on the val split, percent (0: off).
        gate_views: Flipped views of each val image the drift gate measures (1, 2 or 4).
        fp16_tolerance: Allowed FP16 max abs probability difference vs FP32.
        int8_cpu_format: CPU int8 variant (None: :data:`convert.quantize.DEFAULT_CPU_VARIANT`).
        int8_quantize_stem: Quantize the Q/DQ model's stem convolution too (default: left in float, as
            the CPU int8 default does; :func:`convert.quantize.to_qdq_int8`).
        uint8_tiles: Tile size the deployable artifacts take as uint8 input, ``"auto"`` (the size of
            the ``calib_data`` images; float input without them) or 0 (float input everywhere).
        batch: ``"dynamic"`` (or None) or 1: the ONNX batch dimension and engine profile.
        max_batch: Largest batch of the engine's optimization profile.
        opt_batch: The profile's opt batch (edge-capture's batch; DLA: the static batch).
        opset: ONNX opset (13-17 parse on TensorRT 8.5).
        engine: Build TensorRT engines: ``auto`` (if TensorRT and a GPU are here), ``always``, ``never``.
        workspace: TensorRT workspace memory pool limit, MiB.
        dla: DLA core to build for (GPU fallback on), or None.
        timing_cache: TensorRT timing cache file to reuse and update.
        force: Replace an existing ``out``.
        triton_repo: Also write the artifacts as a Triton model repository here.
        check_images: Val images of the FP32-vs-Keras and FP16 checks (0: the whole val split).
    """

    out: Optional[str] = None
    fp16: bool = False
    int8: bool = False
    int8_cpu: bool = False
    calib_data: Optional[str] = None
    split_file: Optional[str] = None
    calib_split: str = "train"
    calib_size: int = 500
    calib_method: Optional[str] = None
    calib_chunk: int = 16
    max_drift: float = 0.5
    min_agreement: float = 99.0
    gate_views: int = 4
    fp16_tolerance: float = TOLERANCES["fp16"]["max_abs"]
    int8_cpu_format: Optional[str] = None
    int8_quantize_stem: bool = False
    uint8_tiles: Union[str, int] = "auto"
    batch: Union[str, int, None] = "dynamic"
    max_batch: int = 32
    opt_batch: int = 16
    opset: int = 17
    engine: str = "auto"
    workspace: int = 1024
    dla: Optional[int] = None
    timing_cache: Optional[str] = None
    force: bool = False
    triton_repo: Optional[str] = None
    check_images: int = 0

    @property
    def fixed_batch(self) -> Optional[int]:
        """The fixed ONNX batch (1), or None for a dynamic batch dimension."""
        return None if self.batch in (None, "dynamic") else 1

    def checked(self) -> "ConvertConfig":
        """The config validated, with ``uint8_tiles`` resolved; one error naming the parameter otherwise.

        Raises:
            InputError: a value out of range, parameters that contradict each other.
        """
        if self.batch not in (None, "dynamic", 1, "1"):
            raise InputError(f"{param('batch')} must be 1 or dynamic, got {self.batch!r}")
        if (self.int8 or self.int8_cpu) and not self.calib_data:
            raise InputError(f"{param('int8')}/{param('int8_cpu')} need calibration images: pass {param('calib_data')} "
                             "(the training data folder)")
        for setting in ("max_batch", "calib_chunk"):  # calib_size, opt_batch: checked where they are used
            if int(getattr(self, setting)) < 1:
                raise InputError(f"{param(setting)} must be at least 1, got {getattr(self, setting)}")
        if self.max_drift < 0:
            raise InputError(f"{param('max_drift')} must be >= 0 percentage points, got {self.max_drift:g}")
        if self.check_images < 0:
            raise InputError(f"{param('check_images')} must be >= 0 (0: the whole val split), got {self.check_images}")
        if not 0 <= self.min_agreement <= 100:
            raise InputError(f"{param('min_agreement')} must be a percentage in [0, 100], got {self.min_agreement:g}")
        for setting, allowed in (("calib_method", (None,) + CALIB_METHODS), ("engine", ENGINE_MODES),
                               ("gate_views", GATE_VIEW_CHOICES)):   # calib_method None: the model's default
            if getattr(self, setting) not in allowed:
                raise InputError(f"{param(setting)} must be one of {', '.join(str(a) for a in allowed if a is not None)}, "
                                 f"got {getattr(self, setting)!r}")
        return dataclasses.replace(self, uint8_tiles=self._tiles())

    def _tiles(self) -> Union[str, int]:
        """``uint8_tiles``: "auto" (the calibration images' size; 0 without calib_data), a size, or 0."""
        if str(self.uint8_tiles) == "auto":
            return "auto" if self.calib_data else 0   # no images to tell the camera's tile size: float input
        try:
            v = int(self.uint8_tiles)
        except ValueError:
            v = -1
        if v < 0:
            raise InputError(f"{param('uint8_tiles')} takes a tile size in pixels, auto or 0 (float input), got "
                             f"{self.uint8_tiles!r}")
        return v


@dataclass
class ConvertResult:
    """What a conversion wrote.

    Attributes:
        out: The output folder.
        written: File names written in ``out``, in order.
        paths: Format name of :data:`edge.formats.FORMATS` (and ``calibration``) → file written.
        metadata: File name → the metadata written beside it.
        gates: ``int8`` / ``int8-cpu`` → the :class:`convert.gate.GateResult` of its drift gate;
            ``ood:<file>`` → the :class:`convert.score_gate.ScoreGate` of an artifact's open-set score.
        triton: Model folders written in the Triton repository.
        engine_note: Why no engine was built (empty when engines were built or not asked for).
        seconds: Wall time.
    """

    out: Path
    written: List[str] = field(default_factory=list)
    paths: Dict[str, Path] = field(default_factory=dict)
    metadata: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    gates: Dict[str, Any] = field(default_factory=dict)
    triton: List[Path] = field(default_factory=list)
    engine_note: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every drift gate that ran passed."""
        return all(g.passed for g in self.gates.values())

    def gate_failure(self) -> Optional[str]:
        """One line on the failed gates (the artifacts are kept and marked), or None."""
        labels = {"int8": "INT8", "int8-cpu": "CPU int8"}
        failed = [(labels[n], by_name(n).file, g) if n in labels else ("ood score", n.split(":", 1)[1], g)
                  for n, g in self.gates.items() if not g.passed]
        if not failed:
            return None
        why = "; ".join(f"{label} drift gate failed: {g.summary()}" for label, _, g in failed)
        marks = " and ".join(f"{art}.json" for _, art, _ in failed) + (" marks" if len(failed) == 1 else " mark")
        return f"{why}; artifacts kept in {self.out}, {marks} the gate failed"


def convert_model(model: Union[str, os.PathLike], config: ConvertConfig) -> ConvertResult:
    """Convert a Keras classifier made by ``edge-train`` into the artifacts ``config`` asks for.

    Writes into a staging folder moved into place at the end (nothing half-written on error). A
    failed drift gate keeps the artifacts, marks them in their metadata and shows in
    :attr:`ConvertResult.gates` / :meth:`ConvertResult.gate_failure`: it does not raise.

    Args:
        model: ``model.keras`` (with ``preprocess.json``, ``classes.json`` and ``split.csv`` beside it).
        config: The settings; ``config.out`` is required.

    Returns:
        The :class:`ConvertResult`.

    Raises:
        InputError: bad settings or input (a message naming the parameter).
        BackendError: TensorRT or ONNX Runtime failed.
    """
    from convert import steps

    t_start = time.perf_counter()
    if not config.out:
        raise InputError(f"no output folder given ({param('out')})")
    cfg = config.checked()
    job = steps.prepare(Path(model), cfg)
    result = ConvertResult(out=Path(cfg.out))
    steps.export_all(job, result)
    if job.plan.message:
        result.engine_note = job.plan.message.format(out=result.out)
        log.info(result.engine_note)
    log.info(f"wrote {result.out}/: {', '.join(result.written)} in {time.perf_counter() - t_start:.0f} s")
    if cfg.triton_repo:
        from convert.triton import repository_for

        result.triton = repository_for(result.out, cfg.triton_repo)
    result.seconds = time.perf_counter() - t_start
    return result


def convert_onnx(onnx_file: Union[str, os.PathLike], config: ConvertConfig) -> ConvertResult:
    """The target's step: a TensorRT engine from one ONNX artifact (with its metadata), and with
    ``config.triton_repo`` the artifact and that engine as a Triton model repository.

    The precision comes from the artifact's metadata (INT8 uses its Q/DQ ranges: no calibration
    images are needed here). Settings used: ``out`` (default: the artifact's folder), ``batch``,
    ``max_batch``, ``opt_batch``, ``workspace``, ``dla``, ``timing_cache``, ``force``, ``engine``
    (with ``triton_repo``; without it an engine is always built), ``triton_repo``.

    Raises:
        InputError: missing file or metadata, not an edge-convert artifact, no TensorRT/GPU here.
        BackendError: TensorRT failed.
    """
    from convert.tensorrt import build_from_onnx, engine_plan

    cfg = config.checked()
    src = Path(onnx_file)
    result = ConvertResult(out=Path(cfg.out) if cfg.out else src.parent)
    build = dict(out_dir=cfg.out, batch=cfg.fixed_batch, max_batch=cfg.max_batch, workspace_mib=cfg.workspace,
                 dla=cfg.dla, timing_cache=cfg.timing_cache, force=cfg.force, opt_batch=cfg.opt_batch)
    if not cfg.triton_repo:
        eng = build_from_onnx(str(src), **build)
        result.written, result.paths = [eng.name], {f"engine-{eng.name.split('.')[1]}": eng}
        return result
    if not src.is_file():
        raise InputError(f"ONNX file {src} does not exist")
    files = [src]
    plan = engine_plan(cfg.engine)
    if plan.build:
        files.append(build_from_onnx(str(src), **build))
    elif plan.message:
        log.info("triton: no engine built here (" + plan.message.split("(", 1)[-1].split(")", 1)[0] + "): the "
                 "repository gets the ONNX model; run the same command on the GPU server to add the engine")
    from convert.triton import write_repository

    result.triton = write_repository(files, cfg.triton_repo, max_batch=cfg.max_batch)
    result.written = [f.name for f in files[1:]]
    return result


__all__ = ["ConvertConfig", "ConvertResult", "convert_model", "convert_onnx"]
