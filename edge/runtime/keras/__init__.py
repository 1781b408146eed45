from edge.runtime.keras.runner import KerasRunner

__all__ = ["KerasRunner"]
