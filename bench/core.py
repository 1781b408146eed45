"""The benchmark: latency, throughput and accuracy drift of artifacts against the FP32 Keras reference.

Conventions (the report says them too):

* **Latency** is *end-to-end host wall time* of one call ``runner.infer_images(batch of uint8 images)``:
  host preprocessing + H2D copy + compute + D2H copy, measured with ``time.perf_counter``. This is
  NOT trtexec's default (GPU compute time only). ``latency_ms`` is per batch, ``latency_per_image_ms``
  is the same divided by the batch size, and ``latency_parts_ms`` splits each call into the parts the
  runner's ``last_timing`` can separate (``preprocess``, ``h2d``, ``compute``, ``d2h``; a part is
  absent where the backend cannot time it: ONNX Runtime on the CPU has no copies, so its
  ``compute`` is the whole ``session.run``).
* **Throughput** is ``batch * iterations / wall time`` of the timed loop (images/s), one loop per batch size.
* Artifacts are opened by :func:`bench.runners.open_runner` (``edge.runtime.load_runner``, with the
  ONNX Runtime graph optimisation level the metadata names, e.g. ``basic`` for the Q/DQ INT8 model).
* **Accuracy drift** compares each artifact with the Keras reference on the same files, each model with
  its own stored preprocessing (see :mod:`edge.metrics`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge import metrics
from bench import stats
from edge.errors import EdgeError, InputError, param

log = logging.getLogger(__name__)

LATENCY_CONVENTION = (
    "end-to-end host wall time per call of runner.infer_images(): host preprocessing + H2D + compute + D2H "
    "(time.perf_counter); latency_ms is per batch, latency_per_image_ms per image; latency_parts_ms splits "
    "the call where the runner times the parts (trtexec 11 reports GPU compute time only by default)")
THROUGHPUT_CONVENTION = "batch * iterations / wall time of the timed loop, images per second"
PARTS = ("preprocess", "h2d", "compute", "d2h")
#: Accuracy drop (pp) above which a row is marked ❎ when no ``fail_on_drift`` gate is given.
DEFAULT_STATUS_DROP_PP = 1.0
#: Top-1 agreement with the reference below which a row is marked ❎ (the INT8 bound of the
#: regression suite): similar accuracy with many changed decisions is not a faithful conversion.
MIN_STATUS_AGREEMENT = 0.98


@dataclass
class BenchConfig:
    """What to benchmark and what to measure; the fields are edge-bench's flags.

    Attributes:
        artifacts: Artifact files (each with its ``<artifact>.json``) or ``triton://host:port/MODEL``.
        references: The FP32 Keras reference model(s); each artifact is compared with the one its
            metadata's ``source_model.sha256`` names, else the first.
        data: Dataset folder (NEU-CLS or folder per class).
        split: Which split to evaluate (``train``, ``val``, ``test``, ``all``).
        split_file: ``split.csv`` to read the split from (default: the one beside the first reference,
            else the default seed-42 split recomputed).
        batches: Batch sizes of the latency/throughput loops.
        warmup: Untimed calls before each timed loop.
        iterations: Timed calls per batch size (ignored when ``duration`` is set).
        duration: Seconds per timed loop instead of a fixed count (at least ``min_iterations`` calls).
        threads: ONNX Runtime intra-op threads (0: its default).
        corruptions: Also compute the accuracy table under corruptions.
        seed: Seed of the corruption noise.
        fail_on_drift: Gate: an accuracy drop (pp) above which the report fails (None: no gate).
        json: Write the JSON report here.
        md: Write the Markdown report here.
        plots: Folder for the latency CDF, throughput and confusion-matrix plots.
        html: Write one self-contained HTML page here.
        line_speed: Line capacity: strip speed in m/s (with ``strip_width`` and ``mm_per_px``).
        strip_width: Strip width in mm.
        mm_per_px: Camera resolution on the strip, mm per pixel.
        tile: Tile size in px (default: the model's input width).
        stride: Step between tiles in px (default: the tile size).
        eval_batch: Batch size of the accuracy passes.
        progress: Show tqdm bars.
        min_iterations: With ``duration``, at least this many timed calls.
        command: The command line, recorded in the report's settings (edge-bench sets it).
    """

    artifacts: List[str] = field(default_factory=list)
    references: List[str] = field(default_factory=list)
    data: Optional[str] = None
    split: str = "test"
    split_file: Optional[str] = None
    batches: List[int] = field(default_factory=lambda: [1])
    warmup: int = 20
    iterations: int = 200
    duration: Optional[float] = None
    threads: int = 0
    corruptions: bool = False
    seed: int = 0
    fail_on_drift: Optional[float] = None
    json: Optional[str] = None
    md: Optional[str] = None
    plots: Optional[str] = None
    html: Optional[str] = None
    line_speed: Optional[float] = None
    strip_width: Optional[float] = None
    mm_per_px: Optional[float] = None
    tile: Optional[int] = None
    stride: Optional[int] = None
    eval_batch: int = 32
    progress: bool = True
    min_iterations: int = 10
    command: Optional[str] = None

    #: Fields holding paths (relative to a config file).
    PATHS = ("artifacts", "references", "data", "split_file", "json", "md", "plots", "html")

    def validate_measurement(self) -> None:
        """Check what to measure (the part :func:`run` needs).

        Raises:
            InputError: one line naming the parameter (:func:`edge.errors.param`: its flag inside a command).
        """
        n = param
        if not self.batches or min(self.batches) < 1:
            raise InputError("batch sizes must be >= 1")
        if self.warmup < 0:
            raise InputError(f"{n('warmup')} must be >= 0, got {self.warmup}")
        if self.duration is None and self.iterations < 1:
            raise InputError(f"{n('iterations')} must be >= 1, got {self.iterations}")
        if self.duration is not None and not self.duration > 0:
            raise InputError(f"{n('duration')} must be > 0 seconds, got {self.duration}")
        if self.threads < 0:
            raise InputError(f"{n('threads')} must be >= 0, got {self.threads}")
        g = self.fail_on_drift
        if g is not None and (not math.isfinite(g) or g < 0):
            raise InputError(f"{n('fail_on_drift')} must be a non-negative number of points, got {g}")

    def validate(self) -> "BenchConfig":
        """Check the whole config, the output paths and the line figures before anything is measured.

        Raises:
            InputError: one line naming the parameter.
        """
        n = param
        for name in ("artifacts", "references", "data"):
            if not getattr(self, name):
                raise InputError(f"give {n(name)} (or {name} = ... in the config file)")
        if self.split not in ("train", "val", "test", "all"):
            raise InputError(f"{n('split')} must be one of train, val, test, all, got {self.split!r}")
        self.validate_measurement()
        for name in ("json", "md", "plots", "html"):
            _check_output(getattr(self, name), name)
        line = (self.line_speed, self.strip_width, self.mm_per_px)
        if any(v is not None for v in line + (self.tile, self.stride)) and any(v is None for v in line):
            raise InputError(f"line capacity needs all of {n('line_speed')}, {n('strip_width')} and {n('mm_per_px')}")
        for r in self.references:
            if not Path(r).is_file():
                raise InputError(f"reference model {r} does not exist")
        for a in self.artifacts:
            if not Path(a).is_file() and not str(a).startswith(("triton://", "triton+grpc://", "triton+http://")):
                raise InputError(f"artifact {a} does not exist")
        return self


def _check_output(path: Optional[str], what: str) -> None:
    from edge.fsutil import check_writable_dir

    if path is None:
        return
    p = Path(path)
    if p.exists() and p.is_dir() and what != "plots":
        raise InputError(f"{param(what)} {p} is a folder, expected a file")
    if what == "plots" and p.exists() and not p.is_dir():
        raise InputError(f"{param('plots')} {p} exists and is not a folder")
    check_writable_dir(p if what == "plots" else p.parent)


def _tqdm(it, progress: bool, **kw):
    if not progress:
        return it
    from tqdm import tqdm

    return tqdm(it, leave=False, **kw)


def predict(runner, images: np.ndarray, batch: int = 32, progress: bool = False, desc: str = "") -> np.ndarray:
    """Probabilities (N, K) of uint8 images through ``runner.infer_images`` in chunks of ``batch``."""
    outs = []
    starts = range(0, len(images), batch)
    for i in _tqdm(starts, progress, desc=desc, unit="batch"):
        outs.append(np.asarray(runner.infer_images(images[i:i + batch]), dtype=np.float32))
    return np.concatenate(outs) if outs else np.zeros((0, len(runner.classes)), np.float32)


def batches_of(images: np.ndarray, batch: int, max_batches: int = 8) -> List[np.ndarray]:
    """Up to ``max_batches`` distinct batches of ``batch`` images, cycling through the set."""
    n = len(images)
    if n == 0:
        raise EdgeError("no images to time")
    count = max(1, min(max_batches, math.ceil(n / batch)))
    return [images[np.arange(k * batch, (k + 1) * batch) % n] for k in range(count)]


def measure(runner, images: np.ndarray, batch: int, cfg: BenchConfig, desc: str = "") -> Dict[str, Any]:
    """Timed loop of ``runner.infer_images`` at one batch size.

    Returns:
        ``{"total": [ms per call], "parts": {part: [ms] or None}, "wall_s", "iterations"}``.
    """
    data = batches_of(images, batch)
    for k in range(cfg.warmup):
        runner.infer_images(data[k % len(data)])
    totals: List[float] = []
    parts: Dict[str, List[Optional[float]]] = {p: [] for p in PARTS}
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(desc=desc, unit="it", leave=False, total=None if cfg.duration is not None else cfg.iterations)
    t_start = time.perf_counter()
    k = 0
    while True:
        if cfg.duration is None:
            if k >= cfg.iterations:
                break
        elif k >= cfg.min_iterations and time.perf_counter() - t_start >= cfg.duration:
            break
        t0 = time.perf_counter()
        runner.infer_images(data[k % len(data)])
        t1 = time.perf_counter()
        tm = runner.last_timing
        totals.append((t1 - t0) * 1e3)
        parts["preprocess"].append(tm.preprocess_ms)
        parts["h2d"].append(tm.h2d_ms)
        parts["compute"].append(tm.compute_ms)
        parts["d2h"].append(tm.d2h_ms)
        k += 1
        if bar is not None:
            bar.update(1)
    wall = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    clean = {p: (None if any(v is None for v in vals) else [float(v) for v in vals]) for p, vals in parts.items()}
    return {"total": totals, "parts": clean, "wall_s": wall, "iterations": k}


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3) if path.is_file() else 0.0


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


class Reference:
    """One FP32 Keras reference: its file, metadata, content hash and probabilities."""

    def __init__(self, model: str | Path, meta: Optional[Dict[str, Any]] = None):
        from edge.fsutil import sha256_file

        self.model = Path(model)
        self.meta = meta if meta is not None else load_reference_meta(self.model)
        self.classes = list(self.meta["classes"])
        self.sha256 = sha256_file(self.model) if self.model.is_file() else ""
        self.probs: Optional[np.ndarray] = None
        self.corrupt_probs: Dict[str, np.ndarray] = {}
        self.accuracy: Optional[float] = None

    def summary(self, n_images: int, labels) -> Dict[str, Any]:
        return {"model": str(self.model), "accuracy": self.accuracy, "backend": "keras", "precision": "fp32",
                "size_mb": _size_mb(self.model), "sha256": self.sha256, "images": int(n_images),
                "confusion_matrix": metrics.compare(labels, self.probs, self.probs, self.classes)["confusion_matrix"],
                "classes": self.classes}


def load_reference_meta(model: str | Path) -> Dict[str, Any]:
    """Metadata of a reference model (``model.keras.json`` or preprocess.json + classes.json)."""
    from edge.metadata import read_meta

    model = Path(model)
    meta = read_meta(model)
    if not meta.get("classes") or not meta.get("preprocess"):
        raise EdgeError(f"reference {model} has no classes/preprocessing in its metadata")
    return meta


def display_names(paths: Sequence[str | Path]) -> List[str]:
    """Short unique names: the file name, or ``folder/file`` where file names repeat."""
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def match_reference(meta: Dict[str, Any], refs: List[Reference]) -> tuple:
    """The reference an artifact was made from: ``(reference, note)``.

    The artifact's ``source_model.sha256`` (written by edge-convert) picks the reference with the same
    content; without a match the first reference is used and the note says why.
    """
    src = meta.get("source_model") or {}
    sha = src.get("sha256")
    if sha:
        for ref in refs:
            if ref.sha256 == sha:
                return ref, ""
        return refs[0], (f"made from {src.get('path', 'another model')} (sha256 {sha[:12]}), which is none of the "
                         f"references: drift is against {refs[0].model.name}")
    return refs[0], ""


def _load_references(references) -> List[Reference]:
    if isinstance(references, (str, Path)):
        references = [references]
    refs = [Reference(r) for r in references]
    if not refs:
        raise EdgeError("no reference model given")
    for ref in refs[1:]:
        if ref.classes != refs[0].classes:
            raise EdgeError(f"reference {ref.model} has classes {ref.classes} but {refs[0].model} has {refs[0].classes}")
    return refs


def _artifact_metas(artifacts, refs: List[Reference]) -> List[tuple]:
    """``(artifact, metadata, reference, note)`` per artifact; a class list unlike the references' refused."""
    from edge.runtime import artifact_meta
    from edge.runtime.triton.runner import TritonURL, is_triton_url

    metas = []
    for a in artifacts:
        a = TritonURL(a) if is_triton_url(a) else Path(a)     # a served model: triton://host:8001/MODEL
        meta = artifact_meta(a)
        cls = meta.get("classes")
        if cls and list(cls) != refs[0].classes:
            raise EdgeError(f"{a} has classes {cls} but the reference {refs[0].model} has {refs[0].classes}")
        ref, note = match_reference(meta, refs)
        metas.append((a, meta, ref, note))
    return metas


def _new_result(a, meta, ref: Reference, note: str) -> Dict[str, Any]:
    from bench.formats import describe
    from edge.fsutil import sha256_file

    d = describe(a, meta)
    return {
        "artifact": str(a), "format": d["format"], "backend": d["backend"], "precision": d["precision"],
        "size_mb": _size_mb(a), "sha256": sha256_file(a) if a.is_file() else "", "reference": str(ref.model),
        "latency_ms": {}, "latency_per_image_ms": {},
        "latency_parts_ms": {}, "throughput_ips": {}, "iterations": {}, "unstable_batches": [],
        "accuracy": None, "drift": None, "confusion_matrix": None, "disagreements": [], "status": "failed",
        "status_reason": "", "notes": [note] if note else [], "_samples": {},
    }


def _time_batches(r, res: Dict[str, Any], name: str, images: np.ndarray, cfg: BenchConfig) -> None:
    """The latency / throughput blocks of one artifact at every batch size of ``cfg``."""
    for b in cfg.batches:
        m = measure(r, images, b, cfg, desc=f"{name} b{b}")
        key = str(b)
        st = stats.latency_stats(m["total"])
        res["latency_ms"][key] = st
        res["latency_per_image_ms"][key] = stats.scale_stats(st, b)
        res["latency_parts_ms"][key] = {p: stats.latency_stats(v) for p, v in m["parts"].items() if v is not None}
        res["throughput_ips"][key] = stats.throughput_ips(b, m["iterations"], m["wall_s"])
        res["iterations"][key] = m["iterations"]
        res["_samples"][key] = m["total"]
        if stats.unstable(st):
            res["unstable_batches"].append(key)
            log.warning("%s batch %d: latency is unstable, coefficient of variation %.1f%% > %.1f%% "
                        "(other load on the machine? try more %s or %s)",
                        name, b, st["cov"], stats.COV_WARN_PCT, param("iterations"), param("duration"))
        if r.max_batch is not None and b > r.max_batch:
            res["notes"].append(f"batch {b} > the artifact's max batch {r.max_batch}: run as chunks")


def _bench_artifact(a, meta, ref: Reference, note: str, data: tuple, corrupted: Dict[str, np.ndarray],
                    cfg: BenchConfig, gate: float) -> Dict[str, Any]:
    """One artifact's result: accuracy and drift, corruptions, timing; ``failed`` when it cannot run."""
    from bench.runners import open_runner

    images, labels, files = data
    res = _new_result(a, meta, ref, note)
    if note:
        log.warning("%s: %s", a.name, note)
    try:
        with open_runner(a, meta, threads=cfg.threads) as r:
            res["runner"] = {"class": type(r).__name__}
            if getattr(r, "level", None):
                res["runner"]["graph_optimization_level"] = r.level
            probs = predict(r, images, cfg.eval_batch, cfg.progress, desc=f"{a.name} accuracy")
            cmp = metrics.compare(labels, ref.probs, probs, ref.classes, files)
            res.update(accuracy=cmp["accuracy"], drift=cmp["drift"], confusion_matrix=cmp["confusion_matrix"],
                       disagreements=cmp["disagreements"])
            if corrupted:
                res["_corrupt"] = {key: predict(r, imgs, cfg.eval_batch) for key, imgs in
                                   _tqdm(list(corrupted.items()), cfg.progress, desc=f"{a.name} corruptions")}
            _time_batches(r, res, a.name, images, cfg)
    except EdgeError as e:
        res["status_reason"] = _short(e)
        log.warning("%s: %s", a, res["status_reason"])
        return res
    except (ImportError, OSError, RuntimeError) as e:  # e.g. TensorRT or CUDA missing at load time
        res["status_reason"] = f"{type(e).__name__}: {_short(e)}"
        log.warning("%s: %s", a, res["status_reason"])
        return res
    res["status"], res["status_reason"] = status_of(res["drift"], gate, cfg.fail_on_drift is not None)
    if res["status"] == "ok" and res["unstable_batches"]:
        res["status_reason"] = f"latency CoV > {stats.COV_WARN_PCT}% at batch {', '.join(res['unstable_batches'])}"
    return res


def _conventions(gate: float) -> Dict[str, str]:
    return {"latency": LATENCY_CONVENTION, "throughput": THROUGHPUT_CONVENTION,
            "cov": "coefficient of variation, 100 * std / mean (population std), percent; "
                   f"warning above {stats.COV_WARN_PCT}%",
            "drift": "artifact minus its reference (the Keras model it was made from) on the same files; "
                     "accuracy_delta_pp in percentage points; top1_agreement 0..1; "
                     "kl = mean KL(reference || artifact) in nats",
            "status": f"ok (✅), drift (❎: accuracy drop > {gate:g} pp or top-1 agreement < "
                      f"{100 * MIN_STATUS_AGREEMENT:g}%), failed (❌: could not run)"}


def _corruption_table(conditions, refs: List[Reference], results: List[Dict[str, Any]], labels,
                      seed: int) -> Dict[str, Any]:
    """The ``corruptions`` block: accuracy and agreement per condition, clean first, and its summary."""
    from bench.corruptions import summarize

    by_model = {str(ref.model): ref for ref in refs}
    rows = []
    for n, sev, p in conditions:
        key = f"{n}-{sev}"
        racc = {str(ref.model): metrics.accuracy(labels, ref.corrupt_probs[key]) for ref in refs}
        per = {}
        for res in results:
            cp = res.get("_corrupt", {}).get(key)
            if cp is None:
                continue
            rp = by_model[res["reference"]].corrupt_probs[key]
            acc = metrics.accuracy(labels, cp)
            per[res["artifact"]] = {"accuracy": acc, "accuracy_delta_pp": 100.0 * (acc - racc[res["reference"]]),
                                    "top1_agreement": metrics.agreement(rp, cp)}
        rows.append({"corruption": n, "severity": sev, "param": p, "reference_accuracy": racc[str(refs[0].model)],
                     "reference_accuracies": racc, "results": per})
    clean = {res["artifact"]: {"accuracy": res["accuracy"],
                               "accuracy_delta_pp": res["drift"]["accuracy_delta_pp"],
                               "top1_agreement": res["drift"]["top1_agreement"]}
             for res in results if res["drift"] is not None}
    conds = [{"corruption": "none", "severity": 0, "param": None, "reference_accuracy": refs[0].accuracy,
              "reference_accuracies": {str(ref.model): ref.accuracy for ref in refs}, "results": clean}] + rows
    models = [str(ref.model) for ref in refs] + [res["artifact"] for res in results if res["drift"] is not None]
    reference_of = {res["artifact"]: res["reference"] for res in results}
    return {"seed": seed, "conditions": conds, "summary": summarize(conds, models, reference_of)}


def run(artifacts: Sequence[str | Path], references: str | Path | Sequence[str | Path], images: np.ndarray,
        labels: np.ndarray, files: Sequence[str], cfg: BenchConfig) -> Dict[str, Any]:
    """Benchmark every artifact on images already loaded; return the report (without the environment block).

    :func:`bench.run_bench` loads the images and writes the reports; this is the measuring part.

    Args:
        artifacts: Artifact files (each with its ``.json`` metadata).
        references: The FP32 Keras model(s). Each artifact is compared with the reference whose content
            hash its metadata names (``source_model.sha256``), else with the first.
        images: uint8 test images (N, H, W), in the order of ``labels`` / ``files``.
        labels: Class index per image, in the references' class order.
        files: File name per image (relative to the data root).
        cfg: What to measure.

    Returns:
        ``{"reference": {...first...}, "references": [...], "results": [...], "corruptions": {...} | None,
        "conventions": {...}}``; each result carries raw latency samples under ``"_samples"`` for the plots.
    """
    from bench.corruptions import all_conditions, corrupt
    from edge.runtime import load_runner

    cfg.validate_measurement()
    refs = _load_references(references)
    metas = _artifact_metas(artifacts, refs)
    conditions = list(all_conditions()) if cfg.corruptions else []
    corrupted = {f"{n}-{s}": corrupt(images, n, s, seed=cfg.seed) for n, s, _ in conditions}
    for ref in refs:
        with load_runner(ref.model, backend="keras") as r:
            ref.probs = predict(r, images, cfg.eval_batch, cfg.progress, desc=f"reference {ref.model.name}")
            for key, imgs in _tqdm(list(corrupted.items()), cfg.progress, desc="reference corruptions"):
                ref.corrupt_probs[key] = predict(r, imgs, cfg.eval_batch)
        ref.accuracy = metrics.accuracy(labels, ref.probs)
    gate = cfg.fail_on_drift if cfg.fail_on_drift is not None else DEFAULT_STATUS_DROP_PP
    results = [_bench_artifact(a, meta, ref, note, (images, labels, files), corrupted, cfg, gate)
               for a, meta, ref, note in _tqdm(metas, cfg.progress, desc="artifacts", unit="artifact")]
    for res, name in zip(results, display_names([r["artifact"] for r in results])):
        res["name"] = name
    ref_sums = [ref.summary(len(images), labels) for ref in refs]
    for rs, name in zip(ref_sums, display_names([ref.model for ref in refs])):
        rs["name"] = name
    report: Dict[str, Any] = {"reference": ref_sums[0], "references": ref_sums, "results": results,
                              "conventions": _conventions(gate), "corruptions": None}
    if conditions:
        report["corruptions"] = _corruption_table(conditions, refs, results, labels, cfg.seed)
        for res in results:
            res.pop("_corrupt", None)
    return report


def status_of(drift: Dict[str, Any], gate_pp: float = DEFAULT_STATUS_DROP_PP, from_flag: bool = False) -> tuple:
    """``("ok", "")`` or ``("drift", reason)`` for an artifact that ran.

    ``drift`` when the accuracy drop exceeds ``gate_pp`` or the top-1 agreement is below
    :data:`MIN_STATUS_AGREEMENT`.
    """
    bad = []
    if metrics.drop_exceeds(drift, gate_pp):
        bad.append(f"accuracy drop {-drift['accuracy_delta_pp']:.2f} pp > {gate_pp:g} pp "
                   f"({'--fail-on-drift' if from_flag else 'default status threshold'})")
    if drift["top1_agreement"] < MIN_STATUS_AGREEMENT:
        bad.append(f"top-1 agreement {100 * drift['top1_agreement']:.2f}% < {100 * MIN_STATUS_AGREEMENT:g}%")
    return ("drift", "; ".join(bad)) if bad else ("ok", "")


def gate_failures(report: Dict[str, Any], gate_pp: float) -> List[str]:
    """Artifacts whose accuracy drop exceeds ``gate_pp`` (one line each)."""
    out = []
    for res in report["results"]:
        if res.get("drift") is not None and metrics.drop_exceeds(res["drift"], gate_pp):
            out.append(f"{Path(res['artifact']).name}: {-res['drift']['accuracy_delta_pp']:.2f} pp")
    return out
