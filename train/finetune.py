"""``edge-train --init MODEL.keras --data MY_FOLDERS --out DIR``: adapt a trained model to a plant's own tiles.

From Python: ``train.train_model(train.TrainConfig(init=..., data=..., out=...))``.

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

import logging
import os
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

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


def _load_init(cfg):
    """The model to fine-tune: ``(path, metadata, old classes, preprocessing)``."""
    from edge.metadata import preprocess_of, read_meta

    init = Path(cfg.init)
    if not init.is_file():
        raise EdgeError(f"init model {init} does not exist")
    meta0 = read_meta(init)
    old_classes = list(meta0.get("classes") or [])
    if not old_classes:
        raise EdgeError(f"{init} has no classes in its metadata (not an edge-train model)")
    return init, meta0, old_classes, preprocess_of(meta0)


def _report(cfg, init, head, frozen, frac, fit, params, parts, lr, epochs, patience, augment, wall) -> Dict:
    """The report's keys besides the metrics (``training`` block included)."""
    from edge.metadata import tool_versions

    return {
        "model": str(Path(cfg.out) / "model.keras"), "data": str(cfg.data), "split": "val",
        "split_file": str(Path(cfg.out) / "split.csv"), "backend": "keras",
        "note": "held-out part of the new data (early stopping used it: optimistic; evaluate on other images)",
        "training": {"init": str(init), "classes": head, "frozen_layers": frozen, "holdout": frac,
                     "seed": cfg.seed, "params": params, "batch_size": cfg.batch_size, "max_epochs": epochs,
                     "patience": patience, "lr": lr, "augment": augment.describe() if augment else None,
                     "phases": fit.phases, "epochs_run": len(fit.history), "wall_time_s": round(wall, 1),
                     "counts": {w: len(parts[w]) for w in parts}, "tools": tool_versions()},
    }


def finetune(cfg) -> Dict:
    """Fine-tune ``cfg.init`` on ``cfg.data`` (a validated :class:`train.TrainConfig`); returns the report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from edge.data import load_dataset, load_images
    from edge.fsutil import staged_dir
    from edge.runtime.keras.runner import load_keras_model
    from train.augment import Augment, make_feed
    from train.evaluate import metrics_report, summary_line
    from train.models import count_params
    from train.recipe import Fit, seed_everything, write_model_folder

    init, meta0, old_classes, prep = _load_init(cfg)
    frac = DEFAULT_HOLDOUT if cfg.holdout is None else cfg.holdout
    t_start = time.perf_counter()
    ds = load_dataset(cfg.data)
    split = holdout_split(ds, frac, cfg.seed)
    parts = {w: ds.subset(split, w) for w in ("train", "val")}
    augment = Augment.preset(cfg.augment or "line")
    epochs = cfg.epochs or DEFAULT_EPOCHS
    patience = cfg.patience if cfg.patience is not None else DEFAULT_PATIENCE
    lr = cfg.lr or DEFAULT_LR

    def arrays(d):
        return np.stack([prep.resize(im) for im in load_images(d)]), d.labels

    (x_tr, y_tr), (x_va, y_va) = arrays(parts["train"]), arrays(parts["val"])
    seed_everything(cfg.seed)
    model, head = adapt_head(load_keras_model(init), old_classes, ds.classes, cfg.seed)
    # from scratch (freeze=0) the BatchNorm statistics have to be learnt: only a trained model keeps them
    frozen = freeze_early(model, cfg.freeze, freeze_bn=cfg.freeze != 0)
    k = len(ds.classes)
    log.info("edge-train --init: %s (%d classes) -> %d classes of %s (kept %d, added %s, dropped %s); "
             "train %d / held out %d images; %d early layers frozen", init, len(old_classes), k, ds.root,
             len(head["kept"]), head["added"] or "none", head["dropped"] or "none", len(parts["train"]),
             len(parts["val"]), len(frozen))
    onehot = np.eye(k, dtype=np.float32)
    feed = make_feed(x_tr, onehot[y_tr], prep, min(cfg.batch_size, len(x_tr)), augment, cfg.seed)
    fit = Fit(model, feed, (prep(x_va), onehot[y_va]), patience)
    fit.run("finetune", keras.optimizers.Adam(lr), epochs, t0=t_start)
    rep = metrics_report(y_va, model.predict(fit.val[0], batch_size=64, verbose=0), ds.classes)
    params = count_params(model)
    wall = time.perf_counter() - t_start
    rep.update(_report(cfg, init, head, frozen, frac, fit, params, parts, lr, epochs, patience, augment, wall))
    with staged_dir(cfg.out, force=cfg.force) as stage:
        write_model_folder(stage, model, prep, ds, split, rep, {
            "input": meta0.get("input"), "output": {"name": "probs", "shape": [-1, k]},
            "source_model": {"path": str(init)},
            "training": {"architecture": (meta0.get("training") or {}).get("architecture"), "init": str(init),
                         "seed": cfg.seed, "params": params["total"], "holdout_accuracy": rep["accuracy"]},
        }, fit, f"fine-tuned: held-out accuracy {rep['accuracy']:.2%}")
    log.info("edge-train --init: held-out %s, %d epochs in %.0f s -> %s", summary_line(rep), len(fit.history),
             wall, cfg.out)
    return rep
