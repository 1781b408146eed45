"""``edge-train --init MODEL.keras --data MY_FOLDERS --out DIR``: adapt a trained model to a plant's own tiles.

The small-data recipe:

* classes: those of ``MY_FOLDERS`` (one folder per class). A class the model knows keeps its classifier
  weights; a new one (``no_defect``, ``oxide_scale`` ...) gets a fresh column; a known class absent from
  the data is dropped.
* early layers frozen: the stem and the first two blocks of ``compact`` (the first ``--freeze`` layers of
  other models), and every BatchNorm layer (statistics kept; ``--freeze 0`` trains everything, for a
  model trained from scratch); Adam at 3e-4;
* strong augmentation (``--augment line`` unless given: the light geometric warp and the line-capture
  corruptions, p 0.2 per kind at severity 1-3; with ``line-strong`` the NEU model's training accuracy fell
  to 17 % in the first epoch on 5 shots of the simulated camera, docs/results/shots.md);
* early stopping on a held-out part of the new data that it carves out (``--holdout``, default 20 %
  per class, at least one image) and reports (``report.json``: accuracy on it, its files in
  ``split.csv`` as ``val``).

The output folder is an ordinary model folder (``model.keras`` + metadata, ``preprocess.json``,
``classes.json``, ``split.csv`` with ``train``/``val`` rows, ``report.json``, ``history.csv``), so
``edge-convert``, ``edge-bench``, ``edge-eval`` and the daemon take it as they take edge-train's.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.errors import EdgeError

#: Layers of compact frozen by default: the stem and blocks 1-2 (edges and small textures).
COMPACT_FROZEN_PREFIXES = ("stem_", "block1_", "block2_")
DEFAULT_HOLDOUT = 0.2
DEFAULT_EPOCHS = 80
#: A held-out part of 1-2 images per class gives a noisy loss: stop late.
DEFAULT_PATIENCE = 20
DEFAULT_LR = 3e-4


def holdout_split(ds, fraction: float, seed: int) -> Dict[str, str]:
    """Per class, ``fraction`` of the images (at least one, at most all but one) as ``val``, the rest ``train``.

    Raises:
        EdgeError: a class with fewer than two images (nothing to train on or nothing to stop on).
    """
    rng = np.random.default_rng(seed)
    out: Dict[str, str] = {}
    for k, name in enumerate(ds.classes):
        idx = [i for i, s in enumerate(ds.samples) if s.label == k]
        if len(idx) < 2:
            raise EdgeError(f"class {name!r} has {len(idx)} image(s): fine-tuning needs at least 2 per class "
                            "(one to train on, one held out for early stopping)")
        n_val = min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        pick = set(rng.permutation(idx)[:n_val].tolist())
        for i in idx:
            out[ds.samples[i].rel(ds.root)] = "val" if i in pick else "train"
    return out


def adapt_head(model, old_classes: List[str], new_classes: List[str], seed: int = 0):
    """The model with its classifier rebuilt for ``new_classes``: known columns copied, new ones fresh.

    Handles the compact avgmax head (``logits_gap`` + ``logits_gmp`` summed, softmax ``probs``) and a
    softmax Dense ``probs`` (compact avg, the backbones).

    Returns:
        ``(new_model, {"kept": [...], "added": [...], "dropped": [...]})``.
    """
    import keras
    from keras import layers

    keep = [c for c in new_classes if c in old_classes]
    info = {"kept": keep, "added": [c for c in new_classes if c not in old_classes],
            "dropped": [c for c in old_classes if c not in new_classes]}
    rng = np.random.default_rng(seed)
    k = len(new_classes)

    def bias(b):
        return np.array([b[old_classes.index(c)] if c in old_classes else 0.0 for c in new_classes], np.float32)

    def remap(w):
        """Columns for new_classes: copied where known, random (the old columns' spread) where new."""
        scale = float(np.std(w)) if w.size else 0.05
        out = rng.normal(0.0, scale or 0.05, w.shape[:-1] + (k,)).astype(np.float32)
        for j, c in enumerate(new_classes):
            if c in old_classes:
                out[..., j] = w[..., old_classes.index(c)]
        return out

    names = {layer.name for layer in model.layers}
    if {"logits_gap", "logits_gmp", "logits", "probs"} <= names:
        la, lm = model.get_layer("logits_gap"), model.get_layer("logits_gmp")
        (wa, ba), (wm,) = la.get_weights(), lm.get_weights()
        na = layers.Dense(k, name="logits_gap")
        nm = layers.Dense(k, use_bias=False, name="logits_gmp")
        za, zm = na(la.input), nm(lm.input)
        na.set_weights([remap(wa), bias(ba)])
        nm.set_weights([remap(wm)])
        out = layers.Activation("softmax", name="probs")(layers.Add(name="logits")([za, zm]))
    else:
        try:
            p = model.get_layer("probs")
        except ValueError:
            raise EdgeError(f"{model.name} has no 'probs' classifier layer to adapt") from None
        if not isinstance(p, layers.Dense):
            raise EdgeError(f"{model.name}'s 'probs' layer is not a Dense classifier")
        w, b = p.get_weights()
        nd = layers.Dense(k, activation="softmax", name="probs")
        out = nd(p.input)
        nd.set_weights([remap(w), bias(b)])
    return keras.Model(model.inputs, out, name=model.name), info


def freeze_early(model, n_layers=None, freeze_bn: bool = True) -> List[str]:
    """Freeze compact's stem and blocks 1-2 (or the first ``n_layers`` weighted layers); return the frozen names.

    With ``freeze_bn`` every BatchNormalization layer is frozen too (Keras 3 then runs it in inference
    mode): a few dozen strongly augmented tiles per batch give poor batch statistics, and the first try of
    this recipe (BatchNorm in training mode) fell to 12.5 % training accuracy in its first epoch from a
    model that scored 63 % on the new camera untouched (docs/results/shots.md).
    """
    from keras import layers

    frozen = []
    weighted = [layer for layer in model.layers if layer.weights]
    for layer in model.layers:
        if n_layers is not None:
            hit = layer in weighted[:n_layers]
        else:
            hit = layer.name.startswith(COMPACT_FROZEN_PREFIXES)
        if hit or (freeze_bn and isinstance(layer, layers.BatchNormalization)):
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def finetune(args) -> Dict:
    """Run ``edge-train --init`` as the parsed arguments say; returns the report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge.data import load_dataset, load_images
    from edge.fsutil import staged_dir
    from edge.metadata import preprocess_of, read_meta, tool_versions
    from edge.runtime.keras.runner import load_keras_model
    from train.augment import Augment, make_feed
    from train.cli import EpochLog, _compile, write_model_folder
    from train.evaluate import metrics_report, summary_line
    from train.models import count_params

    init = Path(args.init)
    if not init.is_file():
        raise EdgeError(f"--init model {init} does not exist")
    meta0 = read_meta(init)
    old_classes = list(meta0.get("classes") or [])
    if not old_classes:
        raise EdgeError(f"{init} has no classes in its metadata (not an edge-train model)")
    prep = preprocess_of(meta0)
    frac = DEFAULT_HOLDOUT if args.holdout is None else args.holdout
    if not 0.0 < frac < 1.0:
        raise EdgeError(f"--holdout must be in (0, 1), got {frac}")
    t_start = time.perf_counter()
    ds = load_dataset(args.data)
    split = holdout_split(ds, frac, args.seed)
    parts = {w: ds.subset(split, w) for w in ("train", "val")}
    augment = Augment.preset(args.augment or "line")
    epochs = args.epochs or DEFAULT_EPOCHS
    patience = args.patience if args.patience is not None else DEFAULT_PATIENCE
    lr = args.lr or DEFAULT_LR

    def arrays(d):
        return np.stack([prep.resize(im) for im in load_images(d)]), d.labels

    (x_tr, y_tr), (x_va, y_va) = arrays(parts["train"]), arrays(parts["val"])
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001
        pass
    model, head = adapt_head(load_keras_model(init), old_classes, ds.classes, args.seed)
    # from scratch (--freeze 0) the BatchNorm statistics have to be learnt: only a trained model keeps them
    frozen = freeze_early(model, args.freeze, freeze_bn=args.freeze != 0)
    k = len(ds.classes)
    print(f"edge-train --init: {init} ({len(old_classes)} classes) -> {k} classes of {ds.root} "
          f"(kept {len(head['kept'])}, added {head['added'] or 'none'}, dropped {head['dropped'] or 'none'}); "
          f"train {len(parts['train'])} / held out {len(parts['val'])} images; {len(frozen)} early layers frozen",
          flush=True)
    onehot = np.eye(k, dtype=np.float32)
    feed = make_feed(x_tr, onehot[y_tr], prep, min(args.batch_size, len(x_tr)), augment, args.seed)
    val = (prep(x_va), onehot[y_va])
    _compile(model, keras.optimizers.Adam(lr), 0.0)
    cbs = [keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True),
           EpochLog.make("finetune", epochs)]
    verbose = 1 if sys.stdout.isatty() else 0
    h = model.fit(feed, validation_data=val, epochs=epochs, callbacks=cbs, verbose=verbose)
    n = len(h.history["loss"])
    history = [{key: float(v[i]) for key, v in h.history.items()} for i in range(n)]
    best = int(np.argmin(h.history["val_loss"]))
    phases = [{"phase": "finetune", "epochs_run": n, "best_epoch": best + 1,
               "best_val_loss": float(h.history["val_loss"][best]),
               "best_val_accuracy": float(h.history["val_accuracy"][best]),
               "seconds": round(time.perf_counter() - t_start, 1), "optimizer": "Adam",
               "trainable_params": count_params(model)["trainable"]}]
    probs = model.predict(val[0], batch_size=64, verbose=0)
    rep = metrics_report(y_va, probs, ds.classes)
    params = count_params(model)
    wall = time.perf_counter() - t_start
    rep.update({
        "model": str(Path(args.out) / "model.keras"), "data": str(args.data), "split": "val",
        "split_file": str(Path(args.out) / "split.csv"), "backend": "keras",
        "note": "held-out part of the new data (early stopping used it: optimistic; evaluate on other images)",
        "training": {"init": str(init), "classes": head, "frozen_layers": frozen, "holdout": frac,
                     "seed": args.seed, "params": params, "batch_size": args.batch_size, "max_epochs": epochs,
                     "patience": patience, "lr": lr, "augment": augment.describe() if augment else None,
                     "phases": phases, "epochs_run": n, "wall_time_s": round(wall, 1),
                     "counts": {w: len(parts[w]) for w in parts}, "tools": tool_versions()},
    })
    with staged_dir(args.out, force=args.force) as stage:
        write_model_folder(stage, model, prep, ds, split, rep, {
            "input": meta0.get("input"), "output": {"name": "probs", "shape": [-1, k]},
            "source_model": {"path": str(init)},
            "training": {"architecture": (meta0.get("training") or {}).get("architecture"), "init": str(init),
                         "seed": args.seed, "params": params["total"], "holdout_accuracy": rep["accuracy"]},
        }, history, [0], phases, f"fine-tuned: held-out accuracy {rep['accuracy']:.2%}")
    print(f"edge-train --init: held-out {summary_line(rep)}, {n} epochs in {wall:.0f} s -> {args.out}", flush=True)
    return rep
