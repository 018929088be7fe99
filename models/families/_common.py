"""Pieces every family shares: the normalising input stem and the task head.

Layers whose name starts with ``head`` form the head; ``freeze_base`` trains only those.
"""

from __future__ import annotations

from typing import Any

import keras

from models.layers import Destandardize, Standardize
from models.spec import ModelSpec, Task

HEAD_PREFIX = "head"


def stem(spec: ModelSpec) -> tuple[Any, Any]:
    """Return ``(input, standardised input)``."""
    inputs = keras.Input(shape=spec.input.shape, dtype="float32", name="x")
    return inputs, Standardize(name="standardize")(inputs)


def head(features: Any, spec: ModelSpec) -> Any:
    """The task's output layer(s) on top of a feature vector."""
    if spec.task is Task.CLASSIFY:
        return keras.layers.Dense(spec.n_outputs, activation="softmax", name=HEAD_PREFIX)(features)
    y = keras.layers.Dense(spec.n_outputs, name=HEAD_PREFIX)(features)
    return Destandardize(name=f"{HEAD_PREFIX}_target_scale")(y)


def model(inputs: Any, outputs: Any, spec: ModelSpec) -> keras.Model:
    return keras.Model(inputs, outputs, name=f"{spec.family}_{spec.task.value}")
