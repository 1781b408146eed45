"""Keras → FP32 ONNX, and the checks every conversion starts with.

* Models are loaded by :func:`edge.runtime.keras.load_keras_model` (``safe_mode=True``, custom
  objects and Lambda layers refused); :func:`check_classifier` refuses models whose output is not a
  softmax over the classes.
* :func:`keras_to_onnx` exports with tf2onnx (opset 17 by default: TensorRT 8.5 parses 13-17),
  float32 NHWC input with a dynamic batch dimension.
* :func:`check_onnx` runs ``onnx.checker``; :func:`check_against_keras` compares ONNX Runtime (sessions
  from :func:`edge.runtime.onnxrt.session`) with Keras on real images.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.errors import EdgeError
from edge.formats import TOLERANCES
from edge.runtime.keras.loader import quiet_tensorflow
from edge.runtime.onnxrt.session import session as ort_session

log = logging.getLogger(__name__)

#: Opset written by default; TensorRT 8.5 (JetPack 5.1) parses opsets 9-17.
DEFAULT_OPSET = 17
#: Max abs probability difference allowed between the FP32 ONNX and Keras (edge/formats.py).
FP32_TOLERANCE = TOLERANCES["fp32"]["max_abs"]


def _last_activation(model) -> Optional[str]:
    """Name of the activation that produces the model output, if it can be seen."""
    import keras

    layer = model.layers[-1] if model.layers else None
    hist = getattr(model.outputs[0], "_keras_history", None) if model.outputs else None
    if hist is not None:  # the layer producing the probabilities (a score output may come after it)
        layer = hist[0]
    if layer is None:
        return None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", str(layer.activation))
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def check_classifier(model, classes: Sequence[str], input_shape: Sequence[int]) -> None:
    """Check that the model maps one NHWC image to a softmax over ``classes``.

    Raises:
        EdgeError: several inputs/outputs, input shape not the preprocessing's, output not
            (N, len(classes)), or no softmax at the end.
    """
    from edge.ood import SCORE_OUTPUT

    extra = model.outputs[1:]
    score_ok = (len(extra) == 1 and getattr(extra[0], "_keras_history", [None])[0] is not None
                and extra[0]._keras_history[0].name == SCORE_OUTPUT and tuple(extra[0].shape)[1:] == (1,))
    if len(model.inputs) != 1 or (extra and not score_ok):
        raise EdgeError(f"the model has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
                        f"a classifier with one input and one output (plus an optional {SCORE_OUTPUT!r} (N, 1) "
                        "output) is expected")
    ishape = tuple(model.inputs[0].shape)[1:]
    if tuple(ishape) != tuple(input_shape):
        raise EdgeError(f"the model input is {ishape} but its preprocessing gives {tuple(input_shape)}")
    oshape = tuple(model.outputs[0].shape)
    if len(oshape) != 2 or oshape[1] != len(classes):
        raise EdgeError(f"the model output has shape {oshape}, not (N, {len(classes)}): it is not a classifier "
                        f"over the {len(classes)} classes {list(classes)}")
    act = _last_activation(model)
    if act != "softmax":
        raise EdgeError(f"the model output is not a softmax (last layer {model.layers[-1].name!r} has activation "
                        f"{act!r}); the toolkit compares probabilities, add a softmax output")


def keras_to_onnx(model, out: str | os.PathLike, input_shape: Sequence[int], opset: int = DEFAULT_OPSET,
                  batch: Optional[int] = None, input_name: str = "input") -> Path:
    """Export a Keras model to ONNX with tf2onnx.

    Args:
        model: A loaded Keras 3 model.
        out: Output ``.onnx`` path (written atomically).
        input_shape: (H, W, C).
        opset: ONNX opset (13-17 for TensorRT 8.5+).
        batch: Fixed batch size, or None for a dynamic batch dimension.
        input_name: Name of the graph input.

    Returns:
        The written path.
    """
    quiet_tensorflow()
    import onnx
    import tensorflow as tf
    import tf2onnx

    from edge.fsutil import atomic_path

    spec = (tf.TensorSpec((batch, *input_shape), tf.float32, name=input_name),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as e:
        raise EdgeError(f"tf2onnx cannot convert the model: {' '.join(str(e).split())[:200]}") from None
    # One output name the rest of the toolkit can rely on.
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return out


def check_onnx(path: str | os.PathLike) -> None:
    """``onnx.checker`` on the file (full check with shape inference).

    Raises:
        EdgeError: the model is invalid.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise EdgeError(f"{Path(path).name} fails onnx.checker: {' '.join(str(e).split())[:200]}") from None


def ort_predict(sess, x: np.ndarray, batch: int = 32, output: Optional[str] = None) -> np.ndarray:
    """One output of a session for a float32 batch, in chunks of ``batch``: the probabilities (the first
    output), or the output named ``output``."""
    inp = sess.get_inputs()[0]
    name = inp.name
    if isinstance(inp.shape[0], int) and inp.shape[0] > 0:  # fixed batch model
        batch = inp.shape[0]
    names = None if output is None else [output]
    outs = [sess.run(names, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)


def keras_predict(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Probabilities of a Keras model (inference mode; the first output of a model with a score output)."""
    out = model.predict(x, batch_size=batch, verbose=0)
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, dtype=np.float32)


def compare(ref: np.ndarray, other: np.ndarray) -> Dict[str, float]:
    """Max abs probability difference and top-1 agreement of two (N, K) arrays (:mod:`edge.metrics`)."""
    from edge.metrics import agreement, prob_diffs

    return {"images": int(len(ref)), "max_abs_diff": prob_diffs(ref, other)["max_abs_prob_diff"],
            "top1_agreement": agreement(ref, other)}


def check_against_keras(model, onnx_path: str | os.PathLike, x: np.ndarray, tolerance: float = FP32_TOLERANCE,
                        source: str = "") -> Dict[str, float]:
    """Compare the FP32 ONNX with Keras on the batch ``x``; stop if they differ by more than ``tolerance``.

    Raises:
        EdgeError: max abs probability difference above ``tolerance`` (the figure is in the message).
    """
    ref = keras_predict(model, x)
    got = ort_predict(ort_session(onnx_path), x)
    res = compare(ref, got)
    res["tolerance"] = tolerance
    res["images_from"] = source
    if res["max_abs_diff"] > tolerance:
        raise EdgeError(f"the FP32 ONNX differs from Keras by {res['max_abs_diff']:.3g} (max abs probability, "
                        f"{res['images']} images; allowed {tolerance:g}); top-1 agreement {res['top1_agreement']:.1%}")
    return res


def io_names(path: str | os.PathLike) -> List[str]:
    """[input name, output name] of an ONNX file."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    return [g.input[0].name, g.output[0].name]
