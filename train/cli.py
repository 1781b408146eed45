"""``edge-train``: train a NEU defect classifier and write a model folder every later stage reads.

Usage::

    edge-train --data data/NEU-CLS --model compact --seed 42 --out runs/compact-s42
    edge-train --data data/NEU-CLS --model mobilenetv2 --weights ~/mobilenet_v2_notop.h5 --out runs/mobilenetv2
    edge-train --data data/NEU-CLS --model mobilenetv2 --weights none --out runs/mnv2-scratch   # from scratch
    edge-train --init models/neu-compact/model.keras --data my_tiles/ --out runs/my-line   # fine-tune

From Python: ``train.train_model(train.TrainConfig(data=..., model="compact", out=...))``; this command
turns its flags (and ``--config FILE``: defaults, then the file, then the flags) into that config.

The output folder gets ``model.keras``, ``model.keras.json`` (metadata), ``preprocess.json``,
``classes.json``, ``split.csv``, ``report.json`` (test-split metrics, see :mod:`train.evaluate`),
``confusion_matrix.png``, ``curves.png`` and ``history.csv`` (the per-epoch log). It is written to a
staging folder and moved into place only when training and evaluation succeeded.
"""

from __future__ import annotations

import argparse
import sys

from edge.errors import cli_entry
from edge.log import add_log_flags
from train.models import COMPACT_POOLS, MODELS


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="dataset folder (NEU-CLS flat, folder per class, NEU-DET)")
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
                         "(compact's default; mobilenetv2 / resnet50v2: the from-scratch recipe, every layer trained "
                         "end to end from random initialisation instead of the two-phase protocol; nasnetmobile "
                         "needs pretrained weights)")
    ap.add_argument("--seed", type=int, help="seed of initialisation, shuffling and augmentation (default: 42)")
    ap.add_argument("--split-seed", type=int,
                    help="seed of the 70/15/15 split (default 42, kept so seeds share one test set)")
    ap.add_argument("--split-file", help="reuse this split.csv instead of making the split")
    ap.add_argument("--epochs", type=int, default=None,
                    help="maximum epochs (per phase for the two-phase backbones); default by model "
                         "(compact 40, backbones 30 per phase, from scratch 60)")
    ap.add_argument("--fine-tune-epochs", type=int, default=None, help="maximum epochs of phase 2 (default --epochs); "
                                                                      "not for --weights none (one phase)")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience on val loss")
    ap.add_argument("--batch-size", type=int, help="images per step (default: 32)")
    ap.add_argument("--input-size", type=int, default=None,
                    help="model input height = width (default: compact 160, backbones 224)")
    ap.add_argument("--augment", default=None, choices=["seeds", "light", "line", "line-strong", "none"],
                    help="augmentation preset (default: line = recipe v5 for compact and --weights none, seeds for "
                         "pretrained backbones; light = recipe v4's; line = light + line-capture "
                         "corruptions: noise, blur along the strip, defocus, exposure, uneven lighting, contrast, "
                         "JPEG, scale, each p 0.2 at severity 1-3 (bench/corruptions.py); line-strong = seeds + "
                         "corruptions p 0.3 at severity 1-4)")
    ap.add_argument("--pool", default=None, choices=list(COMPACT_POOLS),
                    help="compact: global pooling before the classifier, avgmax (average and max, "
                         "one Dense each; default, recipe v4) or avg (average only, recipe v2)")
    ap.add_argument("--lr", type=float, default=None, help="initial learning rate (phase 1)")
    ap.add_argument("--label-smoothing", type=float, default=None,
                    help="compact and --weights none: label smoothing of the cross-entropy, in [0, 1) (default 0.1, "
                         "recipe v5's)")
    ap.add_argument("--distribute", choices=["none", "mirrored"],
                    help="mirrored: tf.distribute.MirroredStrategy over the GPUs here; --batch-size is then per "
                         "replica and the learning rate scales linearly with the replicas (train/distribute.py)")
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--force", action="store_true", default=None, help="replace an existing output folder")
    ap.add_argument("--config", metavar="FILE",
                    help="TOML (or YAML) file with the same settings (a [train] table or the top level); "
                         "flags override it")
    return add_log_flags(ap)


def config_from_args(args):
    """:class:`train.TrainConfig`: its defaults, then the ``--config`` file, then the flags given."""
    from edge.configfile import layered
    from train.config import TrainConfig

    return layered(TrainConfig, vars(args), args.config, "train", TrainConfig.PATHS)


@cli_entry("edge-train")
def main(argv=None) -> int:
    from train.api import train_model

    train_model(config_from_args(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
