"""The training entry point: learning, FedProx, frozen base, normalisation, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from models import families, synthetic
from models.errors import SpecError
from models.normalization import has_identity_stats
from models.training import TrainSettings, encode_labels, evaluate, fit, set_weights


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True)))


@pytest.mark.parametrize(
    ("family", "task", "metric", "good"),
    [
        ("mlp", "classify", "accuracy", 0.8),
        ("mlp", "regress", "mae", 0.6),
        ("cnn1d", "classify", "accuracy", 0.9),
        ("tiny_cnn", "classify", "accuracy", 0.9),
    ],
)
def test_families_learn_their_synthetic_task(trained, family, task, metric, good) -> None:  # type: ignore[no-untyped-def]
    t = trained(family, task)
    held = evaluate(t.model, t.spec, (t.held.x, t.held.y))
    assert held["examples"] == len(t.held.x)
    if metric == "accuracy":
        chance = 1 / t.spec.n_outputs
        assert held[metric] >= max(good, chance + 0.3), held
    else:
        assert held[metric] <= good, held
    assert t.metrics["examples"] == len(t.train.x)
    assert t.metrics["duration_s"] > 0


def test_autoencoder_scores_anomalies_higher(trained) -> None:  # type: ignore[no-untyped-def]
    from models.training import predict

    t = trained("autoencoder", "anomaly")
    normal = predict(t.model, t.held.x)[:, 0]
    odd = t.held.x.copy()
    odd[:, 4] += 600  # CO2 far from what temperature predicts
    assert np.median(predict(t.model, odd)[:, 0]) > 5 * np.median(normal)


def test_normalisation_adapted_from_local_data() -> None:
    ds = synthetic.make("mlp", "classify", n=200)
    model = families.build(ds.spec)
    assert has_identity_stats(model)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=1))
    mean, var = model.get_layer("standardize").get_weights()
    np.testing.assert_allclose(mean, ds.x.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(var, ds.x.var(axis=0), rtol=1e-3)


def test_fedprox_mu_keeps_weights_near_global() -> None:
    ds = synthetic.make("mlp", "classify", n=300, seed=3)
    base = families.build(ds.spec)
    fit(base, ds.spec, (ds.x[:50], ds.y[:50]), TrainSettings(epochs=1))
    global_w = base.get_weights()
    drift = {}
    for mu in (0.0, 5.0):
        model = families.build(ds.spec)
        set_weights(model, global_w)
        cfg = TrainSettings(epochs=5, learning_rate=1e-2, mu=mu)
        result = fit(model, ds.spec, (ds.x, ds.y), cfg, global_weights=global_w)
        drift[mu] = _distance(result.weights, global_w)
    assert drift[5.0] < 0.5 * drift[0.0], drift


def test_freeze_base_trains_only_the_head() -> None:
    ds = synthetic.make("mlp", "classify", n=200)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=1))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=2, learning_rate=1e-2, freeze_base=True))
    for layer in model.layers:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(before[layer.name], layer.get_weights(), strict=True)
        )
        assert changed == layer.name.startswith("head"), layer.name
    assert all(layer.trainable for layer in model.layers)  # restored afterwards


def test_validation_metrics_reported() -> None:
    ds = synthetic.make("mlp", "classify", n=200)
    train, held = ds.split()
    model = families.build(ds.spec)
    r = fit(model, ds.spec, (train.x, train.y), TrainSettings(), validation=(held.x, held.y))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "examples"} <= set(r.metrics)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda x, y: (x[:, :3], y), "expected x of shape (N, 5). Received: x.shape=(50, 3)"),
        (lambda x, y: (np.where(x > 1000, np.nan, x), y), "expected finite values"),
        (lambda x, y: (x, y[:10]), "expected 50 targets"),
        (lambda x, y: (x, y + 7), "integer class indices in [0, 3)"),
    ],
)
def test_bad_training_data_named(mutate, fragment) -> None:  # type: ignore[no-untyped-def]
    ds = synthetic.make("mlp", "classify", n=50)
    model = families.build(ds.spec)
    with pytest.raises(SpecError) as err:
        fit(model, ds.spec, mutate(ds.x, ds.y))
    assert fragment in str(err.value)


def test_bad_config_and_labels() -> None:
    with pytest.raises(SpecError, match=r"positive integer\. Received: epochs=0"):
        TrainSettings(epochs=0)
    with pytest.raises(SpecError, match=r"Received: mu=-1"):
        TrainSettings(mu=-1)
    spec = synthetic.make("mlp", "classify", n=8).spec
    assert encode_labels(spec, ["occupied", "empty"]).tolist() == [1, 0]
    with pytest.raises(SpecError, match=r"Received: label='party'"):
        encode_labels(spec, ["empty", "party"])


def test_set_weights_names_the_mismatch() -> None:
    spec = synthetic.make("mlp", "classify", n=8).spec
    model = families.build(spec)
    weights = model.get_weights()
    weights[2] = np.zeros((3, 3), np.float32)
    with pytest.raises(SpecError, match=r"expected weights\[2\] of shape"):
        set_weights(model, weights)


def test_a_warm_model_reuses_its_train_step_and_each_call_starts_afresh() -> None:
    """Rounds on one model trace once; learning rate, optimizer state and mu are per call."""
    from models.training import STEPS_ATTR

    ds = synthetic.make("mlp", "classify", n=200, seed=5)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=1, batch_size=64, learning_rate=0.01))
    (step,) = getattr(model, STEPS_ATTR).values()
    traces = step.fn.experimental_get_tracing_count()
    assert 1 <= traces <= 2  # full batches, and the shorter last one
    assert int(step.optimizer.iterations) == 4  # ceil(200 / 64) steps

    before = model.get_weights()
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=2, batch_size=64, learning_rate=1e-12))
    assert getattr(model, STEPS_ATTR) == {("adam", False, False): step}  # the same step
    assert step.fn.experimental_get_tracing_count() == traces  # no new trace
    assert int(step.optimizer.iterations) == 8  # counted from zero again: 2 epochs x 4
    assert _distance(model.get_weights(), before) < 1e-12  # the new learning rate applies

    prox = TrainSettings(learning_rate=0.05, mu=1.0)
    fit(model, ds.spec, (ds.x, ds.y), prox, global_weights=before)
    assert len(getattr(model, STEPS_ATTR)) == 2  # a proximal step beside the plain one
