"""Run exported models with LiteRT; never imports TensorFlow unless nothing else exists.

The interpreter comes from ``ai_edge_litert`` (preferred), else ``tflite_runtime``, else
``tensorflow.lite`` (last resort, ~500 MB). ``backend()`` says which one serves.

``Predictor.load(bundle_dir)`` reads ``manifest.json``, checks the file's size and sha256,
loads it, and checks the input/output tensors against the manifest before anything predicts.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import (
    ManifestError,
    ModelCorruptError,
    ModelMismatchError,
    ModelMissingError,
    PredictInputError,
    RuntimeUnavailableError,
)
from models.manifest import MANIFEST_FILE, Manifest, TensorInfo, sha256_file

logger = logging.getLogger(__name__)

_EPSILON = 1e-6  # as models.layers.EPSILON (not imported: that module imports Keras)

_CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite-runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow.lite", "tensorflow"),
)


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter: Any


@functools.cache
def backend() -> Backend:
    """The first importable TFLite interpreter, in order of preference."""
    for name, module, dist in _CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return Backend(name=name, version=version, interpreter=mod.Interpreter)
    raise RuntimeUnavailableError(
        "expected one of ai-edge-litert, tflite-runtime or tensorflow to be installed. "
        "Install the agent extra: pip install 'orchard-fl[agent]'"
    )


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = detail.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = detail["shape"]
    return TensorInfo(
        shape=tuple(int(v) for v in shape),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


class TFLiteModel:
    """A loaded ``.tflite`` with one input and one output; float32 in, float32 out."""

    def __init__(self, content: bytes, *, num_threads: int = 1, source: str = "<bytes>") -> None:
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ModelCorruptError(
                f"{source}: expected a TFLite flatbuffer (identifier 'TFL3' at byte 4). "
                f"Received: {len(content)} bytes starting {content[:8]!r}"
            )
        self.backend = backend()
        try:
            self._interp = self.backend.interpreter(model_content=content, num_threads=num_threads)
            self._interp.allocate_tensors()
            # Tensor names are decoded as UTF-8: a damaged name is a corrupt model, not a crash.
            ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        except (ValueError, RuntimeError, UnicodeDecodeError) as exc:
            raise ModelCorruptError(f"{source}: LiteRT could not load the model: {exc}") from exc
        if len(ins) != 1 or len(outs) != 1:
            raise ModelMismatchError(
                f"{source}: expected one input and one output tensor. "
                f"Received: {len(ins)} inputs, {len(outs)} outputs"
            )
        self._in_index, self._out_index = ins[0]["index"], outs[0]["index"]
        self.input, self.output = _tensor_info(ins[0]), _tensor_info(outs[0])
        self._in_dtype = np.dtype(ins[0]["dtype"])
        self._batch = int(ins[0]["shape"][0])
        self._lock = threading.Lock()
        self.set_affine(None)

    def set_affine(self, affine: Affine | None) -> None:
        """Fuse normalisation and (de)quantisation into one multiply-add on each side.

        In: ``q = x * a + b`` (then round/clip for int8). Out: ``y = q * c + d``.
        """
        mean = affine.in_mean if affine else np.float32(0.0)
        scale = affine.in_scale if affine else np.float32(1.0)
        a, b = scale, -mean * scale
        if self.input.quantized:
            a, b = a / self.input.scale, b / self.input.scale + self.input.zero_point
        c: Any = np.float32(1.0)
        d: Any = np.float32(0.0)
        if self.output.quantized:
            c, d = (
                np.float32(self.output.scale),
                np.float32(-self.output.zero_point * self.output.scale),
            )
        if affine is not None and affine.out_std is not None and affine.out_mean is not None:
            c, d = c * affine.out_std, d * affine.out_std + affine.out_mean
        self._in = (np.asarray(a, np.float32), np.asarray(b, np.float32))
        self._out = (np.asarray(c, np.float32), np.asarray(d, np.float32))
        self._identity_in = affine is None and not self.input.quantized
        self._identity_out = not self.output.quantized and (
            affine is None or affine.out_std is None
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.input.shape[1:]

    def _encode(self, x: np.ndarray) -> np.ndarray:
        if self._identity_in:
            return x.astype(self._in_dtype, copy=False)
        a, b = self._in
        z = x * a + b
        if not self.input.quantized:
            return z.astype(self._in_dtype, copy=False)
        bounds = np.iinfo(self._in_dtype)
        return np.clip(np.rint(z), bounds.min, bounds.max).astype(self._in_dtype)

    def _decode(self, y: np.ndarray) -> np.ndarray:
        if self._identity_out:
            return y.astype(np.float32, copy=True)
        c, d = self._out
        return (y * c + d).astype(np.float32, copy=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run a batch ``(N, *sample_shape)`` of float32 and return float32 outputs."""
        n = int(x.shape[0])
        with self._lock:
            if n != self._batch:
                self._interp.resize_tensor_input(self._in_index, [n, *self.sample_shape])
                self._interp.allocate_tensors()
                self._batch = n
            self._interp.set_tensor(self._in_index, self._encode(x))
            self._interp.invoke()
            return self._decode(self._interp.get_tensor(self._out_index))


@dataclass(frozen=True)
class Affine:
    """Normalisation applied around the interpreter (int8 exports; see models.normalization)."""

    in_mean: np.ndarray
    in_scale: np.ndarray
    out_mean: np.ndarray | None = None
    out_std: np.ndarray | None = None

    @classmethod
    def from_normalization(cls, norm: Mapping[str, Any]) -> Affine | None:
        """``None`` when the statistics are inside the graph."""
        if norm.get("where") != "runtime":
            return None
        try:
            var = np.asarray(norm["variance"], np.float32)
            out_mean = out_std = None
            if "target_mean" in norm:
                out_mean = np.asarray(norm["target_mean"], np.float32)
                out_std = np.sqrt(np.asarray(norm["target_variance"], np.float32) + _EPSILON)
            return cls(
                in_mean=np.asarray(norm["mean"], np.float32),
                in_scale=(1.0 / np.sqrt(var + _EPSILON)).astype(np.float32),
                out_mean=out_mean,
                out_std=out_std,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"expected input.normalization with mean and variance lists. Received: {exc}"
            ) from exc


class Predictor:
    """A verified model bundle, ready to predict. Thread-safe."""

    def __init__(self, manifest: Manifest, model: TFLiteModel, path: Path) -> None:
        self.manifest = manifest
        self.model = model
        self.path = path
        self.affine = Affine.from_normalization(manifest.normalization)
        model.set_affine(self.affine)

    @classmethod
    def load(cls, bundle: Path, *, num_threads: int = 1, verify_golden: bool = True) -> Predictor:
        """Load ``bundle/manifest.json`` and its ``.tflite``; raise a typed error on any doubt."""
        bundle = Path(bundle)
        manifest = Manifest.load(bundle / MANIFEST_FILE)
        path = bundle / manifest.file
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise ModelMissingError(
                f"{path}: expected the model file named in the manifest."
            ) from None
        except OSError as exc:
            raise ModelCorruptError(f"{path}: could not read the model file: {exc}") from exc
        if len(content) != manifest.size_bytes:
            raise ModelCorruptError(
                f"{path}: expected {manifest.size_bytes} bytes (manifest). "
                f"Received: {len(content)} bytes (truncated or replaced?)"
            )
        digest = sha256_file(path)
        if digest != manifest.sha256:
            raise ModelCorruptError(
                f"{path}: expected sha256 {manifest.sha256}. Received: {digest} (file modified?)"
            )
        model = TFLiteModel(content, num_threads=num_threads, source=str(path))
        for what, have, want in (
            ("input", model.input, manifest.input_tensor),
            ("output", model.output, manifest.output_tensor),
        ):
            if (have.shape, have.dtype) != (want.shape, want.dtype):
                raise ModelMismatchError(
                    f"{path}: expected {what} tensor {want.dtype}{list(want.shape)} (manifest). "
                    f"Received: {have.dtype}{list(have.shape)}"
                )
        if tuple(model.sample_shape) != manifest.input.shape:
            raise ModelMismatchError(
                f"{path}: expected input shape {manifest.input.shape} (manifest input spec). "
                f"Received: {model.sample_shape}"
            )
        predictor = cls(manifest, model, bundle)
        if verify_golden:
            predictor.verify_golden()
        return predictor

    def verify_golden(self) -> float:
        """Re-run the manifest's golden inputs; return the max abs diff or raise."""
        m = self.manifest
        if not m.golden_inputs:
            raise ManifestError(
                f"{self.path}: expected golden samples in the manifest. None found."
            )
        try:
            got = self.model.predict(np.asarray(m.golden_inputs, np.float32))
        except (ValueError, RuntimeError) as exc:  # e.g. a tensor without data in the file
            raise ModelCorruptError(
                f"{self.path}: LiteRT could not run the golden samples: {exc}"
            ) from exc
        want = np.asarray(m.golden_outputs, np.float32)
        if got.shape != want.shape:
            raise ModelMismatchError(
                f"{self.path}: expected golden outputs of shape {want.shape}. Received: {got.shape}"
            )
        diff = float(np.max(np.abs(got - want)))
        if not diff <= m.golden_atol:
            raise ModelMismatchError(
                f"{self.path}: expected golden outputs within {m.golden_atol:g}. "
                f"Received: max abs diff {diff:g}"
            )
        return diff

    def as_batch(self, x: Any, field: str = "features") -> np.ndarray:
        """Coerce one sample or a batch to ``(N, *shape)`` float32, or raise with the field name."""
        shape = self.manifest.input.shape
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise PredictInputError(
                f"{field}: expected numbers in shape {list(shape)}. Received a non-numeric value"
            ) from None
        if arr.shape == shape:
            arr = arr[np.newaxis]
        elif arr.ndim != len(shape) + 1 or arr.shape[1:] != shape or arr.shape[0] == 0:
            raise PredictInputError(
                f"{field}: expected shape {list(shape)} or [n, {', '.join(map(str, shape))}]. "
                f"Received: shape {list(arr.shape)}"
            )
        if not np.all(np.isfinite(arr)):
            raise PredictInputError(f"{field}: expected finite numbers. Received NaN or infinity")
        return arr

    def predict(self, x: Any) -> np.ndarray:
        """Predict a single sample or a batch; always returns ``(N, outputs)`` float32."""
        return self.model.predict(self.as_batch(x))
