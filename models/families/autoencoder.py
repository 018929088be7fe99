"""``autoencoder``: a dense bottleneck autoencoder whose output is the anomaly score.

The model outputs one value per sample: the mean squared reconstruction error in standardised
units. Training minimises that score on normal data; the exporter records a threshold (a high
percentile of scores on local data) in the manifest, and the runtime flags scores above it.
The decoder is the head (``freeze_base`` retrains only the decoder).
"""

from __future__ import annotations

import keras

from models.families._common import HEAD_PREFIX, model, stem
from models.layers import ReconstructionError
from models.spec import ModelSpec


def build(spec: ModelSpec) -> keras.Model:
    inputs, standardised = stem(spec)
    flat = keras.layers.Flatten(name="flatten")(standardised)
    n = spec.input.size
    w = spec.width
    bottleneck = max(2, min(w // 4, n // 2 or 1))
    h = keras.layers.Dense(w, activation="relu", name="encode_1")(flat)
    z = keras.layers.Dense(bottleneck, name="encode_z")(h)
    h = keras.layers.Dense(w, activation="relu", name=f"{HEAD_PREFIX}_decode_1")(z)
    recon = keras.layers.Dense(n, name=f"{HEAD_PREFIX}_decode_out")(h)
    score = ReconstructionError(name="score")([recon, flat])
    return model(inputs, score, spec)
