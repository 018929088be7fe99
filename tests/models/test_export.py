"""TFLite export in every quantisation, the parity gate and the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.errors import ParityError
from models.export import ParityPolicy, export_tflite
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, sha256_file
from models.runtime import Predictor

from .conftest import CASES

QUANTIZATIONS = ["float32", "float16", "dynamic", "int8"]


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
@pytest.mark.parametrize(("family", "task"), CASES)
def test_export_every_family_and_quantization(trained, bundle, family, task, quantization) -> None:  # type: ignore[no-untyped-def]
    t = trained(family, task)
    path = bundle(family, task, quantization)
    manifest = Manifest.load(path / MANIFEST_FILE)
    assert manifest.parity["passed"] is True
    assert manifest.quantization == quantization
    assert manifest.sha256 == sha256_file(path / MODEL_FILE)
    assert manifest.size_bytes == (path / MODEL_FILE).stat().st_size

    predictor = Predictor.load(path)  # verifies sha256, tensors and golden samples
    got = predictor.predict(t.held.x)
    from models.training import predict

    want = predict(t.model, t.held.x)
    assert got.shape == want.shape
    if task == "classify":
        agreement = np.mean(got.argmax(-1) == want.argmax(-1))
        assert agreement >= 0.9
    else:
        assert np.mean(np.abs(got - want)) <= 0.15 * (want.std() + 1e-6) + 1e-4
    if quantization == "int8":
        assert manifest.input_tensor.dtype == "int8"
        assert manifest.parity["per_channel"] in (False, True)  # per-tensor first, then fallback
        assert manifest.normalization["where"] == "runtime"
    else:
        assert manifest.normalization["where"] == "in-graph"


def test_manifest_has_every_field(trained, bundle) -> None:  # type: ignore[no-untyped-def]
    t = trained("mlp", "classify")
    data = json.loads((bundle("mlp", "classify", "int8") / MANIFEST_FILE).read_text())
    assert data["name"] == "mlp-classify" and data["version"] == "1"
    assert data["task"] == "classify" and data["family"] == "mlp"
    assert data["input"]["feature_names"] == list(t.spec.input.feature_names)
    assert data["input"]["units"] == list(t.spec.input.units)
    assert len(data["input"]["normalization"]["mean"]) == 5
    assert data["output"]["labels"] == ["empty", "occupied", "ventilating"]
    assert data["quantization"] == "int8"
    assert len(data["file"]["sha256"]) == 64
    assert data["parity"]["agreement"] >= 0.9 and "metric_delta" in data["parity"]
    assert data["metrics"]["accuracy"] > 0.5
    assert len(data["golden"]["inputs"]) == 4 and len(data["golden"]["outputs"]) == 4
    assert data["created"].endswith("+00:00")
    assert {"tensorflow", "keras", "numpy", "runtime", "python"} <= set(data["libraries"])
    assert data["tensors"]["input"]["shape"] == [-1, 5]


def test_anomaly_manifest_has_threshold(bundle) -> None:  # type: ignore[no-untyped-def]
    m = Manifest.load(bundle("autoencoder", "anomaly", "float32") / MANIFEST_FILE)
    assert m.threshold is not None and m.threshold > 0


def test_parity_failure_refuses_the_export(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = trained("mlp", "regress")
    strict = ParityPolicy(float16_tol=1e-9)
    with pytest.raises(ParityError) as err:
        export_tflite(
            t.model,
            t.spec,
            tmp_path,
            quantization="float16",
            representative=t.train.x,
            held=(t.held.x, t.held.y),
            name="strict",
            version="1",
            policy=strict,
        )
    assert "export refused" in str(err.value) and "float16" in str(err.value)
    assert err.value.figures["passed"] is False
    assert not (tmp_path / MODEL_FILE).exists() and not (tmp_path / MANIFEST_FILE).exists()


def test_unknown_quantization_is_named(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.errors import SpecError

    t = trained("mlp", "classify")
    with pytest.raises(SpecError, match=r"Received: quantization='int4'"):
        export_tflite(
            t.model,
            t.spec,
            tmp_path,
            quantization="int4",
            representative=t.train.x,
            held=(t.held.x, t.held.y),
            name="x",
            version="1",
        )
