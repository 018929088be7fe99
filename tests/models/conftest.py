"""Shared fixtures: trained models per family and exported bundles (built once per session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from models import families, synthetic
from models.spec import ModelSpec

CASES = [
    ("mlp", "classify"),
    ("mlp", "regress"),
    ("cnn1d", "classify"),
    ("cnn1d", "forecast"),
    ("tiny_cnn", "classify"),
    ("autoencoder", "anomaly"),
]


@dataclass
class Trained:
    spec: ModelSpec
    model: Any
    train: synthetic.Dataset
    held: synthetic.Dataset
    metrics: dict[str, float]


@pytest.fixture(scope="session")
def trained() -> Callable[[str, str], Trained]:
    """``trained(family, task)``: a model trained for a few epochs on its synthetic task."""
    from models.training import TrainSettings, fit

    cache: dict[tuple[str, str], Trained] = {}

    def get(family: str, task: str) -> Trained:
        if (family, task) not in cache:
            ds = synthetic.make(family, task, n=400, seed=1)
            train, held = ds.split(0.25)
            model = families.build(ds.spec)
            result = fit(
                model, ds.spec, (train.x, train.y), TrainSettings(epochs=6, learning_rate=3e-3)
            )
            cache[(family, task)] = Trained(ds.spec, model, train, held, result.metrics)
        return cache[(family, task)]

    return get


@pytest.fixture(scope="session")
def bundle(
    trained: Callable[[str, str], Trained], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """``bundle(family, task, quantization)``: an exported model directory (cached)."""
    from models.export import export_tflite

    cache: dict[tuple[str, str, str], Path] = {}

    def get(family: str = "mlp", task: str = "classify", quantization: str = "float32") -> Path:
        key = (family, task, quantization)
        if key not in cache:
            t = trained(family, task)
            out = tmp_path_factory.mktemp(f"{family}-{task}-{quantization}")
            export_tflite(
                t.model,
                t.spec,
                out,
                quantization=quantization,
                representative=t.train.x,
                held=(t.held.x, t.held.y),
                name=f"{family}-{task}",
                version="1",
                metrics=t.metrics,
            )
            cache[key] = out
        return cache[key]

    return get
