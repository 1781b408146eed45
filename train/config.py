"""The configs of :func:`train.train_model` and :func:`train.evaluate_model`, each validated in one place.

Errors name the parameters (``epochs``, ``batch_size``) with :func:`edge.errors.param`, so that a
command's user reads the flag (``--epochs``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge.errors import InputError, param

#: Augmentation presets of :meth:`train.augment.Augment.preset`.
AUGMENT_PRESETS = ("seeds", "light", "line", "line-strong", "none")
DISTRIBUTE_MODES = ("none", "mirrored")
EVAL_SPLITS = ("test", "val", "train", "all")


@dataclass
class TrainConfig:
    """One training (``model``) or fine-tuning (``init``) run; the fields are edge-train's flags.

    Attributes:
        data: Dataset folder (NEU-CLS flat, folder per class, NEU-DET).
        out: Output model folder (written staged: nothing half-written on failure).
        model: Architecture to train (``train.models.MODELS``); not with ``init``.
        init: A trained ``model.keras`` to fine-tune on ``data`` (folder per class) instead.
        holdout: ``init``: share of each class held out for early stopping (default 0.2, at least 1).
        freeze: ``init``: freeze the first N weighted layers (default: compact's stem and blocks 1-2).
        weights: ``imagenet``, a local weights file or ``none`` (default by architecture); ``none`` on
            mobilenetv2 / resnet50v2 selects the from-scratch recipe (one end-to-end phase).
        seed: Seed of initialisation, shuffling and augmentation.
        split_seed: Seed of the 70/15/15 split (kept at 42 so seeds share one test set).
        split_file: Reuse this ``split.csv`` instead of making the split.
        epochs: Maximum epochs (per phase for the two-phase backbones); default by model.
        fine_tune_epochs: Maximum epochs of phase 2 (default ``epochs``); not with the from-scratch recipe.
        patience: Early-stopping patience on the validation loss.
        batch_size: Images per step (per replica with ``distribute="mirrored"``).
        input_size: Model input height = width (default: compact 160, backbones 224).
        augment: Augmentation preset (:data:`AUGMENT_PRESETS`; default by model).
        pool: compact: ``avgmax`` (default) or ``avg``.
        lr: Initial learning rate (phase 1).
        label_smoothing: Of the cross-entropy, in [0, 1); compact and the from-scratch recipe only (default
            ``train.recipe.COMPACT_LABEL_SMOOTHING``, 0.1, recipe v5's).
        distribute: ``none`` or ``mirrored`` (``train/distribute.py``).
        force: Replace an existing output folder.
    """

    data: Optional[str] = None
    out: Optional[str] = None
    model: Optional[str] = None
    init: Optional[str] = None
    holdout: Optional[float] = None
    freeze: Optional[int] = None
    weights: Optional[str] = None
    seed: int = 42
    split_seed: int = 42
    split_file: Optional[str] = None
    epochs: Optional[int] = None
    fine_tune_epochs: Optional[int] = None
    patience: Optional[int] = None
    batch_size: int = 32
    input_size: Optional[int] = None
    augment: Optional[str] = None
    pool: Optional[str] = None
    lr: Optional[float] = None
    label_smoothing: Optional[float] = None
    distribute: str = "none"
    force: bool = False

    #: Fields holding paths (relative to a config file).
    PATHS = ("data", "out", "init", "weights", "split_file")

    def validate(self) -> "TrainConfig":
        """Check the whole config; return it.

        Args:

        Raises:
            InputError: one line naming the parameter (nothing is read or written before).
        """
        from train.models import COMPACT_POOLS, MODELS

        n = param
        for name in ("data", "out"):
            if not getattr(self, name):
                raise InputError(f"give {n(name)} (or {name} = ... in the config file)")
        if (self.model is None) == (self.init is None):
            raise InputError(f"give either {n('model')} ARCH (train) or {n('init')} MODEL.keras "
                            "(fine-tune a trained model)")
        for name, allowed in (("model", MODELS), ("augment", AUGMENT_PRESETS), ("pool", tuple(COMPACT_POOLS)),
                              ("distribute", DISTRIBUTE_MODES)):
            v = getattr(self, name)
            if v is not None and v not in allowed:
                raise InputError(f"{n(name)} must be one of {', '.join(allowed)}, got {v!r}")
        if self.init is not None:
            for name in ("pool", "weights", "input_size", "fine_tune_epochs", "label_smoothing"):
                if getattr(self, name) is not None:
                    raise InputError(f"{n(name)} does not apply to {n('init')} (the model keeps its own)")
        elif self.holdout is not None or self.freeze is not None:
            raise InputError(f"{n('holdout')} and {n('freeze')} apply to {n('init')} only")
        for name in ("epochs", "fine_tune_epochs", "patience", "input_size"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "patience" else 1):
                raise InputError(f"{n(name)} must be >= 1, got {v}")
        if self.pool not in (None, "avg") and self.model != "compact":
            raise InputError(f"{n('pool')} {self.pool} applies to compact only "
                            f"({self.model} keeps the seeds' GAP head)")
        if self.batch_size < 1:
            raise InputError(f"{n('batch_size')} must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"{n('lr')} must be > 0, got {self.lr}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"{n('label_smoothing')} must be in [0, 1), got {self.label_smoothing}")
        if self.holdout is not None and not 0.0 < self.holdout < 1.0:
            raise InputError(f"{n('holdout')} must be in (0, 1), got {self.holdout}")
        if self.init is not None and self.distribute != "none":
            raise InputError(f"{n('distribute')} applies to edge-train's recipes, not to {n('init')} fine-tuning")
        out = Path(self.out)
        if out.exists() and not self.force:
            raise InputError(f"output folder {out} already exists (use {n('force', True)} to replace it)")
        if self.init is not None and not Path(self.init).is_file():
            raise InputError(f"{n('init')} model {self.init} does not exist")
        return self


@dataclass
class EvalConfig:
    """One evaluation of an artifact on one split of a dataset; the fields are edge-eval's flags.

    Attributes:
        model: ``.keras`` / ``.onnx`` / engine with its metadata.
        data: Dataset folder (any layout of :func:`edge.data.load_dataset`).
        split: ``test``, ``val``, ``train`` or ``all``.
        split_file: ``split.csv``; default the one beside the model, else the default seed-42 split.
        batch: Images per inference call.
        ood: Folder of out-of-distribution images (labels ignored): adds the ``"ood"`` block.
        json: Write the report here.
        plots: Folder for ``confusion_matrix.png``.
        progress: Show a progress bar.
    """

    model: Optional[str] = None
    data: Optional[str] = None
    split: str = "test"
    split_file: Optional[str] = None
    batch: int = 64
    ood: Optional[str] = None
    json: Optional[str] = None
    plots: Optional[str] = None
    progress: bool = False

    PATHS = ("model", "data", "split_file", "ood", "json", "plots")

    def validate(self) -> "EvalConfig":
        """Check the config and that the outputs can be written (before the run, not after it); return it.

        Raises:
            InputError: one line naming the parameter.
        """
        from edge.fsutil import check_writable_dir

        n = param
        for name in ("model", "data"):
            if not getattr(self, name):
                raise InputError(f"give {n(name)} (or {name} = ... in the config file)")
        if self.split not in EVAL_SPLITS:
            raise InputError(f"{n('split')} must be one of {', '.join(EVAL_SPLITS)}, got {self.split!r}")
        if self.batch < 1:
            raise InputError(f"{n('batch')} must be >= 1, got {self.batch}")
        if self.json:
            check_writable_dir(Path(self.json).parent)
        if self.plots:
            if Path(self.plots).exists() and not Path(self.plots).is_dir():
                raise InputError(f"{n('plots')} {self.plots} is not a folder")
            check_writable_dir(self.plots)
        return self


__all__ = ["EvalConfig", "TrainConfig"]
