"""``cnn1d``: three small 1-D convolutions over multichannel time windows.

Classify a window, regress a value from it, or forecast the next step of every channel.
"""

from __future__ import annotations

import keras

from models.families._common import head, model, stem
from models.spec import ModelSpec


def build(spec: ModelSpec) -> keras.Model:
    inputs, h = stem(spec)
    w = spec.width
    h = keras.layers.Conv1D(w // 2, 3, padding="same", activation="relu", name="conv_1")(h)
    h = keras.layers.Conv1D(w, 3, padding="same", activation="relu", name="conv_2")(h)
    if spec.input.shape[0] >= 8:
        h = keras.layers.MaxPooling1D(2, name="pool")(h)
    h = keras.layers.Conv1D(w, 3, padding="same", activation="relu", name="conv_3")(h)
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    h = keras.layers.Dense(w, activation="relu", name="dense")(h)
    return model(inputs, head(h, spec), spec)
