"""The one Runner interface every backend implements (Polygraphy style).

A runner is a context manager: ``activate()`` loads the artifact and warms up,
``infer(batch)`` returns class probabilities, ``deactivate()`` frees everything.

Example:
    >>> from edge.runtime import load_runner
    >>> with load_runner("out/model.int8.onnx") as r:
    ...     probs = r.infer_images(gray_images)     # preprocessing from the metadata
    ...     print(r.classes[probs[0].argmax()], r.last_timing)
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.metadata import check_class_order, check_meta, check_model_io, classes_of, input_form, preprocess_of, read_meta
from edge.preprocess import Preprocess, TileInput


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic dimension) and dtype of one input or output."""

    name: str
    shape: Tuple[int, ...]
    dtype: str = "float32"

    @property
    def dynamic_batch(self) -> bool:
        return not self.shape or self.shape[0] in (-1, None)


@dataclass
class Timing:
    """Milliseconds of the parts of one call; None where a backend cannot separate a part."""

    preprocess_ms: float = 0.0
    h2d_ms: Optional[float] = None
    compute_ms: float = 0.0
    d2h_ms: Optional[float] = None
    total_ms: float = 0.0

    def as_dict(self) -> Dict[str, Optional[float]]:
        return dict(self.__dict__)


class Runner(abc.ABC):
    """Base class of all runners.

    Args:
        artifact: Path of the model/engine file; its ``<artifact>.json`` metadata gives the
            classes and the preprocessing.
        meta: Metadata, if already read.
        warmup: Inference calls made by ``activate()`` before the first timed call.
    """

    backend = "base"

    def __init__(self, artifact: str | Path, meta: Optional[Dict[str, Any]] = None, warmup: int = 2):
        self.artifact = Path(artifact)
        self.meta = meta if meta is not None else read_meta(self.artifact)
        if not isinstance(self.meta, dict):
            raise EdgeError(f"metadata of {self.artifact} must be a JSON object")
        self.classes: List[str] = classes_of(self.meta)
        #: The model's preprocessing (done on the host, or inside the graph for uint8-tile artifacts).
        self.preprocess: Preprocess = preprocess_of(self.meta)
        #: ``float`` (the artifact takes preprocessed float32 batches) or ``uint8_tiles`` (uint8 gray
        #: tiles of :attr:`tile` size; resize and scaling run in the graph).
        self.input_form, self.tile = input_form(self.meta)
        #: What the host does to images before :meth:`infer`: the preprocessing, or packing tiles.
        self.host_input = (self.preprocess if self.input_form == "float"
                           else TileInput(self.tile[0], self.tile[1], self.preprocess.interpolation))
        check_meta(self.meta, str(self.artifact), self.input_shape)
        check_class_order(self.artifact, self.meta)
        self.warmup = warmup
        self.is_active = False
        self.last_timing = Timing()
        #: Open-set score (N,) of the last :meth:`infer` call when the model has an ``ood_score`` output
        #: (see :mod:`edge.ood`), else None.
        self.last_score: Optional[np.ndarray] = None

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Load the artifact and run ``warmup`` calls on zeros."""
        if self.is_active:
            return
        self.activate_impl()
        self.is_active = True
        try:
            # the model's own shapes against the metadata, before anything runs
            check_model_io(str(self.artifact), self.input_spec.shape, self.output_spec.shape, self.meta,
                           self.input_shape)
            if self.warmup:
                dummy = np.zeros((1, *self.input_shape), self.input_dtype)
                try:
                    for _ in range(self.warmup):
                        out = self.infer(dummy)
                except EdgeError:
                    raise
                except Exception as e:  # a backend's own error type: the metadata does not fit the model
                    raise EdgeError(f"{self.artifact}: warm-up inference with the metadata's input shape "
                                    f"{(1, *self.input_shape)} failed: {' '.join(str(e).split())[:300]}") from None
                if out.ndim != 2 or out.shape[1] != len(self.classes):  # dynamic output width: check the result
                    raise EdgeError(f"{self.artifact}: the model gives {tuple(out.shape[1:])} scores per input but "
                                    f"its metadata names {len(self.classes)} classes")
        except BaseException:
            self.deactivate()
            raise

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def deactivate_impl(self) -> None: ...

    # -- specs -------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple:
        """(H, W, C) of one input of the artifact: the model size (float) or the tile size (uint8 tiles)."""
        return tuple(self.host_input.input_shape)

    @property
    def input_dtype(self):
        """numpy dtype of the artifact's input (float32, or uint8 for uint8 tiles)."""
        return np.float32 if self.input_form == "float" else np.uint8

    @property
    @abc.abstractmethod
    def input_spec(self) -> TensorSpec: ...

    @property
    @abc.abstractmethod
    def output_spec(self) -> TensorSpec: ...

    @property
    def max_batch(self) -> Optional[int]:
        """Largest batch one call accepts (None: unbounded)."""
        return None if self.input_spec.dynamic_batch else int(self.input_spec.shape[0])

    # -- inference ---------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a batch in the artifact's input form.

        Float artifacts take a preprocessed float32 batch (N, H, W, C); uint8-tile artifacts a
        uint8 batch (N, tile_h, tile_w, 1) (see :attr:`input_form`, :attr:`host_input`).
        Batches larger than :attr:`max_batch` (or a fixed batch of 1) are run in chunks.
        """
        out, scores, timing = self._run(batch, self.infer_impl)
        self.last_timing = timing
        self.last_score = scores
        return out

    @property
    def lanes(self) -> int:
        """Batches this runner can classify at once, each from its own thread with :meth:`infer_lane`.

        1 here (one batch at a time); the ONNX Runtime CPU runner has one lane per core, each
        running a whole batch on one intra-op thread, so a caller with several batches in hand
        (the capture daemon, :meth:`infer_batches`) keeps every core busy without the per-batch
        join of a split batch.
        """
        return 1

    def infer_lane(self, batch: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities (N, K) and open-set scores (N,) (None without a score output) of one batch.

        Unlike :meth:`infer` it writes no state of the runner (:attr:`last_timing`,
        :attr:`last_score`), so up to :attr:`lanes` threads may call it at once.
        """
        out, scores, _ = self._run(batch, self.lane_impl)
        return out, scores

    def lane_impl(self, batch: np.ndarray):
        """One chunk on one lane (as :meth:`infer_impl` returns it); backends with lanes override it."""
        return self.infer_impl(batch)

    def _run(self, batch: np.ndarray, impl) -> Tuple[np.ndarray, Optional[np.ndarray], Timing]:
        """``impl`` over ``batch`` in chunks of at most :attr:`max_batch`: (probs, scores or None, timing)."""
        if not self.is_active:
            raise EdgeError(f"{type(self).__name__} is not active: use it as a context manager")
        batch = self.check_batch(batch)
        mb = self.max_batch
        t0 = time.perf_counter()
        scores: List[np.ndarray] = []
        if mb is None or len(batch) <= mb:
            out, timing = impl(batch)
            out = _with_score(out, scores)
        else:
            parts, timing = [], Timing()
            for i in range(0, len(batch), mb):
                o, t = impl(batch[i:i + mb])
                parts.append(_with_score(o, scores))
                timing.compute_ms += t.compute_ms
                for k in ("h2d_ms", "d2h_ms"):
                    if getattr(t, k) is not None:
                        setattr(timing, k, (getattr(timing, k) or 0.0) + getattr(t, k))
            out = np.concatenate(parts)
        timing.total_ms = (time.perf_counter() - t0) * 1e3
        return out, (np.concatenate(scores) if scores else None), timing

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as the contiguous array the artifact takes, or a one-line error."""
        if self.input_form == "float":
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        else:
            batch = np.asarray(batch)
            if batch.dtype != np.uint8:
                raise EdgeError(f"{self.artifact.name} takes uint8 tiles (preprocessing in the graph), got a "
                                f"{batch.dtype} batch: pass the raw tiles, or use infer_images")
            if batch.ndim == 3:
                batch = batch[..., None]
            batch = np.ascontiguousarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise EdgeError(f"input batch has shape {batch.shape}, the model takes (N, {', '.join(map(str, self.input_shape))})")
        return batch

    def infer_batches(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Probabilities of each batch of a stream, in order (backends may pipeline them).

        The TensorRT runner overrides this with its double-buffered path (the next upload
        overlaps the current compute); here it is :meth:`infer` per batch.
        """
        for b in batches:
            yield self.infer(b)

    def infer_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Prepare uint8 images the artifact's way (:attr:`host_input`), then :meth:`infer`."""
        t0 = time.perf_counter()
        batch = self.host_input(images)
        pre = (time.perf_counter() - t0) * 1e3
        out = self.infer(batch)
        self.last_timing.preprocess_ms = pre
        self.last_timing.total_ms += pre
        return out

    @abc.abstractmethod
    def infer_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        """Run one chunk (len <= max_batch); return probabilities and the timing split.

        A model with an open-set score output returns ``((probs, score), timing)`` instead; :meth:`infer`
        keeps the probabilities as its result and the score in :attr:`last_score`.
        """


def _with_score(out, scores: list) -> np.ndarray:
    """``out`` = probs, or (probs, score): append the score (N,) to ``scores``, return probs."""
    if isinstance(out, tuple):
        probs, score = out
        scores.append(np.asarray(score, dtype=np.float32).reshape(len(probs)))
        return probs
    return out
