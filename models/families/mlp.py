"""``mlp``: two dense layers for tabular rows (classify, regress)."""

from __future__ import annotations

import keras

from models.families._common import head, model, stem
from models.spec import ModelSpec


def build(spec: ModelSpec) -> keras.Model:
    inputs, h = stem(spec)
    h = keras.layers.Dense(spec.width, activation="relu", name="dense_1")(h)
    h = keras.layers.Dense(spec.width, activation="relu", name="dense_2")(h)
    return model(inputs, head(h, spec), spec)
