"""The training recipes behind :func:`train.train_model` and the model folder they write.

The output folder gets ``model.keras``, ``model.keras.json`` (metadata), ``preprocess.json``,
``classes.json``, ``split.csv``, ``report.json`` (test-split metrics, see :mod:`train.evaluate`),
``confusion_matrix.png``, ``curves.png`` and ``history.csv`` (the per-epoch log). It is written to a
staging folder and moved into place only when training and evaluation succeeded.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge.errors import EdgeError

#: compact's default augmentation: recipe v5 = the light geometric preset + line-capture corruptions
#: (chosen on the corrupted validation split over seeds 42-44, docs/results/recipe-trials.md "Trial 3");
#: ``--augment light`` is recipe v4.
COMPACT_DEFAULT_AUGMENT = "line"

log = logging.getLogger(__name__)

#: compact: epochs of linear learning-rate warm-up before the cosine decay.
COMPACT_WARMUP_EPOCHS = 3
#: compact: label smoothing of the cross-entropy (softer targets; steadier validation loss).
COMPACT_LABEL_SMOOTHING = 0.1
#: mobilenetv2 / resnet50v2 with ``--weights none``: the from-scratch recipe (train.models.build_scratch) trains
#: the whole network with compact's schedule (warm-up, cosine, label smoothing) and augmentation; these are
#: its defaults (docs/results/train.md, "Backbones from scratch").
SCRATCH_EPOCHS = 60
SCRATCH_LR = 2e-3
SCRATCH_AUGMENT = "line"


class EpochLog:
    """Keras callback factory: one log line per epoch (and the phase), for logs and non-TTY runs."""

    @staticmethod
    def make(phase: str, total: int):
        import keras

        class _Log(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                lr = self.model.optimizer.learning_rate
                try:
                    lr = float(np.asarray(lr))
                except TypeError:
                    lr = float("nan")
                keys = ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc")
                parts = " ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)
                log.info("[%s] epoch %d/%d %s lr %.2e %.1fs", phase, epoch + 1, total, parts, lr,
                         time.perf_counter() - self.t0)

        return _Log()


def plot_curves(history: List[Dict], path, phase_starts: List[int]) -> None:
    """Loss, accuracy and AUC per epoch (train and validation), phases marked; saved atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.fsutil import atomic_path

    ep = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key in zip(axes, ("loss", "accuracy", "auc")):
        for prefix, style in (("", "-"), ("val_", "--")):
            vals = [h.get(prefix + key, np.nan) for h in history]
            ax.plot(ep, vals, style, label=("val " if prefix else "train ") + key)
        for s in phase_starts[1:]:
            ax.axvline(s + 0.5, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def compile_model(model, optimizer, label_smoothing: float = 0.0):
    """Compile with the recipes' loss (cross-entropy, optional label smoothing) and metrics (accuracy, AUC)."""
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])


def seed_everything(seed: int) -> None:
    """Keras, NumPy and Python seeds, and deterministic TensorFlow ops where this TensorFlow has them."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF
        pass


@dataclass
class Fit:
    """The per-epoch history and the phases of one model's training (shared by every phase)."""

    model: Any
    feed: Any
    val: tuple
    patience: int
    history: List[Dict] = field(default_factory=list)
    phase_starts: List[int] = field(default_factory=list)
    phases: List[Dict] = field(default_factory=list)

    def run(self, phase: str, optimizer, n_epochs: int, label_smoothing: float = 0.0, t0=None) -> None:
        """Compile and fit one phase with early stopping on the validation loss; record it.

        Args:
            phase: Its name in the logs, ``history.csv`` and the report.
            optimizer: The Keras optimizer.
            n_epochs: Maximum epochs.
            label_smoothing: Of the cross-entropy.
            t0: Start time the phase's ``seconds`` count from (default: now).
        """
        import keras

        from train.models import count_params

        compile_model(self.model, optimizer, label_smoothing)
        cbs = [keras.callbacks.EarlyStopping("val_loss", patience=self.patience, restore_best_weights=True),
               EpochLog.make(phase, n_epochs)]
        self.phase_starts.append(len(self.history))
        t0 = time.perf_counter() if t0 is None else t0
        h = self.model.fit(self.feed, validation_data=self.val, epochs=n_epochs, callbacks=cbs,
                           verbose=1 if sys.stdout.isatty() else 0)
        n = len(h.history["loss"])
        self.history.extend({key: float(v[i]) for key, v in h.history.items()} for i in range(n))
        best = int(np.argmin(h.history["val_loss"]))
        self.phases.append({"phase": phase, "epochs_run": n, "best_epoch": best + 1,
                            "best_val_loss": float(h.history["val_loss"][best]),
                            "best_val_accuracy": float(h.history["val_accuracy"][best]),
                            "seconds": round(time.perf_counter() - t0, 1),
                            "optimizer": type(self.model.optimizer).__name__,
                            "trainable_params": count_params(self.model)["trainable"]})


@dataclass
class Recipe:
    """The settings of one ``edge-train --model`` run after the defaults of its architecture."""

    cfg: Any
    spec: Any
    weights: Any
    prep: Any
    epochs: int
    ft_epochs: int
    patience: int
    augment: Any
    lr_scale: float = 1.0
    distribute_info: Any = None
    scratch: bool = False

    @classmethod
    def of(cls, cfg, lr_scale: float = 1.0, distribute_info=None) -> "Recipe":
        """Resolve the defaults; a missing weights file or an untrainable base fails before the data is read."""
        from edge.errors import param
        from train.augment import Augment
        from train.models import check_pretrained, default_preprocess, from_scratch, resolve_weights, spec_of

        spec = spec_of(cfg.model)
        weights = cfg.weights if cfg.weights is not None else spec.weights
        resolve_weights(weights)   # a missing weights file, for any model (compact too), before the data is read
        check_pretrained(cfg.model, weights)
        scratch = from_scratch(cfg.model, weights)
        if cfg.label_smoothing is not None and not (scratch or cfg.model == "compact"):
            raise EdgeError(f"{param('label_smoothing')} applies to compact and the from-scratch recipe "
                            f"({param('weights')} none); {cfg.model}'s two-phase protocol trains without it")
        if scratch and cfg.fine_tune_epochs is not None:
            raise EdgeError(f"{param('fine_tune_epochs')} applies to the two-phase protocol of pretrained weights; "
                            f"{cfg.model} with {param('weights')} none trains end to end ({param('epochs')} only)")
        one_phase = scratch or cfg.model == "compact"
        epochs = cfg.epochs or (SCRATCH_EPOCHS if scratch else spec.epochs)
        # one phase: 20, so the noisy validation loss of the high-rate epochs cannot stop the cosine schedule early.
        patience = cfg.patience if cfg.patience is not None else (20 if one_phase else 5)
        augment = cfg.augment or (COMPACT_DEFAULT_AUGMENT if cfg.model == "compact"
                                  else SCRATCH_AUGMENT if scratch else "seeds")
        return cls(cfg, spec, weights, default_preprocess(cfg.model, cfg.input_size), epochs,
                   cfg.fine_tune_epochs or epochs, patience, Augment.preset(augment), lr_scale, distribute_info,
                   scratch)

    @property
    def one_phase(self) -> bool:
        """compact and the from-scratch backbones: one phase, warm-up + cosine (not the two-phase protocol)."""
        return self.scratch or self.cfg.model == "compact"

    @property
    def label_smoothing(self) -> float:
        """The one-phase recipes' label smoothing: the config's, else :data:`COMPACT_LABEL_SMOOTHING`."""
        ls = self.cfg.label_smoothing
        return COMPACT_LABEL_SMOOTHING if ls is None else float(ls)

    @property
    def lr(self) -> float:
        default = 2e-3 if self.cfg.model == "compact" else SCRATCH_LR if self.scratch else 1e-3
        return (self.cfg.lr or default) * self.lr_scale


def load_parts(cfg, prep):
    """The dataset, its split and the resized uint8 arrays of each part: ``(ds, split, parts, arrays)``."""
    from edge.data import load_dataset, load_images, make_split, read_split_csv

    ds = load_dataset(cfg.data)
    if len(ds.classes) < 2:  # nothing to tell apart: refused before any training
        raise EdgeError(f"{ds.root} has {len(ds.classes)} class ({', '.join(ds.classes) or 'none'}); "
                        "a classifier needs at least 2 classes")
    split = read_split_csv(cfg.split_file, ds) if cfg.split_file else make_split(ds, seed=cfg.split_seed)
    parts = {w: ds.subset(split, w) for w in ("train", "val", "test")}
    log.info("edge-train: %s on %s (%s, %d images, %d classes; train %d / val %d / test %d), input %dx%dx%d, "
             "seed %d", cfg.model, ds.root, ds.layout, len(ds), len(ds.classes), len(parts["train"]),
             len(parts["val"]), len(parts["test"]), prep.height, prep.width, prep.channels, cfg.seed)

    def arrays(d):
        imgs = load_images(d, progress=sys.stderr.isatty())
        return np.stack([prep.resize(im) for im in imgs]), d.labels

    return ds, split, parts, {w: arrays(parts[w]) for w in ("train", "val", "test")}


def fit_recipe(r: Recipe, fit: Fit, base, steps: int) -> None:
    """Run the phases of the architecture's recipe on ``fit``."""
    import keras

    from train.models import set_phase

    if r.one_phase:
        # compact and the from-scratch backbones. Linear warm-up, then cosine decay to zero over the remaining
        # epochs: with 40 steps per epoch the validation loss is too noisy for ReduceLROnPlateau, which halved
        # the rate on noise and left seeds 43/44 under-trained (docs/results/train.md, code-choices.md).
        warm = min(COMPACT_WARMUP_EPOCHS, max(r.epochs - 1, 0))
        sched = keras.optimizers.schedules.CosineDecay(
            0.0 if warm else r.lr, decay_steps=max(steps * (r.epochs - warm), 1),
            warmup_target=r.lr if warm else None, warmup_steps=steps * warm)
        fit.run("scratch" if r.scratch else "train", keras.optimizers.Adam(sched), r.epochs,
                label_smoothing=r.label_smoothing)
    else:
        decay = dict(decay_steps=steps, decay_rate=0.94)
        set_phase(base, 1)
        fit.run("phase1", keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(r.lr, **decay)), r.epochs)
        set_phase(base, 2)
        opt2 = keras.optimizers.Adamax if r.cfg.model == "nasnetmobile" else keras.optimizers.Adam
        fit.run("phase2", opt2(keras.optimizers.schedules.ExponentialDecay(r.lr / 10, **decay)), r.ft_epochs)


def training_block(r: Recipe, fit: Fit, params: Dict, parts: Dict, wall: float) -> Dict:
    """The ``training`` block of ``report.json``."""
    from edge.metadata import tool_versions
    from train.models import COMPACT_DEFAULT_POOL

    cfg, compact = r.cfg, r.cfg.model == "compact"
    return {
        "architecture": cfg.model, "weights": str(r.weights), "seed": cfg.seed,
        "recipe": "compact" if compact else "from-scratch" if r.scratch else "two-phase",
        "split_seed": cfg.split_seed if not cfg.split_file else None,
        "input": list(r.prep.input_shape), "pool": (cfg.pool or COMPACT_DEFAULT_POOL) if compact else None,
        "params": params, "batch_size": cfg.batch_size,
        "max_epochs": r.epochs, "fine_tune_epochs": None if r.one_phase else r.ft_epochs,
        "patience": r.patience, "lr": r.lr, "augment": r.augment.describe() if r.augment else None,
        "schedule": ({"warmup_epochs": COMPACT_WARMUP_EPOCHS, "decay": "cosine",
                      "label_smoothing": r.label_smoothing} if r.one_phase
                     else {"decay": "exponential", "rate_per_epoch": 0.94}),
        "phases": fit.phases,
        "epochs_run": len(fit.history), "wall_time_s": round(wall, 1),
        "cpu_count": os.cpu_count(), "tools": tool_versions(),
        "distribute": r.distribute_info,
        "counts": {w: len(parts[w]) for w in parts},
    }


def train(cfg, lr_scale: float = 1.0, distribute_info=None) -> Dict:
    """Train as ``cfg`` (a validated :class:`train.TrainConfig`) says and write its model folder; return the report.

    Args:
        cfg: The config (``batch_size`` already the global batch under a strategy).
        lr_scale: Learning-rate factor (the replica count under ``distribute="mirrored"``).
        distribute_info: The strategy block written to the report (None: one device).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge.fsutil import staged_dir
    from train.augment import make_feed
    from train.evaluate import metrics_report, summary_line
    from train.models import build, count_params

    r = Recipe.of(cfg, lr_scale, distribute_info)
    t_start = time.perf_counter()
    ds, split, parts, arr = load_parts(cfg, r.prep)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = arr["train"], arr["val"], arr["test"]
    seed_everything(cfg.seed)
    k = len(ds.classes)
    onehot = np.eye(k, dtype=np.float32)
    feed = make_feed(x_tr, onehot[y_tr], r.prep, cfg.batch_size, r.augment, cfg.seed)
    val = (r.prep(x_va), onehot[y_va])
    if distribute_info:
        from train.distribute import even_validation, sync_batchnorm

        val = even_validation(val, distribute_info["replicas"])
    model, base = build(cfg.model, k, r.prep, r.weights, pool=cfg.pool)
    if distribute_info:  # BN statistics of the global batch
        sync_batchnorm(model)
    params = count_params(model)
    with staged_dir(cfg.out, force=cfg.force) as stage:
        fit = Fit(model, feed, val, r.patience)
        fit_recipe(r, fit, base, len(feed))
        rep = metrics_report(y_te, model.predict(r.prep(x_te), batch_size=64, verbose=0), ds.classes)
        wall = time.perf_counter() - t_start
        rep.update({"model": str(Path(cfg.out) / "model.keras"), "data": str(cfg.data), "split": "test",
                    "split_file": str(Path(cfg.out) / "split.csv"), "backend": "keras",
                    "training": training_block(r, fit, params, parts, wall)})
        write_model_folder(stage, model, r.prep, ds, split, rep, {
            "input": {"name": "input", "shape": [-1, *r.prep.input_shape], "dtype": "float32", "layout": "NHWC"},
            "output": {"name": "probs", "shape": [-1, k]}, "source_model": None,
            "training": {"architecture": cfg.model, "weights": str(r.weights), "seed": cfg.seed,
                         "params": params["total"], "test_accuracy": rep["accuracy"]},
        }, fit, f"{cfg.model} seed {cfg.seed}: test accuracy {rep['accuracy']:.2%}")
    log.info("edge-train: %s, %.3f M params, %d epochs in %.0f s -> %s", summary_line(rep), params["total"] / 1e6,
             len(fit.history), wall, cfg.out)
    return rep


def write_model_folder(stage: Path, model, prep, ds, split, rep: Dict, meta: Dict, fit: Fit, title: str) -> None:
    """Write a trained model's folder (edge-train and edge-train --init write the same files).

    Args:
        stage: The staged output folder.
        model: The Keras model.
        prep: Its :class:`edge.preprocess.Preprocess`.
        ds: The dataset (its classes and files).
        split: The split of ``ds`` written to ``split.csv``.
        rep: The evaluation report (``report.json``).
        meta: The metadata keys that differ between callers (input, output, source_model, training).
        fit: The training's history and phases (``history.csv``, ``curves.png``).
        title: The confusion matrix's title.
    """
    from edge.data import SPLIT_CSV, write_split_csv
    from edge.fsutil import write_json
    from edge.metadata import ArtifactMeta, tool_versions, write_meta
    from train.evaluate import plot_confusion

    model.save(stage / "model.keras")
    prep.save(stage / "preprocess.json")
    write_json(stage / "classes.json", ds.classes)
    write_split_csv(stage / SPLIT_CSV, ds, split)
    write_json(stage / "report.json", rep)
    write_meta(stage / "model.keras", {"artifact": "model.keras", **ArtifactMeta.keras(
        list(ds.classes), prep, calibration=None, drift_gate=None, **meta, tools=tool_versions()).to_dict()})
    _write_history(stage / "history.csv", fit.history, fit.phase_starts, fit.phases)
    plot_confusion(rep, stage / "confusion_matrix.png", title)
    plot_curves(fit.history, stage / "curves.png", fit.phase_starts)


def _write_history(path, history, phase_starts, phases) -> None:
    import csv

    from edge.fsutil import atomic_path

    keys = sorted({k for h in history for k in h})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "phase", *keys])
        for i, h in enumerate(history):
            ph = max(j for j, s in enumerate(phase_starts) if s <= i)
            w.writerow([i + 1, phases[ph]["phase"], *(h.get(k, "") for k in keys)])
