"""Benchmark every model family in every quantisation; prints a Markdown table.

Per family and quantisation: parameters, .tflite size (and its ratio to float32), Keras
single-sample ``model(x)`` latency vs LiteRT ``Predictor.predict`` latency (median and p99,
one thread) and their ratio, and the held-out metric change vs the float32 file.

    .venv/bin/python benchmarks/models.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# ``models`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CASES = [
    ("mlp", "classify", 32),
    ("mlp", "classify", 128),
    ("mlp", "classify", 256),
    ("cnn1d", "classify", 32),
    ("cnn1d", "forecast", 64),
    ("tiny_cnn", "classify", 32),
    ("tiny_cnn", "classify", 64),
    ("autoencoder", "anomaly", 32),
]
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def _timings(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(20, n)):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def _metric(parity: dict[str, object]) -> tuple[str, float | None]:
    for key in ("tflite_accuracy", "tflite_mae"):
        if key in parity:
            value = parity[key]
            assert isinstance(value, float)
            return key.removeprefix("tflite_"), value
    return "nmae" if "nmae" in parity else "max_abs_diff", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer timing iterations")
    args = parser.parse_args()
    keras_n, litert_n = (50, 500) if args.quick else (300, 3000)

    import keras
    import tensorflow as tf

    from models import families, synthetic
    from models.export import export_tflite
    from models.runtime import Predictor, backend
    from models.spec import ModelSpec
    from models.training import TrainSettings, fit

    rt = backend()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or '?'}")
    print(
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras "
        f"{keras.__version__}, numpy {np.__version__}, runtime {rt.name} {rt.version}"
    )
    print(f"medians of {keras_n} Keras calls and {litert_n} LiteRT calls, one sample, one thread\n")
    print(
        "| family | task | width | params | quant | size B | size/f32 | keras p50 ms "
        "| litert p50 ms | litert p99 ms | speed-up | metric | delta vs f32 |"
    )
    print("|" + "---|" * 13)
    for family, task, width in CASES:
        ds = synthetic.make(family, task, n=1200, seed=0)
        spec = ModelSpec.from_dict({**ds.spec.to_dict(), "width": width})
        train, held = ds.split(0.25)
        model = families.build(spec)
        fit(model, spec, (train.x, train.y), TrainSettings(epochs=8, learning_rate=3e-3))
        x1 = tf.constant(held.x[:1])
        keras_p50, _ = _timings(lambda m=model, x=x1: m(x, training=False), keras_n)
        base_size, base_metric = None, None
        for q in QUANTIZATIONS:
            with tempfile.TemporaryDirectory() as tmp:
                manifest = export_tflite(
                    model,
                    spec,
                    Path(tmp),
                    quantization=q,
                    representative=train.x,
                    held=(held.x, held.y),
                    name=family,
                    version="bench",
                )
                predictor = Predictor.load(Path(tmp), num_threads=1)
                row = held.x[0]
                p50, p99 = _timings(lambda p=predictor, r=row: p.predict(r), litert_n)
            name, value = _metric(dict(manifest.parity))
            if q == "float32":
                base_size, base_metric = manifest.size_bytes, value
            assert base_size is not None
            delta = "—" if value is None or base_metric is None else f"{value - base_metric:+.4f}"
            shown = "—" if value is None else f"{name} {value:.3f}"
            print(
                f"| {family} | {task} | {width} | {model.count_params():,} | {q} | "
                f"{manifest.size_bytes:,} | {manifest.size_bytes / base_size:.2f} | "
                f"{keras_p50:.3f} | {p50:.4f} | {p99:.4f} | {keras_p50 / p50:,.0f}x | "
                f"{shown} | {delta} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
