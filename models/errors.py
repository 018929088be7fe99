"""Exceptions raised by ``models``.

    ModelError
    ├── SpecError              a model spec, training or export option is invalid
    ├── ManifestError          a manifest is missing, unreadable or lacks a field
    ├── ModelFileError         a .tflite file cannot be used
    │   ├── ModelMissingError      no file at the path
    │   ├── ModelCorruptError      truncated, modified (sha256) or not a TFLite flatbuffer
    │   └── ModelMismatchError     shapes, dtypes or golden outputs differ from the manifest
    ├── ExportError            TensorFlow could not convert the model
    │   └── ParityError            the exported file disagrees with Keras beyond the policy
    ├── RuntimeUnavailableError    no TFLite interpreter package is installed
    └── PredictInputError      an input array has the wrong shape, dtype or non-finite values

LiteRT and TensorFlow raise ``ValueError``/``RuntimeError`` for most failures; the modules that
call them translate those into the classes above.
"""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised on purpose by ``models``."""


class SpecError(ModelError, ValueError):
    """An invalid model spec or option (Keras style: expected ..., Received: ...)."""


class ManifestError(ModelError):
    """The manifest beside a model file is missing, not JSON, or has a bad field."""


class ModelFileError(ModelError):
    """A model file cannot be used."""


class ModelMissingError(ModelFileError, FileNotFoundError):
    """The model file does not exist."""


class ModelCorruptError(ModelFileError):
    """The model file is truncated, modified or not a TFLite flatbuffer."""


class ModelMismatchError(ModelFileError):
    """The model's tensors or golden outputs do not match its manifest."""


class ExportError(ModelError):
    """Conversion to TFLite failed."""


class ParityError(ExportError):
    """The exported TFLite file disagrees with the Keras model beyond the parity policy."""

    def __init__(self, message: str, figures: dict[str, float]) -> None:
        super().__init__(message)
        self.figures = figures


class RuntimeUnavailableError(ModelError):
    """Neither ai-edge-litert, tflite-runtime nor tensorflow.lite can be imported."""


class PredictInputError(ModelError, ValueError):
    """The input to predict has the wrong shape or non-finite values."""
