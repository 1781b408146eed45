"""The one Keras loader: ``.keras`` files with ``safe_mode=True``, one error rule for what is refused.

Used by the Keras runner (the FP32 reference of the bench and the regression suite), the converter
(:func:`convert.convert_model`), fine-tuning and the open-set score. TensorFlow is imported only here,
when a model is loaded.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from edge.errors import EdgeError


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter off (before TensorFlow is first imported), and its Python warnings
    (e.g. tf.function retracing after several models' ``predict`` in one process) below the commands' log
    level: they are not the user's to act on, and would add a line to a command's one-line error."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` model safely (``compile=False``).

    Raises:
        EdgeError: missing file, a folder, not a Keras 3 archive, custom objects or Lambda layers
            (refused by safe mode: they would run arbitrary code), or any other load failure.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeError(f"model file {path} does not exist")
    if path.is_dir():
        raise EdgeError(f"{path} is a folder, not a Keras model file (.keras)")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise EdgeError(f"{path} is not a Keras model file (a .keras zip archive saved by Keras 3)")
    with zipfile.ZipFile(path) as z:
        if "config.json" not in z.namelist():
            raise EdgeError(f"{path} is not a Keras model file (no config.json in the archive)")
    quiet_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # keras raises ValueError/TypeError with long multi-line texts
        msg = " ".join(str(e).split())
        if "Lambda" in msg or "safe_mode" in msg or "unsafe" in msg:
            raise EdgeError(f"{path} holds a Lambda layer or other Python code: refused (safe_mode loading "
                            "does not run code stored in a model file; rebuild the model without Lambda layers)") from None
        if "Could not locate" in msg or "custom" in msg.lower() or "registered" in msg or "Unknown" in msg:
            raise EdgeError(f"{path} uses custom objects that this toolkit cannot load safely ({msg[:160]}); "
                            "export a model built from standard Keras layers") from None
        raise EdgeError(f"cannot load Keras model {path}: {msg[:200]}") from None
