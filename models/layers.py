"""Keras layers that carry normalisation statistics inside the model (and its TFLite graph).

The statistics are non-trainable weights, so they travel with ``get_weights()`` through
federated rounds (FedAvg averages them) and are baked into every exported ``.tflite``: the
runtime feeds raw sensor values, never normalises by itself.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

EPSILON = 1e-6


class _Stats(keras.layers.Layer):
    """Holds per-channel ``mean`` and ``variance`` (last axis) as non-trainable weights."""

    def build(self, input_shape: Any) -> None:
        n = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(n,), initializer="zeros", trainable=False)
        self.variance = self.add_weight(
            name="variance", shape=(n,), initializer="ones", trainable=False
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="orchard")
class Standardize(_Stats):
    """``(x - mean) / sqrt(variance)`` per channel."""

    def call(self, x: Any) -> Any:
        return (x - self.mean) * ops.rsqrt(self.variance + EPSILON)


@keras.saving.register_keras_serializable(package="orchard")
class Destandardize(_Stats):
    """``x * sqrt(variance) + mean``: maps a head's standardised output back to real units."""

    def call(self, x: Any) -> Any:
        return x * ops.sqrt(self.variance + EPSILON) + self.mean


@keras.saving.register_keras_serializable(package="orchard")
class ReconstructionError(keras.layers.Layer):
    """Mean squared difference of ``[reconstruction, target]`` per sample, shape ``(batch, 1)``."""

    def call(self, inputs: Any) -> Any:
        reconstruction, target = inputs
        return ops.mean(ops.square(reconstruction - target), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0][0], 1)
