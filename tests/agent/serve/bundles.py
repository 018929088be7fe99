"""Model bundles for the serving tests, exported with TensorFlow in the test process.

Each (family, task, quantization, version) is trained and exported once per session, whichever
test module asks first; agent code under test never imports TensorFlow.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.manifest import MANIFEST_FILE, MODEL_FILE, sha256_file

Bundles = Callable[..., Path]

_TRAINED: dict[tuple[str, str], Any] = {}
_EXPORTED: dict[tuple[str, str, str, str], Path] = {}


def _trained(family: str, task: str) -> Any:
    if (family, task) not in _TRAINED:
        from models import families, synthetic
        from models.training import TrainSettings, fit

        ds = synthetic.make(family, task, n=300, seed=1)
        train, held = ds.split(0.25)
        model = families.build(ds.spec)
        result = fit(
            model, ds.spec, (train.x, train.y), TrainSettings(epochs=4, learning_rate=3e-3)
        )
        _TRAINED[(family, task)] = (ds.spec, model, train, held, result.metrics)
    return _TRAINED[(family, task)]


def export(
    root: Path,
    family: str = "mlp",
    task: str = "classify",
    quantization: str = "float32",
    version: str = "1",
) -> Path:
    key = (family, task, quantization, version)
    if key not in _EXPORTED:
        from models.export import export_tflite

        spec, model, train, held, metrics = _trained(family, task)
        out = root / f"{family}-{task}-{quantization}-v{version}"
        export_tflite(
            model,
            spec,
            out,
            quantization=quantization,
            representative=train.x,
            held=(held.x, held.y),
            name=f"{family}-{task}",
            version=version,
            metrics=metrics,
        )
        _EXPORTED[key] = out
    return _EXPORTED[key]


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """``bundles(family, task, quantization, version)``: an exported bundle dir. Do not modify."""
    root = tmp_path_factory.mktemp("bundles")

    def get(*args: str, **kwargs: str) -> Path:
        return export(root, *args, **kwargs)

    return get


# -- damaged copies ------------------------------------------------------------------------------


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(bundle: Path, **changes: Any) -> None:
    """``edit_manifest(b, file__size_bytes=3)``: set nested manifest fields (``__`` separated)."""
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(data))


def sync_file_fields(bundle: Path) -> None:
    """Make the manifest's size and sha256 match whatever model file is there now."""
    f = bundle / MODEL_FILE
    edit_manifest(bundle, file__sha256=sha256_file(f), file__size_bytes=f.stat().st_size)
