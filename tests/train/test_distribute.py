"""edge-train --distribute mirrored, on the CPU split into two logical devices (the code path of two GPUs).

1. One epoch of the compact recipe's model, loss (label smoothing 0.1) and optimizer (Adam, cosine
   schedule) under ``MirroredStrategy`` with synchronized BatchNormalization (``train.distribute``),
   per-replica batch 8 (global 16), against one device with batch 16 on the same batches: training
   loss within 1e-4 (relative), probabilities within 5e-3, the same predictions. The recipe's Dropout
   draws different masks on two replicas than on one device, so its rate is 0 here.
2. ``edge-train --distribute mirrored`` end to end: the strategy, global batch and scaled learning rate
   are applied and recorded. Its batches are not those of a single-device run (Keras orders a
   PyDataset's batches with its own shuffling, which differs under a strategy), so (1) is the
   equivalence check and (2) the wiring check.
"""

import json
import os
import subprocess
import sys

import pytest

EQUIV = r'''
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
D = keras.layers.Dropout
keras.layers.Dropout = lambda rate, **kw: D(0.0, **kw)
from train.recipe import COMPACT_LABEL_SMOOTHING, compile_model as _compile
from train.distribute import make_strategy, sync_batchnorm
from train.models import build, default_preprocess

prep = default_preprocess("compact", 48)
rng = np.random.default_rng(0)
x = prep(rng.integers(0, 256, (42, 48, 48), dtype=np.uint8))
y = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 42)]

def one_epoch(strategy, replicas, rate_scale):
    keras.utils.set_random_seed(3)
    with strategy.scope():
        model, _ = build("compact", 6, prep, None)
        if replicas > 1:
            sync_batchnorm(model)
        sched = keras.optimizers.schedules.CosineDecay(1e-3 * rate_scale, decay_steps=3)
        _compile(model, keras.optimizers.Adam(sched), COMPACT_LABEL_SMOOTHING)
        h = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    return h.history["loss"][0], model.predict(x, verbose=0).tolist()

os.environ["EDGE_TRAIN_CPU_REPLICAS"] = "2"
s = make_strategy()
lm, pm = one_epoch(s, s.num_replicas_in_sync, s.num_replicas_in_sync)   # the linear rule: rate x replicas
ls, ps = one_epoch(tf.distribute.get_strategy(), 1, 2)                    # one device, the same global batch/rate
print(json.dumps({"replicas": s.num_replicas_in_sync, "loss_mirrored": lm, "loss_single": ls,
                  "p_mirrored": pm, "p_single": ps}))
'''


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
                TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.slow  # about 40-80 s on 2 shared cores (TensorFlow start-up and two trainings)
def test_one_epoch_of_the_recipe_under_mirrored_matches_one_device():
    pytest.importorskip("tensorflow")
    import numpy as np

    r = subprocess.run([sys.executable, "-c", EQUIV], env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["loss_mirrored"] == pytest.approx(out["loss_single"], rel=1e-4)
    pm, ps = np.array(out["p_mirrored"]), np.array(out["p_single"])
    assert float(np.abs(pm - ps).max()) < 5e-3 and (pm.argmax(1) == ps.argmax(1)).all()


@pytest.mark.slow  # about 40-80 s on 2 shared cores
def test_edge_train_distribute_mirrored_applies_and_records_the_rules(tmp_path, sample_dir):
    pytest.importorskip("tensorflow")
    env = dict(_env(), EDGE_TRAIN_CPU_REPLICAS="2")
    cmd = [sys.executable, "-m", "train.cli", "--data", str(sample_dir), "--model", "compact", "--input-size", "48",
           "--epochs", "1", "--augment", "none", "--batch-size", "8", "--lr", "1e-3", "--distribute", "mirrored",
           "--out", str(tmp_path / "m")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "MirroredStrategy over 2 replica(s)" in r.stdout and "global batch 16 = 8 x 2" in r.stdout
    t = json.loads((tmp_path / "m" / "report.json").read_text())["training"]
    d = t["distribute"]
    assert (d["replicas"], d["per_replica_batch"], d["global_batch"]) == (2, 8, 16)
    assert t["batch_size"] == 16 and t["lr"] == pytest.approx(2e-3) and d["batchnorm"] == "synchronized"
    assert (tmp_path / "m" / "model.keras").is_file()
