"""The models smoke run: train on synthetic data, export to TFLite, predict with LiteRT.

This is the main job until the federated demo lands. The predictions come from a separate
process that imports only LiteRT, exactly as the board's agent would load the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SmokeResult:
    bundle: Path
    manifest: dict[str, object]
    held_metrics: dict[str, float]
    predictions: list[dict[str, object]]


_PREDICT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from models.runtime import Predictor, backend
    bundle, rows = sys.argv[1], json.loads(sys.stdin.read())
    p = Predictor.load(bundle)
    out = p.predict(np.asarray(rows, np.float32)).tolist()
    print(json.dumps({"backend": f"{backend().name} {backend().version}", "outputs": out,
                      "tensorflow_loaded": "tensorflow" in sys.modules}))
    """
)


def run(
    out_dir: Path,
    family: str = "mlp",
    task: str = "classify",
    quantization: str = "int8",
    examples: int = 1200,
    epochs: int = 10,
    seed: int = 0,
) -> SmokeResult:
    from models import families, synthetic
    from models.export import export_tflite
    from models.training import TrainSettings, evaluate, fit

    families.get(family)  # an unknown family is named before anything runs
    ds = synthetic.make(family, task, n=examples, seed=seed)
    train, held = ds.split(0.2)
    model = families.build(ds.spec)
    result = fit(
        model, ds.spec, (train.x, train.y), TrainSettings(epochs=epochs, learning_rate=3e-3)
    )
    held_metrics = evaluate(model, ds.spec, (held.x, held.y))
    manifest = export_tflite(
        model,
        ds.spec,
        out_dir,
        quantization=quantization,
        representative=train.x,
        held=(held.x, held.y),
        name=f"smoke-{family}-{task}",
        version="1",
        metrics={**result.metrics, **{f"held_{k}": v for k, v in held_metrics.items()}},
        save_keras=True,
    )
    rows = held.x[:5]
    proc = subprocess.run(
        [sys.executable, "-c", _PREDICT, str(out_dir)],
        input=json.dumps(rows.tolist()),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    predictions = []
    for i, out in enumerate(answer["outputs"]):
        truth: object = None
        if held.y is not None:
            truth = ds.spec.labels[int(held.y[i])] if ds.spec.labels else held.y[i].tolist()
        shown: object = (
            ds.spec.labels[int(np.argmax(out))] if ds.spec.labels else [round(v, 3) for v in out]
        )
        predictions.append(
            {
                "input": [round(float(v), 2) for v in rows[i]],
                "predicted": shown,
                "truth": truth,
                "backend": answer["backend"],
                "tensorflow_loaded": answer["tensorflow_loaded"],
            }
        )
    return SmokeResult(out_dir, manifest.to_dict(), held_metrics, predictions)
