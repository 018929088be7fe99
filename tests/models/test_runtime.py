"""The LiteRT runtime: no TensorFlow, verified loading, typed errors for bad files and input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from models.errors import (
    ManifestError,
    ModelCorruptError,
    ModelMismatchError,
    ModelMissingError,
    PredictInputError,
)
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, sha256_file
from models.runtime import Predictor, backend

REPO = Path(__file__).resolve().parents[2]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_manifest(path: Path, **changes: object) -> None:
    data = json.loads((path / MANIFEST_FILE).read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (path / MANIFEST_FILE).write_text(json.dumps(data))


def _sync_file_fields(path: Path) -> None:
    """Make the manifest's size and sha256 match whatever model file is there now."""
    f = path / MODEL_FILE
    _rewrite_manifest(path, file__sha256=sha256_file(f), file__size_bytes=f.stat().st_size)


def test_predict_in_a_process_without_tensorflow(bundle) -> None:  # type: ignore[no-untyped-def]
    paths = [bundle("mlp", "classify", "int8"), bundle("cnn1d", "forecast", "float32")]
    script = textwrap.dedent(
        f"""
        import sys, json
        import numpy as np
        from models.runtime import Predictor, backend
        out = {{}}
        for p in {[str(p) for p in paths]!r}:
            pred = Predictor.load(p, num_threads=2)
            x = np.asarray(pred.manifest.golden_inputs, np.float32)
            single = pred.predict(x[0])
            batch = pred.predict(x)
            out[p] = [single.shape, batch.shape]
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        assert "keras" not in sys.modules, "keras was imported"
        print(json.dumps({{"backend": backend().name, "shapes": out}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "ai-edge-litert"
    shapes = list(result["shapes"].values())
    assert shapes[0] == [[1, 3], [4, 3]]
    assert shapes[1] == [[1, 3], [4, 3]]


def test_backend_prefers_ai_edge_litert() -> None:
    assert backend().name == "ai-edge-litert"


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"expected a manifest file\. It does not exist"):
        Predictor.load(tmp_path)


def test_missing_model_file(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    (b / MODEL_FILE).unlink()
    with pytest.raises(ModelMissingError, match="expected the model file named in the manifest"):
        Predictor.load(b)


def test_truncated_file(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    content = (b / MODEL_FILE).read_bytes()
    (b / MODEL_FILE).write_bytes(content[: len(content) // 2])
    with pytest.raises(ModelCorruptError, match=r"expected \d+ bytes \(manifest\)\. Received"):
        Predictor.load(b)


def test_bit_flipped_file(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    content = bytearray((b / MODEL_FILE).read_bytes())
    content[len(content) // 2] ^= 0x01
    (b / MODEL_FILE).write_bytes(bytes(content))
    with pytest.raises(ModelCorruptError, match="expected sha256"):
        Predictor.load(b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrupt_flatbuffer_with_matching_manifest(bundle, tmp_path: Path, seed: int) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    content = bytearray((b / MODEL_FILE).read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(8, len(content), 32):
        content[i] ^= 0xFF
    (b / MODEL_FILE).write_bytes(bytes(content))
    _sync_file_fields(b)
    with pytest.raises(ModelCorruptError, match="LiteRT could not load the model"):
        Predictor.load(b)


def test_not_a_tflite_file(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    (b / MODEL_FILE).write_bytes(b"<html>404 not found</html>")
    _sync_file_fields(b)
    with pytest.raises(ModelCorruptError, match="expected a TFLite flatbuffer"):
        Predictor.load(b)


def test_wrong_model_for_manifest(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle("mlp", "classify"), tmp_path / "b")
    shutil.copy(bundle("cnn1d", "classify") / MODEL_FILE, b / MODEL_FILE)
    _sync_file_fields(b)
    with pytest.raises(ModelMismatchError, match=r"expected input tensor float32\[-1, 5\]"):
        Predictor.load(b)


def test_golden_outputs_mismatch(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    manifest = Manifest.load(b / MANIFEST_FILE)
    wrong = (np.asarray(manifest.golden_outputs) + 0.5).tolist()
    _rewrite_manifest(b, golden__outputs=wrong)
    with pytest.raises(ModelMismatchError, match="expected golden outputs within"):
        Predictor.load(b)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "expected a JSON manifest"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "orchard-model/1"}', "expected a field 'input'. It is missing"),
        ('{"format": "something-else/9"}', "expected format 'orchard-model/1'"),
    ],
)
def test_bad_manifest(bundle, tmp_path: Path, content: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    (b / MANIFEST_FILE).write_text(content)
    with pytest.raises(ManifestError) as err:
        Predictor.load(b)
    assert fragment in str(err.value)


def test_manifest_missing_nested_field(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(bundle(), tmp_path / "b")
    data = json.loads((b / MANIFEST_FILE).read_text())
    del data["file"]["sha256"]
    (b / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"expected a field 'file\.sha256'"):
        Predictor.load(b)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        ([1.0, 2.0], "expected shape [5] or [n, 5]. Received: shape [2]"),
        ([[1, 2, 3, 4, 5, 6]], "Received: shape [1, 6]"),
        ([1, 2, float("nan"), 4, 5], "expected finite numbers"),
        (["a", "b", "c", "d", "e"], "expected numbers in shape [5]"),
        ([], "Received: shape [0]"),
    ],
)
def test_bad_predict_input_is_named(bundle, x: object, fragment: str) -> None:  # type: ignore[no-untyped-def]
    p = Predictor.load(bundle())
    with pytest.raises(PredictInputError) as err:
        p.predict(x)
    assert str(err.value).startswith("features: ")
    assert fragment in str(err.value)


def test_single_and_batch_agree_and_dequantize(bundle) -> None:  # type: ignore[no-untyped-def]
    p = Predictor.load(bundle("mlp", "classify", "int8"), num_threads=1)
    x = np.asarray(p.manifest.golden_inputs, np.float32)
    batch = p.predict(x)
    singles = np.concatenate([p.predict(row) for row in x])
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=0.05)  # probabilities, dequantised
