"""Normalisation statistics computed from local data and stored inside the model.

Decision: the statistics live in the Keras graph (``models.layers.Standardize`` on the input,
``Destandardize`` on regression heads) as non-trainable weights, so federated averaging carries
them like any other weight and float exports (float32, float16, dynamic) take raw sensor
values and return real units with no work outside the graph.

Full-int8 exports are the exception: one int8 input tensor has one scale, and raw features of
different magnitudes (pressure ~1013 hPa beside temperature varying by 1 °C) cannot share it
(the top-1 agreement of a room classifier fell to 0.88). So the int8 graph is cut after
``Standardize`` and before ``Destandardize`` (``strip``), and the manifest's
``input.normalization`` (``where: "runtime"``) tells ``models.runtime`` to apply the same
statistics around the interpreter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.spec import ModelSpec

STANDARDIZE = "standardize"
TARGET_SCALE = "head_target_scale"
MIN_VARIANCE = 1e-6


def _moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
    return flat.mean(axis=0), np.maximum(flat.var(axis=0), MIN_VARIANCE)


def _layer(model: Any, name: str) -> Any | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def has_identity_stats(model: Any) -> bool:
    """True while the input statistics are still the initial mean 0, variance 1."""
    layer = _layer(model, STANDARDIZE)
    if layer is None:
        return False
    mean, var = (np.asarray(w) for w in layer.get_weights())
    return bool(np.all(mean == 0.0) and np.all(var == 1.0))


def adapt(model: Any, spec: ModelSpec, x: np.ndarray, y: np.ndarray | None = None) -> None:
    """Set the input (and regression target) statistics from local data."""
    layer = _layer(model, STANDARDIZE)
    if layer is not None:
        layer.set_weights([w.astype(np.float32) for w in _moments(x)])
    target = _layer(model, TARGET_SCALE)
    if target is not None and y is not None:
        target.set_weights([w.astype(np.float32) for w in _moments(np.asarray(y))])


def describe(model: Any, where: str = "in-graph") -> dict[str, Any]:
    """The statistics as plain lists for the manifest; ``where`` is ``in-graph`` or ``runtime``."""
    out: dict[str, Any] = {"where": where}
    for prefix, name in (("", STANDARDIZE), ("target_", TARGET_SCALE)):
        layer = _layer(model, name)
        if layer is not None:
            mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
            out[f"{prefix}mean"] = mean.tolist()
            out[f"{prefix}variance"] = var.tolist()
    return out


def strip(model: Any) -> Any:
    """The graph between ``Standardize`` and ``Destandardize``: standardised in and out."""
    import keras

    start = _layer(model, STANDARDIZE)
    end = _layer(model, TARGET_SCALE)
    if start is None:
        return model
    outputs = end.input if end is not None else model.output
    return keras.Model(start.output, outputs, name="core")  # short: names go into the file
