"""The Python API of the train stage: :func:`train_model` and :func:`evaluate_model`.

Example::

    from train import TrainConfig, train_model, EvalConfig, evaluate_model

    res = train_model(TrainConfig(data="data/NEU-CLS", model="compact", seed=42, out="runs/compact-s42"))
    print(res.model, res.report["accuracy"])
    ev = evaluate_model(EvalConfig(model=str(res.model), data="data/NEU-CLS", split="test"))
    print(ev.summary)

``edge-train`` and ``edge-eval`` turn their flags (and ``--config FILE``) into these configs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from train.config import EvalConfig, TrainConfig


@dataclass
class TrainResult:
    """What a training wrote.

    Attributes:
        out: The model folder.
        report: Its ``report.json`` (metrics on the test split, or on the held-out part for ``init``).
    """

    out: Path
    report: Dict[str, Any]

    @property
    def model(self) -> Path:
        """The trained ``model.keras``."""
        return self.out / "model.keras"

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])


@dataclass
class EvalResult:
    """An evaluation: ``report`` is the ``--json`` report (:func:`train.evaluate.metrics_report` plus
    ``model``, ``data``, ``split``, ``split_file``, ``backend`` and, with ``ood``, the ``ood`` block)."""

    report: Dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])

    @property
    def summary(self) -> str:
        """The one-line summary edge-eval prints."""
        from train.evaluate import summary_line

        return summary_line(self.report)


def train_model(config: TrainConfig) -> TrainResult:
    """Train (``config.model``) or fine-tune (``config.init``) a classifier and write its model folder.

    Args:
        config: What to train; validated first (nothing is read or written before).

    Returns:
        The :class:`TrainResult`.

    Raises:
        edge.errors.EdgeError: bad input (one line), before anything is written.
    """
    config.validate()
    if config.init is not None:
        from train.finetune import finetune

        return TrainResult(Path(config.out), finetune(config))
    from train.distribute import distributed
    from train.recipe import train

    run = copy.copy(config)  # distributed() scales the batch of its own copy, not the caller's config
    with distributed(run):
        rep = train(run, run.lr_scale, run.distribute_info)
    return TrainResult(Path(config.out), rep)


def evaluate_model(config: EvalConfig) -> EvalResult:
    """Evaluate an artifact on one split of a dataset; write ``config.json`` / ``config.plots`` when set.

    Args:
        config: What to evaluate; validated first (the outputs are checked before the run).

    Returns:
        The :class:`EvalResult`.
    """
    from edge.errors import EdgeError
    from train.evaluate import evaluate, plot_confusion

    config.validate()
    rep = evaluate(config.model, config.data, config.split, config.split_file, config.batch,
                   progress=config.progress, ood=config.ood)
    if config.json:
        from edge.fsutil import write_json

        write_json(config.json, rep)
    if config.plots:
        try:
            plot_confusion(rep, Path(config.plots) / "confusion_matrix.png")
        except OSError as e:
            raise EdgeError(f"cannot write the plot into {config.plots}: {e.strerror or e}"
                            + (f" (the report is in {config.json})" if config.json else "")) from None
    return EvalResult(rep)


__all__ = ["EvalResult", "TrainResult", "evaluate_model", "train_model"]
