"""train.models: heads, parameter budgets, frozen/trainable layers per phase, BatchNorm in inference mode,
and the weights argument (ImageNet offline, local file, none). Tiny inputs and weights=None keep it fast."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge.errors import EdgeError  # noqa: E402
from edge.preprocess import Preprocess  # noqa: E402
from train import models  # noqa: E402

K = 6


def _n_params(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def test_compact_architecture_and_budget():
    m = models.build_compact((160, 160, 1), K)
    assert m.count_params() <= 500_000
    assert m.inputs[0].shape[1:] == (160, 160, 1)
    assert m.layers[-1].name == "probs" and m.outputs[0].shape[1:] == (K,)
    assert m.layers[-1].activation.__name__ == "softmax"
    allowed = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.ReLU,
               keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
               keras.layers.Add, keras.layers.Activation, keras.layers.Dropout, keras.layers.Dense)
    assert all(isinstance(layer, allowed) for layer in m.layers), [type(layer).__name__ for layer in m.layers]
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert not any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in m.layers)
    for conv in convs:  # Conv (no bias) -> BN -> ReLU: foldable for INT8
        i = m.layers.index(conv)
        assert not conv.use_bias
        assert isinstance(m.layers[i + 1], keras.layers.BatchNormalization)
        assert isinstance(m.layers[i + 2], keras.layers.ReLU)
    x = np.random.default_rng(0).random((3, 160, 160, 1), dtype=np.float32)
    p = m(x, training=False).numpy()
    assert p.shape == (3, K)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_compact_avgmax_pooling():
    avg = models.build_compact((64, 64, 1), K, pool="avg")
    both = models.build_compact((64, 64, 1), K)  # the default
    kinds = lambda m: [type(layer).__name__ for layer in m.layers]  # noqa: E731
    assert [t for t in kinds(avg) if "Global" in t] == ["GlobalAveragePooling2D"]
    assert "GlobalMaxPooling2D" in kinds(both) and "Concatenate" not in kinds(both)  # one INT8 scale each
    c = both.get_layer("block4_relu").output.shape[-1]
    # the classifier sees [GAP, GMP]: only its kernel grows, by one row per channel per class
    assert both.count_params() - avg.count_params() == c * K
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    feats = keras.Model(both.inputs, both.get_layer("block4_relu").output)(x).numpy()
    (wa, b), (wm,) = both.get_layer("logits_gap").get_weights(), both.get_layer("logits_gmp").get_weights()
    logits = feats.mean((1, 2)) @ wa + feats.max((1, 2)) @ wm + b
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(both(x, training=False).numpy(), ref / ref.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(EdgeError, match="unknown compact pooling"):
        models.build_compact((64, 64, 1), K, pool="sum")


def test_build_dispatch_checks_channels_and_weights():
    prep = models.default_preprocess("compact", 64)
    assert prep == Preprocess(64, 64, 1, "unit", "area")
    m, base = models.build("compact", K, prep, "none")
    assert base is None and m.output.shape[-1] == K
    with pytest.raises(EdgeError, match="3-channel"):
        models.build("mobilenetv2", K, prep, "none")
    with pytest.raises(EdgeError, match="no ImageNet"):
        models.build("compact", K, prep, "imagenet")
    with pytest.raises(EdgeError, match="unknown model"):
        models.default_preprocess("vgg16")
    with pytest.raises(EdgeError, match="too small"):
        models.default_preprocess("mobilenetv2", 16)
    assert models.default_preprocess("resnet50v2").scale == "symmetric"
    assert models.default_preprocess("nasnetmobile").input_shape == (224, 224, 3)


def _head_params(base_channels, nasnet=False):
    return base_channels * 256 + 256 + 256 * K + K


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnet50v2", "nasnetmobile"])
def test_backbone_head_and_phases(arch):
    m, base = models.build_transfer(arch, (32, 32, 3), K, weights=None)
    feat = base.output.shape[-1]
    # Head: GAP -> (Dropout) -> Dense 256 (ReLU, ELU for NASNet) -> Dropout -> Dense K softmax.
    names = [layer.name for layer in m.layers]
    assert names[0] == "input" and names[1] == base.name and names[2] == "gap"
    dense = m.get_layer("dense")
    assert dense.units == 256
    assert dense.activation.__name__ == ("elu" if arch == "nasnetmobile" else "relu")
    assert dense.kernel_regularizer is not None
    drops = [layer.rate for layer in m.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == ([0.5, 0.3] if arch == "nasnetmobile" else [0.5])
    assert m.layers[-1].name == "probs" and m.layers[-1].activation.__name__ == "softmax"

    # Phase 1: the base is frozen; only the head trains.
    models.set_phase(base, 1)
    assert base.trainable_weights == []
    assert _n_params(m.trainable_weights) == _head_params(feat)

    # Phase 2: the last 50 base layers (not BatchNorm) trainable, all earlier ones frozen.
    models.set_phase(base, 2)
    n = len(base.layers)
    for i, layer in enumerate(base.layers):
        expect = i >= n - models.FINE_TUNE_LAYERS and not isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == expect, (i, layer.name)
    trainable_base = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert trainable_base, "phase 2 unfreezes some layers with weights"
    assert _n_params(m.trainable_weights) == _head_params(feat) + _n_params(
        [w for layer in trainable_base for w in layer.trainable_weights])
    # L2 1e-4 on the unfrozen kernels.
    kernels = [getattr(layer, a) for layer in trainable_base for a in ("kernel", "depthwise_kernel")
               if getattr(layer, a, None) is not None]
    assert kernels and all(k.regularizer is not None for k in kernels)
    with pytest.raises(ValueError):
        models.set_phase(base, 3)


def _estimate_bn_statistics(base, images, batch_size: int = 256) -> int:
    """Set a random base's BatchNorm moving statistics from ``images`` (one pass in training mode, momentum
    0), so that the base in inference mode gives informative features. Was ``train.models.init_bn_statistics``
    (unused since edge-train refuses backbones with ``--weights none``); kept here for the test below."""
    from keras import layers

    bns = [layer for layer in _all_layers(base) if isinstance(layer, layers.BatchNormalization)]
    saved = [(b.momentum, b.trainable) for b in bns]
    try:
        for b in bns:  # a frozen BatchNorm always runs in inference mode (Keras 3): unfreeze it briefly
            b.momentum = 0.0
            b.trainable = True
        base(images[:batch_size], training=True)
    finally:
        for b, (m, t) in zip(bns, saved):
            b.momentum = m
            b.trainable = t
    return len(bns)


def _all_layers(model):
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def test_batchnorm_stays_in_inference_mode_while_fine_tuning():
    m, base = models.build_transfer("mobilenetv2", (32, 32, 3), K, weights=None)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    y = np.eye(K, dtype=np.float32)[rng.integers(0, K, 8)]
    # A random base with untouched BatchNorm statistics maps every image to the same output ...
    p0 = m(x, training=False).numpy()
    assert np.allclose(p0, p0[0], atol=1e-5)
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    init = [b.moving_variance.numpy().copy() for b in bns]
    # ... until the statistics are estimated from training images.
    assert _estimate_bn_statistics(base, x) == len(bns)
    assert all(not np.allclose(b.moving_variance.numpy(), v) for b, v in zip(bns, init))
    assert bns[0].momentum == 0.999, "momentum restored"
    assert not np.allclose(m(x, training=False).numpy(), m(x, training=False).numpy()[0], atol=1e-5)

    models.set_phase(base, 2)
    before = [b.moving_mean.numpy().copy() for b in bns]
    m.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    k_before = m.get_layer("probs").kernel.numpy().copy()
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    # The weights did train, but no moving statistic moved: BatchNorm ran in inference mode.
    assert not np.allclose(k_before, np.array(m.get_layer("probs").kernel))
    for b, mm in zip(bns, before):
        np.testing.assert_array_equal(np.array(b.moving_mean), mm)
    # And calling the whole model with training=True still leaves the base in inference mode.
    out_a = m(x, training=True)
    assert all(np.array_equal(np.array(b.moving_mean), mm) for b, mm in zip(bns, before))
    assert out_a.shape == (8, K)


def test_imagenet_offline_is_one_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(EdgeError) as ei:
        models.build_transfer("mobilenetv2", (96, 96, 3), K, weights="imagenet")
    msg = str(ei.value)
    assert "\n" not in msg and "weights PATH" in msg and "model compact" in msg and "--weights" not in msg
    with pytest.raises(EdgeError, match="224x224"):
        models.build_base("nasnetmobile", (96, 96, 3), "imagenet")


def test_backbone_without_pretrained_weights_is_refused(tmp_path):
    # nasnetmobile has no from-scratch recipe: refused (its random two-phase base would stay mostly frozen)
    with pytest.raises(EdgeError) as ei:
        models.check_pretrained("nasnetmobile", "none")
    msg = str(ei.value)
    assert "\n" not in msg and "nasnetmobile" in msg and "weights PATH" in msg and "model compact" in msg
    assert "--" not in msg  # parameter names; edge-train names its flags (tests/train/test_cli.py)
    for arch in ("compact", *models.SCRATCH_MODELS):  # compact and the from-scratch backbones train without weights
        models.check_pretrained(arch, "none")
    models.check_pretrained("mobilenetv2", "imagenet")
    local = tmp_path / "w.weights.h5"
    local.write_bytes(b"x")
    models.check_pretrained("mobilenetv2", str(local))
    assert models.from_scratch("mobilenetv2", "none") and models.from_scratch("resnet50v2", None)
    assert not models.from_scratch("mobilenetv2", "imagenet") and not models.from_scratch("mobilenetv2", str(local))
    assert not models.from_scratch("compact", "none") and not models.from_scratch("nasnetmobile", "none")


@pytest.mark.parametrize("arch", models.SCRATCH_MODELS)
def test_scratch_backbone_trains_end_to_end_with_batchnorm_in_training_mode(arch):
    prep = models.default_preprocess(arch, 32)
    m, base = models.build(arch, K, prep, "none")
    assert m.get_layer("probs").units == K and m.output.shape[-1] == K
    # every layer trainable from the start: only BatchNorm's moving statistics are not
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(b.momentum == models.SCRATCH_BN_MOMENTUM for b in bns)
    assert _n_params(m.non_trainable_weights) == sum(2 * b.moving_mean.shape[0] for b in bns)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    y = np.eye(K, dtype=np.float32)[rng.integers(0, K, 8)]
    before = [b.moving_variance.numpy().copy() for b in bns]  # (a mean after a residual sum of BN outputs stays ~0)
    stem = next(layer for layer in base.layers if layer.weights)  # the stem convolution: trained too (no frozen base)
    first = stem.get_weights()[0].copy()
    m.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert isinstance(stem, keras.layers.Conv2D) and not np.allclose(first, stem.get_weights()[0])
    moved = sum(not np.allclose(np.array(b.moving_variance), v) for b, v in zip(bns, before))
    assert moved == len(bns), "every BatchNorm updated its statistics (training mode)"
    with pytest.raises(EdgeError, match="no from-scratch recipe"):
        models.build_scratch("nasnetmobile", (32, 32, 3), K)


def test_local_weights_file_is_loaded(tmp_path):
    base = models.build_base("mobilenetv2", (32, 32, 3), None)
    path = tmp_path / "mnv2.weights.h5"
    base.save_weights(path)
    m, loaded = models.build_transfer("mobilenetv2", (32, 32, 3), K, weights=str(path))
    assert len(base.weights) == len(loaded.weights)
    for a, b in zip(base.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(EdgeError, match="does not exist"):
        models.build_transfer("mobilenetv2", (32, 32, 3), K, weights=str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.weights.h5"
    models.build_compact((32, 32, 1), K).save_weights(bad)
    with pytest.raises(EdgeError, match="cannot load weights"):
        models.build_transfer("mobilenetv2", (32, 32, 3), K, weights=str(bad))


def test_count_params_splits_trainable():
    m, base = models.build_transfer("mobilenetv2", (32, 32, 3), K, weights=None)
    c = models.count_params(m)
    assert c["total"] == m.count_params()
    assert c["trainable"] == _head_params(base.output.shape[-1])
    assert c["non_trainable"] == c["total"] - c["trainable"]
