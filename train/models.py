"""Model builders: the offline ``compact`` CNN and the ImageNet backbones of the seeds.

Every model takes float32 NHWC input named ``input`` (as its :class:`edge.preprocess.Preprocess`
says) and returns softmax probabilities ``(N, K)`` from a Dense layer named ``probs``.

* ``compact``: plain Conv-BN-ReLU blocks, max pooling, global average pooling, softmax; trained from
  scratch on 1-channel input. Chosen to survive INT8: every BatchNorm folds into the convolution before
  it, ReLU and max pooling quantize exactly, there are no depthwise convolutions, no ReLU6, no
  squeeze-excitation, no hard-swish.
* ``mobilenetv2`` / ``resnet50v2``: ``keras.applications`` base (3 channels, ``symmetric`` scale)
  called with ``training=False`` so its BatchNorm layers stay in inference mode while fine-tuning, then
  GAP -> Dense 256 ReLU (L2 1e-4) -> Dropout 0.5 -> Dense K softmax. Two phases: base frozen, then the
  last 50 base layers trainable (:func:`set_phase`). Without weights (``--weights none``) they are
  built by :func:`build_scratch` instead: trained end to end, BatchNorm in training mode.
* ``nasnetmobile``: NASNetMobile base -> GAP -> Dropout -> Dense ELU -> Dropout -> Dense K softmax.

TensorFlow/Keras are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from edge.errors import EdgeError, param
from edge.preprocess import Preprocess


@dataclass(frozen=True)
class ModelSpec:
    """Defaults of one architecture.

    Attributes:
        name: CLI name.
        size: Default input height = width.
        channels: Input channels (3 for ImageNet backbones, gray replicated).
        scale: Preprocess scale (``symmetric`` = keras.applications "tf" mode for the backbones).
        weights: Default ``--weights``.
        epochs: Default maximum epochs (per phase for the two-phase models).
        two_phase: Frozen-base phase then fine-tuning.
        min_size: Smallest input the architecture accepts.
    """

    name: str
    size: int
    channels: int
    scale: str
    weights: str
    epochs: int
    two_phase: bool
    min_size: int = 32


SPECS = {
    "compact": ModelSpec("compact", 160, 1, "unit", "none", 40, False, 32),
    "mobilenetv2": ModelSpec("mobilenetv2", 224, 3, "symmetric", "imagenet", 30, True, 32),
    "resnet50v2": ModelSpec("resnet50v2", 224, 3, "symmetric", "imagenet", 30, True, 32),
    "nasnetmobile": ModelSpec("nasnetmobile", 224, 3, "symmetric", "imagenet", 30, True, 32),
}
MODELS = tuple(SPECS)
#: Layers of the base made trainable in phase 2 (the seeds' protocol).
FINE_TUNE_LAYERS = 50
L2 = 1e-4


def default_preprocess(model: str, size: Optional[int] = None) -> Preprocess:
    """The preprocessing a model of this architecture is trained with."""
    spec = spec_of(model)
    s = int(size or spec.size)
    if s < spec.min_size:
        raise EdgeError(f"input size {s} is too small for {model} (at least {spec.min_size})")
    return Preprocess(s, s, spec.channels, spec.scale, "area")


def spec_of(model: str) -> ModelSpec:
    if model not in SPECS:
        raise EdgeError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    return SPECS[model]


# --------------------------------------------------------------------------- compact

#: Global pooling heads of ``compact``: ``avg`` (GAP, recipe v2) or ``avgmax`` (GAP and global max
#: pooling concatenated, recipe v4, the default: a small local defect on clean steel - an inclusion, a
#: scratch - is diluted by the average over the whole image but not by the maximum; chosen on the
#: validation split, docs/results/recipe-trials.md).
COMPACT_POOLS = ("avg", "avgmax")
COMPACT_DEFAULT_POOL = "avgmax"


def build_compact(input_shape: Tuple[int, int, int], num_classes: int,
                  widths: Tuple[int, ...] = (16, 32, 64, 128, 192), dropout: float = 0.2,
                  pool: str = COMPACT_DEFAULT_POOL):
    """The compact NEU CNN: strided stem, Conv-BN-ReLU + max-pool stages, global pooling, softmax.

    With the default widths it has about 0.32 M parameters and ~80 M multiply-adds at 160x160.

    Args:
        input_shape: (H, W, C).
        num_classes: K.
        widths: Filters of the stem and of each following stage.
        dropout: Dropout rate before the classifier (inactive at inference, gone after export).
        pool: One of :data:`COMPACT_POOLS`.

    Raises:
        EdgeError: an unknown ``pool``.
    """
    if pool not in COMPACT_POOLS:
        raise EdgeError(f"unknown compact pooling {pool!r} (one of {', '.join(COMPACT_POOLS)})")
    import keras
    from keras import layers

    inp = keras.Input(input_shape, name="input")
    x = _conv_bn_relu(inp, widths[0], stride=2, name="stem")
    for i, w in enumerate(widths[1:], start=1):
        x = _conv_bn_relu(x, w, name=f"block{i}")
        if i < len(widths) - 1:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    gap = layers.GlobalAveragePooling2D(name="gap")(x)
    if pool == "avg":
        if dropout:
            gap = layers.Dropout(dropout, name="dropout")(gap)
        out = layers.Dense(num_classes, activation="softmax", name="probs")(gap)
        return keras.Model(inp, out, name="compact")
    # avgmax: softmax(W [gap; gmp] + b) written as W_avg gap + W_max gmp + b, one Dense per pooling, so
    # that each gets its own INT8 input scale (a Concatenate shares one, set by the max, ~5x the
    # average's range). A precaution, not the fix of a measured loss (docs/results/code-choices.md).
    # Initialisation as for one Dense on the 2C concatenated features (Glorot uniform, fan_in 2C).
    gmp = layers.GlobalMaxPooling2D(name="gmp")(x)
    c = int(x.shape[-1])
    limit = math.sqrt(6.0 / (2 * c + num_classes))
    if dropout:  # dropout on [gap; gmp] = independent dropout on each part
        gap = layers.Dropout(dropout, name="dropout")(gap)
        gmp = layers.Dropout(dropout, name="dropout_gmp")(gmp)
    init = keras.initializers.RandomUniform
    la = layers.Dense(num_classes, kernel_initializer=init(-limit, limit), name="logits_gap")(gap)
    lm = layers.Dense(num_classes, use_bias=False, kernel_initializer=init(-limit, limit), name="logits_gmp")(gmp)
    out = layers.Activation("softmax", name="probs")(layers.Add(name="logits")([la, lm]))
    return keras.Model(inp, out, name="compact")


def _conv_bn_relu(x, filters: int, stride: int = 1, name: str = "conv"):
    from keras import layers, regularizers

    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", kernel_regularizer=regularizers.l2(L2),
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


# --------------------------------------------------------------------------- backbones

def _application(model: str):
    import keras

    return {"mobilenetv2": keras.applications.MobileNetV2,
            "resnet50v2": keras.applications.ResNet50V2,
            "nasnetmobile": keras.applications.NASNetMobile}[model]


def resolve_weights(weights: Optional[str]) -> Optional[str]:
    """``imagenet`` / ``none`` / a local file → the ``weights`` argument of keras.applications.

    Raises:
        EdgeError: a path that does not exist.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    p = Path(weights)
    if not p.is_file():
        raise EdgeError(f"weights file {p} does not exist (use {param('weights')} imagenet, none or a local .h5 file)")
    return str(p)


def build_base(model: str, input_shape: Tuple[int, int, int], weights: Optional[str]):
    """The keras.applications base without its top, with a one-line error when weights are unreachable.

    Raises:
        EdgeError: ImageNet weights cannot be downloaded (offline), or a weights file does not fit.
    """
    w = resolve_weights(weights)
    if w is not None and input_shape[-1] != 3:
        raise EdgeError(f"{model} with pretrained weights needs 3-channel input, got {input_shape[-1]}")
    kwargs = dict(include_top=False, weights=w, input_shape=tuple(input_shape))
    if model == "nasnetmobile" and w == "imagenet" and tuple(input_shape[:2]) != (224, 224):
        raise EdgeError(f"nasnetmobile ImageNet weights need 224x224 input, got {input_shape[0]}x{input_shape[1]} "
                        f"(use {param('input_size')} 224 or a local weights file {param('weights')} PATH)")
    import warnings

    try:
        with warnings.catch_warnings():
            # keras.applications warns that 224x224 ImageNet weights load for other input sizes: expected here.
            warnings.filterwarnings("ignore", message=".*input_shape.*", category=UserWarning)
            return _application(model)(**kwargs)
    except EdgeError:
        raise
    except Exception as e:  # noqa: BLE001 - download and weight-loading errors of every kind
        text = " ".join(str(e).split())[:200]
        if w == "imagenet":
            raise EdgeError(
                f"cannot get the ImageNet weights of {model} (offline? {text}); pass a local weights file "
                f"with {param('weights')} PATH, or train the compact model from scratch ({param('model')} compact)"
            ) from None
        if w is not None:
            raise EdgeError(f"cannot load weights file {w} into {model}: {text}") from None
        raise EdgeError(f"cannot build {model} for input {tuple(input_shape)}: {text}") from None


def build_transfer(model: str, input_shape: Tuple[int, int, int], num_classes: int,
                   weights: Optional[str] = "imagenet"):
    """A backbone with the seeds' head. Returns ``(model, base)``; the base starts frozen (phase 1).

    mobilenetv2 / resnet50v2: GAP -> Dense 256 ReLU (L2 1e-4) -> Dropout 0.5 -> Dense K softmax.
    nasnetmobile: GAP -> Dropout 0.5 -> Dense 256 ELU (L2 1e-4) -> Dropout 0.3 -> Dense K softmax.
    """
    import keras
    from keras import layers, regularizers

    base = build_base(model, input_shape, weights)
    base.trainable = False
    inp = keras.Input(input_shape, name="input")
    # training=False: the base's BatchNorm layers run in inference mode in both phases, so
    # fine-tuning never overwrites the moving statistics with a few small batches.
    x = base(inp, training=False)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if model == "nasnetmobile":
        x = layers.Dropout(0.5, name="dropout_1")(x)
        x = layers.Dense(256, activation="elu", kernel_regularizer=regularizers.l2(L2), name="dense")(x)
        x = layers.Dropout(0.3, name="dropout_2")(x)
    else:
        x = layers.Dense(256, activation="relu", kernel_regularizer=regularizers.l2(L2), name="dense")(x)
        x = layers.Dropout(0.5, name="dropout")(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=model), base


def set_phase(base, phase: int, fine_tune_layers: int = FINE_TUNE_LAYERS) -> None:
    """Phase 1: the whole base frozen. Phase 2: its last ``fine_tune_layers`` layers trainable.

    In phase 2 L2 1e-4 is added to the unfrozen convolution/dense kernels. BatchNorm layers stay in
    inference mode either way (the base is called with ``training=False``); their gamma/beta are
    left frozen too, so fine-tuning cannot drift them against statistics it never updates.
    Recompile the model after calling this.
    """
    from keras import layers, regularizers

    if phase == 1:
        base.trainable = False
        return
    if phase != 2:
        raise ValueError(f"phase must be 1 or 2, got {phase}")
    base.trainable = True
    n = len(base.layers)
    l2 = regularizers.l2(L2)
    for i, layer in enumerate(base.layers):
        unfrozen = i >= n - fine_tune_layers and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = unfrozen
        if unfrozen:
            # The layers are built: the penalty goes on the kernel variables themselves.
            for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                var = getattr(layer, attr, None)
                if var is not None and getattr(var, "regularizer", None) is None:
                    var.regularizer = l2


#: Backbones with a from-scratch recipe (``--weights none``): every layer trainable from the start, BatchNorm
#: training normally (momentum :data:`SCRATCH_BN_MOMENTUM`), compact's optimizer and schedule
#: (train/recipe.py). nasnetmobile has none measured, so it still needs pretrained weights.
SCRATCH_MODELS = ("mobilenetv2", "resnet50v2")
#: BatchNorm momentum of a from-scratch base: keras.applications' 0.999 (MobileNetV2) / 0.99 (ResNet50V2)
#: averages over ~1000 / ~100 steps, 25 / 2.5 epochs of NEU's 40 steps, so the moving statistics would lag
#: the training ones (compact's 0.99 left validation at ~30 % for that reason, docs/results/train.md).
SCRATCH_BN_MOMENTUM = 0.9
#: Dropout before the classifier of a from-scratch backbone (compact's).
SCRATCH_DROPOUT = 0.2


def from_scratch(model: str, weights: Optional[str]) -> bool:
    """Whether ``model`` with ``weights`` trains with the from-scratch recipe (a backbone without weights)."""
    return model in SCRATCH_MODELS and resolve_weights(weights) is None


def check_pretrained(model: str, weights: Optional[str]) -> None:
    """Refuse a two-phase backbone without pretrained weights and without a from-scratch recipe.

    The two-phase protocol (frozen base, then its last :data:`FINE_TUNE_LAYERS` layers) is meant for a
    pretrained base: with ``--weights none`` most of a random MobileNetV2 stayed frozen and random
    (52.96 % on NEU, docs/results/train.md). :data:`SCRATCH_MODELS` train end to end instead
    (:func:`build_scratch`); the others (nasnetmobile) are refused.

    Raises:
        EdgeError: ``model`` is a two-phase backbone outside :data:`SCRATCH_MODELS` and ``weights`` is ``none``.
    """
    if spec_of(model).two_phase and model not in SCRATCH_MODELS and resolve_weights(weights) is None:
        raise EdgeError(f"{model} needs pretrained weights (no from-scratch recipe for it; "
                        f"{' and '.join(SCRATCH_MODELS)} have one): pass a local ImageNet weights file with "
                        f"{param('weights')} PATH, or train the compact model from scratch ({param('model')} compact)")


def build_scratch(model: str, input_shape: Tuple[int, int, int], num_classes: int):
    """A randomly initialised backbone trained end to end. Returns ``(model, base)``.

    The whole base is trainable and called in training mode (its BatchNorm layers update their statistics,
    momentum :data:`SCRATCH_BN_MOMENTUM`); head GAP -> Dropout :data:`SCRATCH_DROPOUT` -> Dense K softmax.
    """
    import keras
    from keras import layers

    if model not in SCRATCH_MODELS:
        raise EdgeError(f"no from-scratch recipe for {model} (one of {', '.join(SCRATCH_MODELS)})")
    base = build_base(model, input_shape, None)
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM
    inp = keras.Input(input_shape, name="input")
    x = layers.GlobalAveragePooling2D(name="gap")(base(inp))
    x = layers.Dropout(SCRATCH_DROPOUT, name="dropout")(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=model), base


def build(model: str, num_classes: int, prep: Preprocess, weights: Optional[str] = None,
          pool: Optional[str] = None):
    """Build any architecture. Returns ``(model, base)``; ``base`` is None for ``compact``.

    A backbone of :data:`SCRATCH_MODELS` without weights is built by :func:`build_scratch`, the others by
    :func:`build_transfer` (base frozen, phase 1).

    ``pool`` is compact's global pooling (:data:`COMPACT_POOLS`, default :data:`COMPACT_DEFAULT_POOL`); the backbones keep
    the seeds' GAP head.
    """
    spec = spec_of(model)
    if prep.channels != spec.channels:
        raise EdgeError(f"{model} takes {spec.channels}-channel input, the preprocessing gives {prep.channels}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if model == "compact":
        if resolve_weights(weights) == "imagenet":
            raise EdgeError(f"compact is trained from scratch: it has no ImageNet weights (use {param('weights')} none)")
        m = build_compact(prep.input_shape, num_classes, pool=pool or COMPACT_DEFAULT_POOL)
        w = resolve_weights(weights)
        if w is not None:
            try:
                m.load_weights(w)
            except Exception as e:  # noqa: BLE001
                raise EdgeError(f"cannot load weights file {w} into compact: {' '.join(str(e).split())[:200]}") from None
        return m, None
    if pool not in (None, "avg"):
        raise EdgeError(f"{model} keeps the seeds' GAP head: {param('pool')} {pool} applies to compact only")
    if from_scratch(model, weights):
        return build_scratch(model, prep.input_shape, num_classes)
    return build_transfer(model, prep.input_shape, num_classes, weights)


def count_params(model) -> dict:
    """Total / trainable / non-trainable parameter counts."""
    import numpy as np

    tr = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    nt = int(sum(np.prod(v.shape) for v in model.non_trainable_weights))
    return {"total": tr + nt, "trainable": tr, "non_trainable": nt}


# --------------------------------------------------------------------------- open-set score

def _probs_layer(model, what: str):
    """The classifier's output layer ``probs``; one line naming ``what`` could not be found otherwise."""
    try:
        return model.get_layer("probs")
    except ValueError:
        raise EdgeError(f"{model.name} has no 'probs' layer: cannot find its {what}") from None


def logits_of(model):
    """The pre-softmax logits tensor of a classifier whose output layer is ``probs``.

    compact avgmax: the input of the ``probs`` softmax Activation (the summed heads). A ``probs`` Dense
    with a softmax activation (compact avg, the backbones): a linear twin of that Dense (same weights, no
    activation) applied to its input.

    Raises:
        EdgeError: no ``probs`` layer of either form.
    """
    from keras import layers

    out = _probs_layer(model, "logits")
    if isinstance(out, layers.Activation):
        return out.input
    if isinstance(out, layers.Dense) and getattr(out.activation, "__name__", "") == "softmax":
        twin = layers.Dense(out.units, use_bias=out.use_bias, name="logits_linear")
        z = twin(out.input)
        twin.set_weights(out.get_weights())
        return z
    raise EdgeError(f"{model.name}'s 'probs' layer is neither a softmax Activation nor a softmax Dense")


def features_of(model):
    """The penultimate features tensor of a classifier whose output layer is ``probs`` (what the head sees).

    compact avgmax: the average and the max pooling concatenated (N, 2C); a ``probs`` Dense (compact avg,
    the backbones): its input. Dropout is inactive at inference, so the pooling outputs are taken.

    Raises:
        EdgeError: no ``probs`` layer of either form.
    """
    from keras import layers

    out = _probs_layer(model, "features")
    if isinstance(out, layers.Dense):
        return out.input
    names = {layer.name for layer in model.layers}
    if isinstance(out, layers.Activation) and {"gap", "gmp"} <= names:
        return layers.Concatenate(name="ood_features")([model.get_layer("gap").output, model.get_layer("gmp").output])
    raise EdgeError(f"{model.name}'s 'probs' layer is neither a softmax Dense nor the avgmax head's softmax")


def with_ood_score(model, score: str = "max_softmax", stats: Optional[Dict] = None):
    """The classifier with a second output ``ood_score`` (N, 1): higher = more unusual (edge/ood.py).

    ``max_softmax``: ``-max(probs)``; ``energy``: ``-logsumexp(logits)``, written as the mean over k of
    ``log_softmax(z)_k - z_k`` (``logsumexp(z) = z_k - log_softmax(z)_k`` for every k);
    ``mahalanobis``: ``min_k (f - mu_k)^T P (f - mu_k)`` of the penultimate features ``f``
    (:func:`features_of`), computed as ``||z||^2 + min_k (||m_k||^2 - 2 m_k.z)`` with the whitened, centred
    features ``z = L^T (f - c)`` (``P = L L^T``, ``m_k = L^T (mu_k - c)``, ``c`` the mean of the class means,
    so that the terms stay small in FP16); ``cosine``: ``-max_k cos(f, mu_k)``; ``logit_cosine``: the same
    on the logits (:func:`logits_of`), centred on the mean of their class means; ``knn``:
    ``-max_j cos(f, b_j)`` over the training split's l2-normalised
    features ``b_j`` (a constant Dense of N_train outputs after a UnitNormalization, then a global max:
    the k = 1 nearest-neighbour score); ``relative_mahalanobis``: ``mahalanobis`` minus the same squared
    distance to one Gaussian of all training features (``stats`` of :func:`edge.ood.fit_relative_stats`),
    ``relative_mahalanobis_l2`` (the default of ``python -m train.ood``) the same after a UnitNormalization of
    the features. The choice among them is
    measured, docs/results/open-set-loco.md.

    Built from stock Keras layers only (Reshape, global pooling, Rescaling, Activation, Subtract, Dense with
    constant, non-trainable weights, Multiply, UnitNormalization), so the model stays loadable with
    ``safe_mode`` and converts with tf2onnx. The score's Dense layers (named ``ood_*``) are left in float by the
    INT8 converter (:func:`convert.quantize.score_nodes`). The probabilities output is unchanged (same tensor).

    Args:
        model: A classifier with one output, ``probs``.
        score: One of :data:`edge.ood.SCORES`.
        stats: For ``mahalanobis`` / ``cosine``: :func:`edge.ood.fit_feature_stats` of the training split's
            penultimate features; for ``logit_cosine``: of its logits; for ``knn``:
            :func:`edge.ood.fit_knn_bank` of its penultimate features; for the relative scores:
            :func:`edge.ood.fit_relative_stats` of its (l2-normalised, for ``relative_mahalanobis_l2``) features.

    Raises:
        EdgeError: an unknown score, a model with more than one output, or a feature score without
            (matching) statistics.
    """
    import keras
    from keras import layers

    from edge.ood import RELATIVE_SCORES, SCORE_OUTPUT, SCORES

    if score not in SCORES:
        raise EdgeError(f"unknown open-set score {score!r} (one of {', '.join(SCORES)})")
    if len(model.outputs) != 1:
        raise EdgeError(f"{model.name} has {len(model.outputs)} outputs; expected the probabilities only")
    probs = model.outputs[0]
    k = int(probs.shape[-1])
    if score == "max_softmax":
        top = layers.GlobalMaxPooling1D(name="ood_max_prob")(layers.Reshape((k, 1), name="ood_reshape")(probs))
        out = layers.Rescaling(-1.0, name=SCORE_OUTPUT)(top)
    elif score == "energy":
        z = logits_of(model)
        diff = layers.Subtract(name="ood_neg_lse")([layers.Activation("log_softmax", name="ood_log_softmax")(z), z])
        out = layers.GlobalAveragePooling1D(name=SCORE_OUTPUT)(layers.Reshape((k, 1), name="ood_reshape")(diff))
    elif score == "knn":
        out = _knn_score(features_of(model), stats)
    elif score in RELATIVE_SCORES:
        f = features_of(model)
        if RELATIVE_SCORES[score]:
            f = layers.UnitNormalization(name="ood_l2")(f)
        _check_means(score, stats, k, int(f.shape[-1]))
        out = _mahalanobis_score(f, stats, relative=True)
    else:
        f = logits_of(model) if score == "logit_cosine" else features_of(model)
        d = int(f.shape[-1])
        _check_means(score, stats, k, d)
        means = np.asarray(stats["means"], np.float64)
        if score in ("cosine", "logit_cosine"):
            if score == "logit_cosine":  # centred on the mean of the class means
                c = np.asarray(stats.get("center", means.mean(axis=0)), np.float64)
                means = means - c
                f = _constant_dense(f, np.eye(d), -c, "ood_center")
            m = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            sim = _constant_dense(layers.UnitNormalization(name="ood_l2")(f), m.T, None, "ood_cosine")
            top = layers.GlobalMaxPooling1D(name="ood_max_cos")(layers.Reshape((k, 1), name="ood_reshape")(sim))
            out = layers.Rescaling(-1.0, name=SCORE_OUTPUT)(top)
        else:
            out = _mahalanobis_score(f, stats, relative=False)
    return keras.Model(model.inputs, [probs, out], name=model.name)


def _check_means(score: str, stats: Optional[Dict], k: int, d: int) -> None:
    """Raise EdgeError unless ``stats`` has class means of shape (k, d)."""
    if stats is None or np.shape(stats.get("means")) != (k, d):
        raise EdgeError(f"the {score} score needs class statistics of the training split: means of shape "
                        f"({k}, {d}), got {None if stats is None else np.shape(stats.get('means'))}")


def _squared_norm(f, chol: np.ndarray, center: np.ndarray, tag: str):
    """``z = L^T (f - c)`` (a constant Dense) and ``||z||^2`` (Multiply, mean pooling, x D): the squared
    Mahalanobis distance of ``f`` to ``c`` for the precision ``L L^T``."""
    from keras import layers

    d = chol.shape[0]
    zw = _constant_dense(f, chol, -(center @ chol), f"ood_whiten{tag}")
    sq = layers.Reshape((d, 1), name=f"ood_sq{tag}_reshape")(layers.Multiply(name=f"ood_sq{tag}")([zw, zw]))
    return zw, layers.Rescaling(float(d), name=f"ood_sq{tag}_sum")(
        layers.GlobalAveragePooling1D(name=f"ood_sq{tag}_mean")(sq))


def _mahalanobis_score(f, stats: Dict, relative: bool):
    """``min_k (f - mu_k)^T P (f - mu_k)`` as ``||z||^2 + min_k (||m_k||^2 - 2 m_k.z)`` with the whitened,
    centred features ``z = L^T (f - c)``; ``relative``: minus ``(f - mu_0)^T P_0 (f - mu_0)``, the squared
    distance to the Gaussian of all training features (``stats["mean0"]``, ``stats["precision0"]``)."""
    from keras import layers

    from edge.ood import SCORE_OUTPUT

    d = int(f.shape[-1])
    means = np.asarray(stats["means"], np.float64)
    need = ("precision",) + (("precision0", "mean0") if relative else ())
    shapes = {"precision": (d, d), "precision0": (d, d), "mean0": (d,)}
    for key in need:
        if np.shape(stats.get(key)) != shapes[key]:
            raise EdgeError(f"the {'relative ' if relative else ''}mahalanobis score needs {key} of shape "
                            f"{shapes[key]}, got {np.shape(stats.get(key))}")
    c = np.asarray(stats.get("center", means.mean(axis=0)), np.float64)
    chol = np.linalg.cholesky(np.asarray(stats["precision"], np.float64))  # P = L L^T
    mk = (means - c) @ chol  # rows m_k = L^T (mu_k - c)
    zw, norm = _squared_norm(f, chol, c, "")
    cross = _constant_dense(zw, 2.0 * mk.T, -(mk ** 2).sum(axis=1), "ood_cross")  # 2 m_k.z - ||m_k||^2
    k = len(means)
    best = layers.GlobalMaxPooling1D(name="ood_max_cross")(layers.Reshape((k, 1), name="ood_reshape")(cross))
    if not relative:
        return layers.Subtract(name=SCORE_OUTPUT)([norm, best])
    chol0 = np.linalg.cholesky(np.asarray(stats["precision0"], np.float64))
    _, norm0 = _squared_norm(f, chol0, np.asarray(stats["mean0"], np.float64), "0")
    return layers.Subtract(name=SCORE_OUTPUT)([layers.Subtract(name="ood_class_dist")([norm, best]), norm0])


def _knn_score(f, stats: Optional[Dict]):
    """``-max_j cos(f, b_j)`` over the stored bank of l2-normalised training features (N, D)."""
    from keras import layers

    from edge.ood import SCORE_OUTPUT, l2_normalise

    d = int(f.shape[-1])
    bank = None if stats is None else stats.get("bank")
    if bank is None or np.ndim(bank) != 2 or np.shape(bank)[1] != d or not len(bank):
        raise EdgeError(f"the knn score needs a bank of the training split's features: shape (N, {d}), got "
                        f"{None if bank is None else np.shape(bank)}")
    b = l2_normalise(bank)
    sim = _constant_dense(layers.UnitNormalization(name="ood_l2")(f), b.T, None, "ood_knn")
    top = layers.GlobalMaxPooling1D(name="ood_max_sim")(layers.Reshape((len(b), 1), name="ood_reshape")(sim))
    return layers.Rescaling(-1.0, name=SCORE_OUTPUT)(top)


def _constant_dense(x, kernel: np.ndarray, bias: Optional[np.ndarray], name: str):
    """``x @ kernel (+ bias)`` as a non-trainable Dense layer holding the constants (float32)."""
    from keras import layers

    dense = layers.Dense(kernel.shape[1], use_bias=bias is not None, trainable=False, name=name)
    y = dense(x)
    dense.set_weights([kernel.astype(np.float32)] + ([] if bias is None else [np.asarray(bias, np.float32)]))
    return y
