"""One training entry point for local training and federated rounds (imports TensorFlow).

``fit(model, spec, (x, y), TrainSettings(...), global_weights=...)`` trains in place and returns
the new weights and metrics. With ``mu > 0`` it adds FedProx's proximal term
``mu / 2 * ||w - w_global||^2`` over the trainable weights; with ``freeze_base`` only the head
(layers named ``head*``) trains, for on-device fine-tuning. Normalisation statistics are
computed from the local data when the model still carries the identity statistics (a fresh
model, or round one of a federation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.errors import SpecError
from models.families._common import HEAD_PREFIX
from models.normalization import adapt, has_identity_stats
from models.spec import ModelSpec, Task

logger = logging.getLogger(__name__)

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainSettings:
    """Options of one local training call (one federated round, or a local fit)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    mu: float = 0.0
    freeze_base: bool = False
    adapt_normalization: bool | None = None
    optimizer: str = "adam"
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SpecError(f"expected a positive integer. Received: {key}={value!r}")
        if not (isinstance(self.learning_rate, int | float) and 0 < self.learning_rate <= 10):
            raise SpecError(
                f"expected a number in (0, 10]. Received: learning_rate={self.learning_rate!r}"
            )
        if not (isinstance(self.mu, int | float) and self.mu >= 0):
            raise SpecError(f"expected a number >= 0. Received: mu={self.mu!r}")
        if self.optimizer not in ("adam", "sgd", "rmsprop"):
            raise SpecError(
                f"expected one of adam, sgd, rmsprop. Received: optimizer={self.optimizer!r}"
            )


@dataclass(frozen=True)
class TrainResult:
    weights: list[np.ndarray]
    metrics: dict[str, float] = field(default_factory=dict)


def metric_name(task: Task) -> str | None:
    """The metric reported beside the loss: accuracy, MAE (real units) or none."""
    return {Task.CLASSIFY: "accuracy", Task.REGRESS: "mae", Task.FORECAST: "mae"}.get(task)


def encode_labels(spec: ModelSpec, labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """Map label strings to class indices in ``spec.labels`` order."""
    index = {name: i for i, name in enumerate(spec.labels)}
    try:
        return np.fromiter((index[str(v)] for v in labels), dtype=np.int32, count=len(labels))
    except KeyError as exc:
        raise SpecError(
            f"expected labels among {list(spec.labels)}. Received: label={exc.args[0]!r}"
        ) from None


def check_arrays(spec: ModelSpec, x: np.ndarray, y: np.ndarray | None, name: str = "x") -> None:
    """Raise ``SpecError`` unless ``x`` (and ``y``) fit ``spec``; names the field and shape."""
    x = np.asarray(x)
    if x.ndim != len(spec.input.shape) + 1 or tuple(x.shape[1:]) != spec.input.shape:
        raise SpecError(
            f"expected {name} of shape (N, {', '.join(map(str, spec.input.shape))}). "
            f"Received: {name}.shape={x.shape}"
        )
    if len(x) == 0:
        raise SpecError(f"expected at least one example. Received: {name}.shape={x.shape}")
    if not np.all(np.isfinite(x)):
        raise SpecError(f"expected finite values. Received: {name} with NaN or inf")
    if y is None:
        return
    y = np.asarray(y)
    if len(y) != len(x):
        raise SpecError(f"expected {len(x)} targets, one per example. Received: len(y)={len(y)}")
    if spec.task is Task.CLASSIFY and (
        y.ndim != 1
        or not np.issubdtype(y.dtype, np.integer)
        or y.min() < 0
        or y.max() >= spec.n_outputs
    ):
        raise SpecError(
            f"expected integer class indices in [0, {spec.n_outputs}) (see encode_labels). "
            f"Received: y.dtype={y.dtype}, y.shape={y.shape}"
        )
    if spec.task in (Task.REGRESS, Task.FORECAST) and y.shape[1:] != (spec.n_outputs,):
        raise SpecError(f"expected y of shape (N, {spec.n_outputs}). Received: y.shape={y.shape}")


def _batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator
) -> Iterator[Arrays]:
    order = rng.permutation(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def _loss_fn(model: keras.Model, spec: ModelSpec) -> Any:
    if spec.task is Task.CLASSIFY:
        return lambda y, p: tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, p))
    if spec.task is Task.ANOMALY:
        return lambda _y, p: tf.reduce_mean(p)
    # Regression losses in standardised target units, so no output dominates by its scale.
    scale = model.get_layer(f"{HEAD_PREFIX}_target_scale")
    return lambda y, p: tf.reduce_mean(tf.square((y - p) * tf.math.rsqrt(scale.variance + 1e-6)))


def _metric_fn(spec: ModelSpec) -> Any:
    if spec.task is Task.CLASSIFY:
        return lambda y, p: tf.reduce_mean(
            tf.cast(tf.equal(tf.cast(tf.argmax(p, axis=-1), y.dtype), y), tf.float32)
        )
    if spec.task is Task.ANOMALY:
        return lambda y, p: tf.constant(0.0)
    return lambda y, p: tf.reduce_mean(tf.abs(y - p))


def _dummy_targets(spec: ModelSpec, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    if y is not None:
        return np.asarray(y, dtype=np.int32 if spec.task is Task.CLASSIFY else np.float32)
    if spec.task is Task.ANOMALY:
        return np.zeros((len(x), 1), np.float32)
    raise SpecError(f"expected targets y for task {spec.task.value!r}. Received: y=None")


class _Step:
    """One model's compiled train step for one kind of call, reused round after round.

    A fresh ``tf.function`` and optimizer per call would trace a new graph every round, and
    TensorFlow keeps every traced graph: a warm trainer grew ~2 MB per round. Here the graph is
    traced once per (model, optimizer, frozen base, proximal term); each call resets the
    optimizer's state (a round starts from fresh moments, as before) and assigns the learning
    rate, ``mu`` and the proximal targets to variables the graph reads.
    """

    def __init__(self, model: keras.Model, spec: ModelSpec, config: TrainSettings) -> None:
        trainable = list(model.trainable_variables)
        self.optimizer = keras.optimizers.get(
            {"class_name": config.optimizer, "config": {"learning_rate": config.learning_rate}}
        )
        self.optimizer.build(trainable)
        self.position = {id(v): i for i, v in enumerate(model.weights)}
        self.n_weights = len(model.weights)
        self.trainable = trainable
        self.mu = tf.Variable(0.0, trainable=False, name="proximal_mu")
        self.prox = (
            [tf.Variable(v, trainable=False, name="proximal_target") for v in trainable]
            if config.mu > 0
            else []
        )
        loss_fn, metric_fn = _loss_fn(model, spec), _metric_fn(spec)
        optimizer, prox, mu = self.optimizer, self.prox, self.mu

        @tf.function(reduce_retracing=True)
        def step(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                loss = loss_fn(yb, pred)
                total = loss
                if prox:
                    total += mu * tf.add_n(
                        [
                            tf.reduce_sum(tf.square(v - g))
                            for v, g in zip(trainable, prox, strict=True)
                        ]
                    )
            grads = tape.gradient(total, trainable)
            optimizer.apply_gradients(zip(grads, trainable, strict=True))
            return loss, metric_fn(yb, pred)

        self.fn = step

    def prepare(self, config: TrainSettings, global_weights: Sequence[np.ndarray] | None) -> None:
        for var in self.optimizer.variables:
            var.assign(tf.zeros_like(var))
        self.optimizer.learning_rate = float(config.learning_rate)
        self.mu.assign(float(config.mu) / 2.0)
        if self.prox:
            assert global_weights is not None
            if len(global_weights) != self.n_weights:
                raise SpecError(
                    f"expected {self.n_weights} global weight arrays. "
                    f"Received: {len(global_weights)}"
                )
            for v, target in zip(self.trainable, self.prox, strict=True):
                target.assign(np.asarray(global_weights[self.position[id(v)]], np.float32))


STEPS_ATTR = "_orchard_train_steps"


def _step_for(model: keras.Model, spec: ModelSpec, config: TrainSettings) -> _Step:
    key = (config.optimizer, config.freeze_base, config.mu > 0)
    steps: dict[tuple[str, bool, bool], _Step] | None = getattr(model, STEPS_ATTR, None)
    if steps is None:  # beside the model, not tracked by Keras (it would wrap the dict)
        steps = {}
        object.__setattr__(model, STEPS_ATTR, steps)
    if key not in steps:
        steps[key] = _Step(model, spec, config)
    return steps[key]


def fit(
    model: keras.Model,
    spec: ModelSpec,
    data: tuple[np.ndarray, np.ndarray | None],
    config: TrainSettings | None = None,
    *,
    global_weights: Sequence[np.ndarray] | None = None,
    validation: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` and return its weights and metrics.

    ``data`` is ``(x, y)``: ``y`` holds class indices for classify (see ``encode_labels``),
    values for regress/forecast, and may be ``None`` for anomaly. Metrics: ``loss``,
    ``accuracy`` or ``mae``, ``examples``, ``duration_s`` (and ``val_*`` with ``validation``).
    """
    config = config or TrainSettings()
    started = time.perf_counter()
    x, y = np.asarray(data[0], np.float32), data[1]
    check_arrays(spec, x, y)
    y = _dummy_targets(spec, x, y)
    if config.adapt_normalization or (
        config.adapt_normalization is None and has_identity_stats(model)
    ):
        adapt(model, spec, x, y)
    if config.mu > 0 and global_weights is None:
        raise SpecError(
            f"expected global_weights for the proximal term. Received: mu={config.mu}, "
            "global_weights=None"
        )

    frozen = _freeze(model, config.freeze_base)
    try:
        step = _step_for(model, spec, config)
        step.prepare(config, global_weights)
        rng = np.random.default_rng(config.seed)
        for _ in range(config.epochs):
            seen, loss_sum, metric_sum = 0, 0.0, 0.0
            for xb, yb in _batches(x, y, config.batch_size, rng):
                loss_t, metric_t = step.fn(tf.constant(xb), tf.constant(yb))
                seen += len(xb)
                loss_sum += float(loss_t) * len(xb)
                metric_sum += float(metric_t) * len(xb)
    finally:
        _unfreeze(frozen)

    metrics: dict[str, float] = {
        "loss": loss_sum / seen,
        "examples": float(len(x)),
        "epochs": float(config.epochs),
        "duration_s": time.perf_counter() - started,
    }
    name = metric_name(spec.task)
    if name:
        metrics[name] = metric_sum / seen
    if validation is not None:
        val = evaluate(model, spec, validation)
        metrics.update({f"val_{k}": v for k, v in val.items() if k != "examples"})
    logger.debug("fit %s: %s", spec.family, metrics)
    return TrainResult(weights=model.get_weights(), metrics=metrics)


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Keras forward pass in batches, as float32 numpy."""
    outs = [
        np.asarray(model(tf.constant(x[i : i + batch_size]), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs).astype(np.float32)


def evaluate(
    model: keras.Model, spec: ModelSpec, data: tuple[np.ndarray, np.ndarray | None]
) -> dict[str, float]:
    """``loss`` and ``accuracy``/``mae`` of ``model`` on ``(x, y)``, plus ``examples``."""
    x = np.asarray(data[0], np.float32)
    check_arrays(spec, x, data[1])
    y = _dummy_targets(spec, x, data[1])
    pred = predict(model, x)
    loss = float(_loss_fn(model, spec)(tf.constant(y), tf.constant(pred)))
    out = {"loss": loss, "examples": float(len(x))}
    name = metric_name(spec.task)
    if name:
        out[name] = float(_metric_fn(spec)(tf.constant(y), tf.constant(pred)))
    return out


def set_weights(model: keras.Model, weights: Sequence[np.ndarray]) -> None:
    """``model.set_weights`` with an error that names the first mismatching array."""
    current = model.get_weights()
    if len(weights) != len(current):
        raise SpecError(
            f"expected {len(current)} weight arrays for {model.name}. Received: {len(weights)}"
        )
    for i, (have, new) in enumerate(zip(current, weights, strict=True)):
        if tuple(np.shape(new)) != have.shape:
            raise SpecError(
                f"expected weights[{i}] of shape {have.shape}. Received: {tuple(np.shape(new))}"
            )
    model.set_weights([np.asarray(w) for w in weights])


def _freeze(model: keras.Model, freeze_base: bool) -> list[keras.layers.Layer]:
    if not freeze_base:
        return []
    frozen = [
        layer
        for layer in model.layers
        if layer.trainable and layer.weights and not layer.name.startswith(HEAD_PREFIX)
    ]
    for layer in frozen:
        layer.trainable = False
    return frozen


def _unfreeze(layers: list[keras.layers.Layer]) -> None:
    for layer in layers:
        layer.trainable = True
