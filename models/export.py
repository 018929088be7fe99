"""TFLite export with a parity gate and a manifest (imports TensorFlow).

``export_tflite`` converts a Keras model in one of four quantisations, runs the converted bytes
with LiteRT (``models.runtime``, the same code the board uses) on held samples, compares with
Keras, and only then writes ``model.tflite`` + ``manifest.json``. A file that fails the parity
policy is never written; ``ParityError`` carries the figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models import normalization
from models.errors import ExportError, ParityError, SpecError
from models.manifest import KERAS_FILE, MANIFEST_FILE, MODEL_FILE, Manifest, write_atomic
from models.runtime import Affine, TFLiteModel, backend
from models.spec import ModelSpec, Task
from models.training import check_arrays, predict

logger = logging.getLogger(__name__)


class Quantization(StrEnum):
    FLOAT32 = "float32"  # no quantisation
    FLOAT16 = "float16"  # float16 weights, float32 compute
    DYNAMIC = "dynamic"  # int8 weights, float activations (dynamic-range)
    INT8 = "int8"  # full integer: int8 weights, activations, input and output

    @classmethod
    def parse(cls, value: str | Quantization) -> Quantization:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(q.value for q in cls)
            raise SpecError(f"expected one of {known}. Received: quantization={value!r}") from None


@dataclass(frozen=True)
class ParityPolicy:
    """How close the exported file must stay to Keras.

    Float exports: ``max |tflite - keras| <= tol * max(1, max |keras|)``. Quantised exports:
    classification keeps ``min_agreement`` of top-1 labels and loses at most
    ``max_metric_drop`` accuracy; other tasks keep the mean abs difference within ``max_nmae``
    of the Keras outputs' spread (their standard deviation).
    """

    float32_tol: float = 1e-4
    float16_tol: float = 5e-2
    min_agreement: float = 0.9
    max_metric_drop: float = 0.03
    max_nmae: float = 0.15
    anomaly_percentile: float = 99.0


def _converter(
    model: keras.Model,
    quantization: Quantization,
    representative: np.ndarray,
    per_channel: bool = True,
) -> Any:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # No public switch exists for this; TF's own tests and docs use the private attribute.
    converter._experimental_disable_per_channel = not per_channel
    if quantization is Quantization.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization is Quantization.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization is Quantization.INT8:
        samples = representative[:200]

        def dataset() -> Any:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Capture stdout and stderr at the descriptor level: TF's C++ converter prints there."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text):
                yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))


def convert(
    model: keras.Model,
    quantization: Quantization,
    representative: np.ndarray,
    *,
    per_channel: bool = True,
) -> bytes:
    """Convert to TFLite bytes; TensorFlow's chatter goes to the log, its errors to ExportError.

    ``per_channel=False`` quantises weights with one scale per tensor (int8 files only).
    """
    try:
        with _captured_output() as chatter, warnings.catch_warnings():
            # int8 I/O without input statistics is intended: the runtime (de)quantises.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            converter = _converter(model, quantization, representative, per_channel)
            content = converter.convert()
    except Exception as exc:  # TF raises ConverterError, RuntimeError, ValueError...
        raise ExportError(f"TFLite conversion ({quantization.value}) failed: {exc}") from exc
    logger.debug("converter output: %s", chatter.getvalue().strip())
    return bytes(content)


def parity(
    spec: ModelSpec,
    quantization: Quantization,
    keras_out: np.ndarray,
    tflite_out: np.ndarray,
    y: np.ndarray | None,
    policy: ParityPolicy,
) -> dict[str, Any]:
    """Compare outputs; return the figures with ``passed`` and ``reason``."""
    diff = np.abs(tflite_out - keras_out)
    figures: dict[str, Any] = {
        "samples": len(keras_out),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }
    reasons = []
    if quantization in (Quantization.FLOAT32, Quantization.FLOAT16):
        tol = policy.float32_tol if quantization is Quantization.FLOAT32 else policy.float16_tol
        bound = tol * max(1.0, float(np.abs(keras_out).max()))
        figures["bound"] = bound
        if not figures["max_abs_diff"] <= bound:
            reasons.append(f"max abs diff {figures['max_abs_diff']:.3g} > {bound:.3g}")
    elif spec.task is Task.CLASSIFY:
        agreement = float(np.mean(keras_out.argmax(-1) == tflite_out.argmax(-1)))
        figures["agreement"] = agreement
        if agreement < policy.min_agreement:
            reasons.append(f"top-1 agreement {agreement:.3f} < {policy.min_agreement}")
    else:
        spread = float(keras_out.std()) + 1e-6
        figures["nmae"] = figures["mean_abs_diff"] / spread
        if figures["nmae"] > policy.max_nmae:
            reasons.append(f"normalised MAE {figures['nmae']:.3f} > {policy.max_nmae}")
    if y is not None and spec.task is Task.CLASSIFY:
        k_acc = float(np.mean(keras_out.argmax(-1) == y))
        t_acc = float(np.mean(tflite_out.argmax(-1) == y))
        figures.update(keras_accuracy=k_acc, tflite_accuracy=t_acc, metric_delta=t_acc - k_acc)
        if quantization in (Quantization.DYNAMIC, Quantization.INT8) and (
            k_acc - t_acc > policy.max_metric_drop
        ):
            reasons.append(f"accuracy drop {k_acc - t_acc:.3f} > {policy.max_metric_drop}")
    elif y is not None and spec.task in (Task.REGRESS, Task.FORECAST):
        k_mae = float(np.mean(np.abs(keras_out - y)))
        t_mae = float(np.mean(np.abs(tflite_out - y)))
        figures.update(keras_mae=k_mae, tflite_mae=t_mae, metric_delta=t_mae - k_mae)
    figures["passed"] = not reasons
    figures["reason"] = "; ".join(reasons)
    return figures


def libraries() -> dict[str, str]:
    rt = backend()
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "runtime": f"{rt.name} {rt.version}",
    }


def export_tflite(
    model: keras.Model,
    spec: ModelSpec,
    out_dir: Path,
    *,
    quantization: str | Quantization = Quantization.FLOAT32,
    representative: np.ndarray,
    held: tuple[np.ndarray, np.ndarray | None],
    name: str,
    version: str,
    metrics: dict[str, float] | None = None,
    policy: ParityPolicy | None = None,
    golden: int = 4,
    save_keras: bool = False,
) -> Manifest:
    """Convert, check parity on ``held``, then write the bundle into ``out_dir``.

    ``representative`` is local input data (calibration for int8, the anomaly threshold);
    ``held`` is ``(x, y)`` of samples not trained on (``y`` may be ``None``).
    """
    quantization = Quantization.parse(quantization)
    policy = policy or ParityPolicy()
    representative = np.asarray(representative, np.float32)
    x_held = np.asarray(held[0], np.float32)
    check_arrays(spec, representative, None, name="representative")
    check_arrays(spec, x_held, None, name="held")

    keras_out = predict(model, x_held)
    y_held = None if held[1] is None else np.asarray(held[1])
    if quantization is Quantization.INT8:
        norm = normalization.describe(model, where="runtime")
        affine = Affine.from_normalization(norm)
        assert affine is not None
        calibration = (representative - affine.in_mean) * affine.in_scale
        core = normalization.strip(model)
        # Per-tensor weight scales make files ~20% smaller; per-channel is the fallback
        # when they cost accuracy (parity decides).
        attempts = [False, True]
    else:
        norm, affine, core, calibration = normalization.describe(model), None, model, representative
        attempts = [True]
    tried: list[dict[str, Any]] = []
    for per_channel in attempts:
        content = convert(core, quantization, calibration, per_channel=per_channel)
        tfl = TFLiteModel(content, source=f"{name} ({quantization.value})")
        tfl.set_affine(affine)
        figures = parity(spec, quantization, keras_out, tfl.predict(x_held), y_held, policy)
        figures["quantization"] = quantization.value
        if quantization is Quantization.INT8:
            figures["per_channel"] = per_channel
        tried.append({k: figures[k] for k in ("max_abs_diff", "reason") if k in figures})
        if figures["passed"]:
            break
    figures["policy"] = asdict(policy)
    if len(tried) > 1:
        figures["attempts"] = tried
    if not figures["passed"]:
        raise ParityError(
            f"export refused: the {quantization.value} TFLite file disagrees with Keras on "
            f"{figures['samples']} held samples ({figures['reason']})",
            figures,
        )

    threshold = None
    if spec.task is Task.ANOMALY:
        scores = tfl.predict(representative)
        threshold = float(np.percentile(scores, policy.anomaly_percentile))
    golden_in = x_held[:golden]
    golden_out = tfl.predict(golden_in)
    out_scale = max(1.0, float(np.abs(golden_out).max()))
    out_step = tfl.output.scale
    if affine is not None and affine.out_std is not None:
        out_step *= float(affine.out_std.max())
    golden_atol = max(1e-3 * out_scale, 2.0 * out_step)

    out_dir = Path(out_dir)
    write_atomic(out_dir / MODEL_FILE, content)
    if save_keras:
        model.save(out_dir / KERAS_FILE)
    manifest = Manifest(
        name=name,
        version=version,
        task=spec.task,
        family=spec.family,
        input=spec.input,
        quantization=quantization.value,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        input_tensor=tfl.input,
        output_tensor=tfl.output,
        labels=spec.labels,
        outputs=spec.outputs,
        threshold=threshold,
        normalization=norm,
        parity=figures,
        metrics=dict(metrics or {}),
        golden_inputs=tuple(golden_in.tolist()),
        golden_outputs=tuple(golden_out.tolist()),
        golden_atol=golden_atol,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        libraries=libraries(),
        spec=spec.to_dict(),
    )
    manifest.save(out_dir / MANIFEST_FILE)
    logger.info(
        "exported %s v%s (%s, %d bytes) to %s",
        name,
        version,
        quantization.value,
        len(content),
        out_dir,
    )
    return manifest
