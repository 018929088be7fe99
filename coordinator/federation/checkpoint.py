"""Per-round checkpoints and central evaluation (imports TensorFlow; ServerApp process only).

``round-<n>/`` holds ``model.keras``, ``model.tflite`` and ``manifest.json`` (the ``models``
export with its parity check; if the requested quantisation fails parity the round falls back
to float32 and says so) and ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import families
from models.errors import ExportError
from models.export import export_tflite
from models.spec import ModelSpec
from models.training import evaluate, metric_name, predict, set_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holdout:
    """The coordinator's validation set, or synthetic inputs drawn from the model's statistics."""

    x: np.ndarray
    y: np.ndarray | None
    real: bool


class GlobalModel:
    def __init__(self, spec: ModelSpec, seed: int = 0) -> None:
        import keras

        keras.utils.set_random_seed(seed)
        self.spec = spec
        self.model = families.build(spec)

    def initial_arrays(self) -> list[np.ndarray]:
        return [np.asarray(w, np.float32) for w in self.model.get_weights()]

    def stat_pairs(self) -> list[tuple[int, int]]:
        """Indices (mean, variance) in the weight list of each normalisation layer."""
        from models.layers import Destandardize, Standardize

        position = {id(v): i for i, v in enumerate(self.model.weights)}
        return [
            (position[id(layer.mean)], position[id(layer.variance)])
            for layer in self.model.layers
            if isinstance(layer, Standardize | Destandardize)
        ]

    def load(self, arrays: Sequence[np.ndarray]) -> None:
        set_weights(self.model, [np.asarray(a, np.float32) for a in arrays])

    def central(self, holdout: Holdout | None) -> dict[str, float] | None:
        if holdout is None or not holdout.real:
            return None
        m = evaluate(self.model, self.spec, (holdout.x, holdout.y))
        name = metric_name(self.spec.task)
        return {
            "loss": m["loss"],
            "metric": m[name] if name else m["loss"],
            "examples": m["examples"],
        }

    def confusion(self, holdout: Holdout) -> np.ndarray:
        assert holdout.y is not None
        pred = predict(self.model, holdout.x).argmax(axis=1)
        k = len(self.spec.labels)
        cm = np.zeros((k, k), np.int64)
        np.add.at(cm, (holdout.y.astype(int), pred), 1)
        return cm

    def checkpoint(
        self,
        out: Path,
        *,
        name: str,
        version: str,
        quantization: str,
        holdout: Holdout,
        metrics: dict[str, Any],
    ) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
        held = (holdout.x[:256], None if holdout.y is None else holdout.y[:256])
        for q in dict.fromkeys((quantization, "float32")):
            try:
                manifest = export_tflite(
                    self.model,
                    self.spec,
                    out,
                    quantization=q,
                    representative=holdout.x[:512],
                    held=held,
                    name=name,
                    version=version,
                    metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
                    save_keras=True,
                )
            except ExportError as exc:
                logger.warning("round export %s (%s) refused: %s", version, q, exc)
                continue
            return {"quantization": q, "sha256": manifest.sha256, "size_bytes": manifest.size_bytes}
        self.model.save(out / "model.keras")
        return {"quantization": None, "error": "every export failed parity"}


def synthetic_holdout(model: Any, spec: ModelSpec, n: int = 256, seed: int = 0) -> Holdout:
    """Inputs drawn around the model's own normalisation statistics (no real data at hand)."""
    from models.normalization import describe

    norm = describe(model)
    mean = np.asarray(norm.get("mean", 0.0), np.float32)
    std = np.sqrt(np.asarray(norm.get("variance", 1.0), np.float32))
    rng = np.random.default_rng(seed)
    x = (mean + rng.normal(size=(n, *spec.input.shape)) * std).astype(np.float32)
    return Holdout(x, None, real=False)
