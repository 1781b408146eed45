"""``edge-train``: train a NEU defect classifier and write a model folder every later stage reads.

Usage::

    edge-train --data data/NEU-CLS --model compact --seed 42 --out runs/compact-s42
    edge-train --data data/NEU-CLS --model mobilenetv2 --weights ~/mobilenet_v2_notop.h5 --out runs/mobilenetv2
    edge-train --init models/neu-compact/model.keras --data my_tiles/ --out runs/my-line   # fine-tune

The output folder gets ``model.keras``, ``model.keras.json`` (metadata), ``preprocess.json``,
``classes.json``, ``split.csv``, ``report.json`` (test-split metrics, see :mod:`train.evaluate`),
``confusion_matrix.png``, ``curves.png`` and ``history.csv`` (the per-epoch log). It is written to a
staging folder and moved into place only when training and evaluation succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.errors import EdgeError, cli_entry
from edge.log import add_log_flags
from train.models import COMPACT_DEFAULT_POOL, COMPACT_POOLS, MODELS, spec_of

#: compact: epochs of linear learning-rate warm-up before the cosine decay.
COMPACT_WARMUP_EPOCHS = 3
#: compact: label smoothing of the cross-entropy (softer targets; steadier validation loss).
COMPACT_LABEL_SMOOTHING = 0.1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder (NEU-CLS flat, folder per class, NEU-DET)")
    ap.add_argument("--model", choices=MODELS, help="architecture to train (not with --init)")
    ap.add_argument("--init", metavar="MODEL.keras",
                    help="fine-tune this trained model on --data (folder per class) instead: known classes keep "
                         "their weights, new ones are added, early layers frozen, strong augmentation, early "
                         "stopping on a held-out part of the data (train/finetune.py)")
    ap.add_argument("--holdout", type=float, default=None,
                    help="--init: share of each class held out for early stopping (default 0.2, at least 1)")
    ap.add_argument("--freeze", type=int, default=None,
                    help="--init: freeze the first N weighted layers (default: compact's stem and blocks 1-2)")
    ap.add_argument("--weights", default=None,
                    help="imagenet (default of the backbones; needs the network), a local weights file, or none "
                         "(compact only, its default: the backbones' two-phase protocol needs a pretrained base)")
    ap.add_argument("--seed", type=int, default=42, help="seed of initialisation, shuffling and augmentation")
    ap.add_argument("--split-seed", type=int, default=42,
                    help="seed of the 70/15/15 split (kept at 42 so seeds share one test set)")
    ap.add_argument("--split-file", help="reuse this split.csv instead of making the split")
    ap.add_argument("--epochs", type=int, default=None,
                    help="maximum epochs (per phase for the two-phase backbones); default by model")
    ap.add_argument("--fine-tune-epochs", type=int, default=None, help="maximum epochs of phase 2 (default --epochs)")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience on val loss")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=None,
                    help="model input height = width (default: compact 160, backbones 224)")
    ap.add_argument("--augment", default=None, choices=["seeds", "light", "line", "line-strong", "none"],
                    help="augmentation preset (default: compact light, backbones seeds; line = light + line-capture "
                         "corruptions: noise, blur along the strip, defocus, exposure, uneven lighting, contrast, "
                         "JPEG, scale, each p 0.2 at severity 1-3 (bench/corruptions.py); line-strong = seeds + "
                         "corruptions p 0.3 at severity 1-4)")
    ap.add_argument("--pool", default=None, choices=list(COMPACT_POOLS),
                    help="compact: global pooling before the classifier, avgmax (average and max, "
                         "one Dense each; default, recipe v4) or avg (average only, recipe v2)")
    ap.add_argument("--lr", type=float, default=None, help="initial learning rate (phase 1)")
    ap.add_argument("--distribute", default="none", choices=["none", "mirrored"],
                    help="mirrored: tf.distribute.MirroredStrategy over the GPUs here; --batch-size is then per "
                         "replica and the learning rate scales linearly with the replicas (train/distribute.py)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    return add_log_flags(ap)


def _check_args(args) -> None:
    if (args.model is None) == (args.init is None):
        raise EdgeError("give either --model ARCH (train) or --init MODEL.keras (fine-tune a trained model)")
    if args.init is not None:
        for name in ("pool", "weights", "input_size", "fine_tune_epochs"):
            if getattr(args, name) is not None:
                raise EdgeError(f"--{name.replace('_', '-')} does not apply to --init (the model keeps its own)")
    elif args.holdout is not None or args.freeze is not None:
        raise EdgeError("--holdout and --freeze apply to --init only")
    for name in ("epochs", "fine_tune_epochs", "patience", "input_size"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "patience" else 1):
            raise EdgeError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.pool not in (None, "avg") and args.model != "compact":
        raise EdgeError(f"--pool {args.pool} applies to compact only ({args.model} keeps the seeds' GAP head)")
    if args.batch_size < 1:
        raise EdgeError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.lr is not None and not args.lr > 0:
        raise EdgeError(f"--lr must be > 0, got {args.lr}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise EdgeError(f"output folder {out} already exists (use --force to replace it)")


class EpochLog:
    """Keras callback factory: one log line per epoch (and the phase), for logs and non-TTY runs."""

    @staticmethod
    def make(phase: str, total: int, stream=sys.stdout):
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
                print(f"[{phase}] epoch {epoch + 1}/{total} {parts} lr {lr:.2e} "
                      f"{time.perf_counter() - self.t0:.1f}s", file=stream, flush=True)

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


def _compile(model, optimizer, label_smoothing: float = 0.0):
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])


def train(args) -> Dict:
    """Run one training as the parsed CLI arguments say; returns the report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge.data import load_dataset, load_images, make_split, read_split_csv
    from edge.fsutil import staged_dir
    from edge.metadata import tool_versions
    from train.augment import Augment, make_feed
    from train.evaluate import metrics_report, summary_line
    from train.models import (build, check_pretrained, count_params, default_preprocess, resolve_weights,
                              set_phase)

    spec = spec_of(args.model)
    weights = args.weights if args.weights is not None else spec.weights
    resolve_weights(weights)  # a missing weights file fails before the data is read
    check_pretrained(args.model, weights)
    prep = default_preprocess(args.model, args.input_size)
    epochs = args.epochs or spec.epochs
    ft_epochs = args.fine_tune_epochs or epochs
    # compact: 20, so the noisy validation loss of the high-rate epochs cannot stop the cosine schedule early.
    patience = args.patience if args.patience is not None else (20 if args.model == "compact" else 5)
    augment = Augment.preset(args.augment or ("light" if args.model == "compact" else "seeds"))

    t_start = time.perf_counter()
    ds = load_dataset(args.data)
    if len(ds.classes) < 2:  # nothing to tell apart: refused before any training
        raise EdgeError(f"{ds.root} has {len(ds.classes)} class ({', '.join(ds.classes) or 'none'}); "
                        "a classifier needs at least 2 classes")
    split = read_split_csv(args.split_file, ds) if args.split_file else make_split(ds, seed=args.split_seed)
    parts = {w: ds.subset(split, w) for w in ("train", "val", "test")}
    k = len(ds.classes)
    print(f"edge-train: {args.model} on {ds.root} ({ds.layout}, {len(ds)} images, {k} classes; "
          f"train {len(parts['train'])} / val {len(parts['val'])} / test {len(parts['test'])}), "
          f"input {prep.height}x{prep.width}x{prep.channels}, seed {args.seed}", flush=True)

    def arrays(d):
        imgs = load_images(d, progress=sys.stderr.isatty())
        return np.stack([prep.resize(im) for im in imgs]), d.labels

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays(parts[w]) for w in ("train", "val", "test"))

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF
        pass
    onehot = np.eye(k, dtype=np.float32)
    feed = make_feed(x_tr, onehot[y_tr], prep, args.batch_size, augment, args.seed)
    val = (prep(x_va), onehot[y_va])
    if getattr(args, "distribute_info", None):
        from train.distribute import even_validation

        val = even_validation(val, args.distribute_info["replicas"])
    model, base = build(args.model, k, prep, weights, pool=args.pool)
    if getattr(args, "distribute_info", None):  # --distribute: BN statistics of the global batch
        from train.distribute import sync_batchnorm

        sync_batchnorm(model)
    params = count_params(model)
    verbose = 1 if sys.stdout.isatty() else 0
    steps = len(feed)

    with staged_dir(args.out, force=args.force) as stage:
        history: List[Dict] = []
        phase_starts: List[int] = []
        phases = []

        def fit(phase_name, optimizer, n_epochs, extra_callbacks=(), label_smoothing=0.0):
            _compile(model, optimizer, label_smoothing)
            cbs = [keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True),
                   EpochLog.make(phase_name, n_epochs), *extra_callbacks]
            phase_starts.append(len(history))
            t0 = time.perf_counter()
            h = model.fit(feed, validation_data=val, epochs=n_epochs, callbacks=cbs, verbose=verbose)
            n = len(h.history["loss"])
            history.extend({key: float(v[i]) for key, v in h.history.items()} for i in range(n))
            best = int(np.argmin(h.history["val_loss"]))
            phases.append({"phase": phase_name, "epochs_run": n, "best_epoch": best + 1,
                           "best_val_loss": float(h.history["val_loss"][best]),
                           "best_val_accuracy": float(h.history["val_accuracy"][best]),
                           "seconds": round(time.perf_counter() - t0, 1),
                           "optimizer": type(model.optimizer).__name__,
                           "trainable_params": count_params(model)["trainable"]})

        if args.model == "compact":
            # Linear warm-up, then cosine decay to zero over the remaining epochs: with 40 steps per epoch
            # the validation loss is too noisy for ReduceLROnPlateau, which halved the rate on noise and
            # left seeds 43/44 under-trained (measured: 97.8 % / 98.9 % vs 99.6 % for seed 42).
            lr = (args.lr or 2e-3) * getattr(args, "lr_scale", 1.0)
            warm = min(COMPACT_WARMUP_EPOCHS, max(epochs - 1, 0))
            sched = keras.optimizers.schedules.CosineDecay(
                0.0 if warm else lr, decay_steps=max(steps * (epochs - warm), 1),
                warmup_target=lr if warm else None, warmup_steps=steps * warm)
            fit("train", keras.optimizers.Adam(sched), epochs, label_smoothing=COMPACT_LABEL_SMOOTHING)
        else:
            lr = (args.lr or 1e-3) * getattr(args, "lr_scale", 1.0)
            decay = dict(decay_steps=steps, decay_rate=0.94)
            set_phase(base, 1)
            fit("phase1", keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(lr, **decay)), epochs)
            set_phase(base, 2)
            ft_lr = lr / 10
            opt2 = keras.optimizers.Adamax if args.model == "nasnetmobile" else keras.optimizers.Adam
            fit("phase2", opt2(keras.optimizers.schedules.ExponentialDecay(ft_lr, **decay)), ft_epochs)

        probs = model.predict(prep(x_te), batch_size=64, verbose=0)
        rep = metrics_report(y_te, probs, ds.classes)
        wall = time.perf_counter() - t_start
        rep.update({
            "model": str(Path(args.out) / "model.keras"), "data": str(args.data), "split": "test",
            "split_file": str(Path(args.out) / "split.csv"), "backend": "keras",
            "training": {
                "architecture": args.model, "weights": str(weights), "seed": args.seed,
                "split_seed": args.split_seed if not args.split_file else None,
                "input": list(prep.input_shape), "pool": (args.pool or COMPACT_DEFAULT_POOL) if args.model == "compact" else None,
                "params": params, "batch_size": args.batch_size,
                "max_epochs": epochs, "fine_tune_epochs": ft_epochs if spec.two_phase else None,
                "patience": patience, "lr": lr, "augment": augment.describe() if augment else None,
                "schedule": ({"warmup_epochs": COMPACT_WARMUP_EPOCHS, "decay": "cosine",
                              "label_smoothing": COMPACT_LABEL_SMOOTHING} if args.model == "compact"
                             else {"decay": "exponential", "rate_per_epoch": 0.94}),
                "phases": phases,
                "epochs_run": len(history), "wall_time_s": round(wall, 1),
                "cpu_count": os.cpu_count(), "tools": tool_versions(),
                "distribute": getattr(args, "distribute_info", None),
                "counts": {w: len(parts[w]) for w in parts},
            },
        })
        write_model_folder(stage, model, prep, ds, split, rep, {
            "input": {"name": "input", "shape": [-1, *prep.input_shape], "dtype": "float32", "layout": "NHWC"},
            "output": {"name": "probs", "shape": [-1, k]}, "source_model": None,
            "training": {"architecture": args.model, "weights": str(weights), "seed": args.seed,
                         "params": params["total"], "test_accuracy": rep["accuracy"]},
        }, history, phase_starts, phases, f"{args.model} seed {args.seed}: test accuracy {rep['accuracy']:.2%}")

    print(f"edge-train: {summary_line(rep)}, {params['total'] / 1e6:.3f} M params, "
          f"{len(history)} epochs in {wall:.0f} s -> {args.out}", flush=True)
    return rep


def write_model_folder(stage: Path, model, prep, ds, split, rep: Dict, meta: Dict, history: List[Dict],
                       phase_starts: List[int], phases: List[Dict], title: str) -> None:
    """Write a trained model's folder (edge-train and edge-train --init write the same files).

    Args:
        stage: The staged output folder.
        model: The Keras model.
        prep: Its :class:`edge.preprocess.Preprocess`.
        ds: The dataset (its classes and files).
        split: The split of ``ds`` written to ``split.csv``.
        rep: The evaluation report (``report.json``).
        meta: The metadata keys that differ between callers (input, output, source_model, training).
        history: One dict of metrics per epoch.
        phase_starts: Epoch index where each training phase starts.
        phases: One dict per phase.
        title: The confusion matrix's title.
    """
    from edge.data import write_split_csv
    from edge.fsutil import write_json
    from edge.metadata import tool_versions, write_meta
    from train.evaluate import plot_confusion

    model.save(stage / "model.keras")
    prep.save(stage / "preprocess.json")
    write_json(stage / "classes.json", ds.classes)
    write_split_csv(stage / "split.csv", ds, split)
    write_json(stage / "report.json", rep)
    write_meta(stage / "model.keras", {
        "artifact": "model.keras", "format": "keras", "backend": "keras", "precision": "fp32",
        "classes": list(ds.classes), "preprocess": prep.to_dict(), "calibration": None, "drift_gate": None,
        **meta, "tools": tool_versions()})
    _write_history(stage / "history.csv", history, phase_starts, phases)
    plot_confusion(rep, stage / "confusion_matrix.png", title)
    plot_curves(history, stage / "curves.png", phase_starts)


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


@cli_entry("edge-train")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)
    if args.init is not None:
        if args.distribute != "none":
            raise EdgeError("--distribute applies to edge-train's recipes, not to --init fine-tuning")
        from train.finetune import finetune

        finetune(args)
    else:
        from train.distribute import distributed

        with distributed(args):
            train(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
