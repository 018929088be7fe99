"""``tiny_cnn``: a three-block CNN for small grayscale images (8x8 up to 100x100)."""

from __future__ import annotations

import keras

from models.families._common import head, model, stem
from models.spec import ModelSpec


def build(spec: ModelSpec) -> keras.Model:
    inputs, h = stem(spec)
    side = min(spec.input.shape[0], spec.input.shape[1])
    w = spec.width
    # Large images: a strided first convolution keeps compute Pi-sized.
    stride = 2 if side >= 48 else 1
    h = keras.layers.Conv2D(
        w // 4, 3, strides=stride, padding="same", activation="relu", name="conv_1"
    )(h)
    if side // stride >= 8:
        h = keras.layers.MaxPooling2D(2, name="pool_1")(h)
    h = keras.layers.Conv2D(w // 2, 3, padding="same", activation="relu", name="conv_2")(h)
    if side // stride >= 16:
        h = keras.layers.MaxPooling2D(2, name="pool_2")(h)
    h = keras.layers.Conv2D(w, 3, padding="same", activation="relu", name="conv_3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(w, activation="relu", name="dense")(h)
    return model(inputs, head(h, spec), spec)
