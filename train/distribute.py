"""``edge-train --distribute mirrored``: data-parallel training on the GPUs of one machine.

TensorFlow's ``tf.distribute.MirroredStrategy`` keeps a copy of the model on every GPU, splits each
global batch between them and all-reduces the gradients (NCCL on GPUs). The rules:

* ``--batch-size`` is **per replica**; the global batch is ``batch_size x replicas``, so each GPU sees
  the batch the recipe was tuned for, and an epoch has ``replicas`` times fewer steps.
* The learning rate follows the **linear scaling rule** (Goyal et al. 2017, "Accurate, large
  minibatch SGD"): the recipe's rate (``--lr`` or its default) times ``replicas``, for every phase;
  the compact recipe keeps its linear warm-up (3 epochs), which is what the rule needs at start.
* BatchNormalization layers are **synchronized** across replicas (their batch statistics are those
  of the global batch), so a step under the strategy computes what one device computes on the
  global batch.

Several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` (same code, a ``TF_CONFIG`` per host,
collective all-reduce over the network) or Horovod; not wired in here. On a machine without a GPU
the strategy runs one replica on the CPU; ``EDGE_TRAIN_CPU_REPLICAS=N`` splits the CPU into N
logical devices (tests and trials: the same code path as N GPUs, no speed-up).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Dict, Iterator

from edge.errors import EdgeError

log = logging.getLogger(__name__)

#: Environment variable: split the CPU into this many logical devices when no GPU is visible.
CPU_REPLICAS_ENV = "EDGE_TRAIN_CPU_REPLICAS"


def make_strategy():
    """A ``MirroredStrategy`` over every visible GPU (else the CPU, split per ``$EDGE_TRAIN_CPU_REPLICAS``)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    n = os.environ.get(CPU_REPLICAS_ENV)
    if n:
        try:
            n = int(n)
            assert n >= 1
        except (ValueError, AssertionError):
            raise EdgeError(f"${CPU_REPLICAS_ENV} must be an integer >= 1, got {os.environ[CPU_REPLICAS_ENV]!r}") from None
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:  # already initialised in this process: keep what is there
            pass
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:n]
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.MirroredStrategy(["/cpu:0"])


def sync_batchnorm(model) -> int:
    """Make every BatchNormalization layer of ``model`` use the global batch's statistics; return how many."""
    import keras

    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            n += 1
    return n


def even_validation(val, replicas: int):
    """The validation arrays repeated ``replicas`` times: every validation batch then splits evenly between
    the replicas (Keras 3's evaluation under MirroredStrategy fails on an uneven last batch: AddN of
    per-replica tensors of different sizes), and the mean loss / accuracy are those of the original set."""
    import numpy as np

    if replicas <= 1:
        return val
    return tuple(np.concatenate([a] * replicas) for a in val)


@contextlib.contextmanager
def distributed(args) -> Iterator[Dict[str, Any]]:
    """Run the training inside this for ``distribute``: scales ``args`` (a copy of the
    :class:`train.TrainConfig`) and enters the strategy's scope.

    Sets ``args.batch_size`` to the global batch, ``args.lr_scale`` to the replica count, and
    ``args.distribute_info`` (written to the report).
    """
    mode = getattr(args, "distribute", "none") or "none"
    if mode == "none":
        args.lr_scale, args.distribute_info = 1.0, None
        yield {}
        return
    if mode != "mirrored":
        raise EdgeError(f"distribute must be none or mirrored, got {mode!r}")
    strategy = make_strategy()
    r = int(strategy.num_replicas_in_sync)
    info = {"strategy": "mirrored", "replicas": r, "devices": list(strategy.extended.worker_devices),
            "per_replica_batch": args.batch_size, "global_batch": args.batch_size * r,
            "lr_rule": f"linear: recipe rate x {r} replicas", "batchnorm": "synchronized"}
    args.batch_size, args.lr_scale, args.distribute_info = args.batch_size * r, float(r), info
    log.info("edge-train: MirroredStrategy over %d replica(s) (%s): global batch %d = %d x %d, learning rate x %d",
             r, ", ".join(info["devices"]), info["global_batch"], info["per_replica_batch"], r, r)
    with strategy.scope():
        yield info
