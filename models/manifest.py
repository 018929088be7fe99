"""The manifest beside every ``.tflite``: what the file is, how it was made, how to check it.

A model bundle is a directory holding ``model.tflite`` and ``manifest.json`` (the federated
rounds add ``model.keras``). No TensorFlow here: the agent reads manifests on the board.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ManifestError
from models.spec import InputSpec, Task

FORMAT = "orchard-model/1"
MODEL_FILE = "model.tflite"
MANIFEST_FILE = "manifest.json"
KERAS_FILE = "model.keras"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorInfo:
    """A TFLite input/output tensor: shape with -1 for the batch, dtype and int8 parameters."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8") and self.scale > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        return cls(
            shape=tuple(int(v) for v in d["shape"]),
            dtype=str(d["dtype"]),
            scale=float(d.get("scale", 0.0)),
            zero_point=int(d.get("zero_point", 0)),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: Task
    family: str
    input: InputSpec
    quantization: str
    sha256: str
    size_bytes: int
    input_tensor: TensorInfo
    output_tensor: TensorInfo
    labels: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    threshold: float | None = None
    normalization: Mapping[str, Any] = field(default_factory=dict)
    parity: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    golden_inputs: tuple[Any, ...] = ()
    golden_outputs: tuple[Any, ...] = ()
    golden_atol: float = 1e-4
    created: str = ""
    libraries: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)
    file: str = MODEL_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "task": self.task.value,
            "family": self.family,
            "created": self.created,
            "input": {**self.input.to_dict(), "normalization": dict(self.normalization)},
            "output": {
                "labels": list(self.labels),
                "names": list(self.outputs),
                "threshold": self.threshold,
            },
            "quantization": self.quantization,
            "file": {"name": self.file, "sha256": self.sha256, "size_bytes": self.size_bytes},
            "tensors": {
                "input": self.input_tensor.to_dict(),
                "output": self.output_tensor.to_dict(),
            },
            "parity": dict(self.parity),
            "metrics": dict(self.metrics),
            "golden": {
                "inputs": list(self.golden_inputs),
                "outputs": list(self.golden_outputs),
                "atol": self.golden_atol,
            },
            "libraries": dict(self.libraries),
            "spec": dict(self.spec),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "manifest") -> Manifest:
        def need(mapping: Any, key: str, where: str) -> Any:
            if not isinstance(mapping, Mapping) or key not in mapping:
                raise ManifestError(f"{source}: expected a field '{where}{key}'. It is missing.")
            return mapping[key]

        if d.get("format") != FORMAT:
            raise ManifestError(
                f"{source}: expected format {FORMAT!r}. Received: format={d.get('format')!r}"
            )
        try:
            inp = need(d, "input", "")
            out = need(d, "output", "")
            file = need(d, "file", "")
            tensors = need(d, "tensors", "")
            golden = d.get("golden", {})
            return cls(
                name=str(need(d, "name", "")),
                version=str(need(d, "version", "")),
                task=Task.parse(need(d, "task", "")),
                family=str(need(d, "family", "")),
                input=InputSpec.from_dict(inp),
                normalization=dict(inp.get("normalization", {})),
                labels=tuple(out.get("labels", ())),
                outputs=tuple(out.get("names", ())),
                threshold=out.get("threshold"),
                quantization=str(need(d, "quantization", "")),
                file=str(need(file, "name", "file.")),
                sha256=str(need(file, "sha256", "file.")),
                size_bytes=int(need(file, "size_bytes", "file.")),
                input_tensor=TensorInfo.from_dict(need(tensors, "input", "tensors.")),
                output_tensor=TensorInfo.from_dict(need(tensors, "output", "tensors.")),
                parity=dict(d.get("parity", {})),
                metrics=dict(d.get("metrics", {})),
                golden_inputs=tuple(golden.get("inputs", ())),
                golden_outputs=tuple(golden.get("outputs", ())),
                golden_atol=float(golden.get("atol", 1e-4)),
                created=str(d.get("created", "")),
                libraries=dict(d.get("libraries", {})),
                spec=dict(d.get("spec", {})),
            )
        except ManifestError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ManifestError(f"{source}: a field has a wrong type or value: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path}: expected a manifest file. It does not exist.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(
                f"{path}: expected a JSON manifest. Could not read it: {exc}"
            ) from exc
        if not isinstance(data, Mapping):
            raise ManifestError(f"{path}: expected a JSON object. Received: {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def save(self, path: Path) -> None:
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=2).encode("utf-8"))


def write_atomic(path: Path, data: bytes, *, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part.

    The new file is created beside ``path`` (``O_EXCL``) and renamed over the name, so a link
    someone put at ``path`` is replaced, never followed; ``owner`` (uid, gid) is set on it first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in directory ``path`` durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
