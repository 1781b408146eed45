from edge.runtime.keras.loader import load_keras_model
from edge.runtime.keras.runner import KerasRunner

__all__ = ["KerasRunner", "load_keras_model"]
