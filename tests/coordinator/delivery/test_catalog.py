"""The catalog: round bundles under runs/ as (signed) Artifacts, and what it refuses to serve."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from agent.delivery.desired import Artifact, Desired, signed_bytes
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.errors import ArtifactError, DeliveryError, NotServed
from coordinator.delivery.settings import DeliverySettings
from coordinator.errors import CoordinatorError
from models.manifest import MANIFEST_FILE, MODEL_FILE
from orchard_common.signing import Signer, verify_artifact
from tests.agent.serve.bundles import Bundles, bundles

from .conftest import Pki, write_round

__all__ = ["bundles"]
BASE = "https://coordinator.local:8781"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_round(runs, "4711", 1, seed=1)
    write_round(runs, "4711", 2, seed=2)
    return runs


def test_a_round_is_an_artifact_with_the_files_digests(runs: Path) -> None:
    catalog = Catalog(runs, BASE + "/")
    artifact = catalog.artifact("4711", 2)
    bundle = runs / "4711" / "round-2"
    assert artifact == Artifact(
        version="4711.2",
        sha256=_sha(bundle / MODEL_FILE),
        size=(bundle / MODEL_FILE).stat().st_size,
        manifest_sha256=_sha(bundle / MANIFEST_FILE),
        manifest_size=(bundle / MANIFEST_FILE).stat().st_size,
        url=f"{BASE}/models/4711.2",
    )
    assert not artifact.signed
    # It travels in a desired-model message unchanged.
    message = Desired("pi-1", 1, 1.0e9, artifact).to_json()
    assert Desired.from_json(message).model == artifact


def test_a_signing_catalog_signs_what_the_board_verifies(runs: Path, pki: Pki) -> None:
    signer = Signer(*pki.signer)
    catalog = Catalog(runs, BASE, signer)
    artifact = catalog.artifact("4711", 1)
    assert artifact.signer == signer.fingerprint and artifact.signature is not None
    signer_pem = catalog.path(artifact.version, "signer.pem").read_bytes()
    verify_artifact(artifact, signer_pem, pki.ca_pem.read_bytes(), signed_bytes=signed_bytes)
    # Cached while the files are unchanged: the same signature (ECDSA's k is random).
    assert catalog.artifact("4711", 1).signature == artifact.signature
    assert catalog.find("4711.1") == artifact


def test_digests_follow_the_files(runs: Path) -> None:
    catalog = Catalog(runs, BASE)
    before = catalog.artifact("4711", 1)
    shutil.rmtree(runs / "4711" / "round-1")
    write_round(runs, "4711", 1, seed=99)  # a new model under the same version
    after = catalog.artifact("4711", 1)
    assert after.version == before.version and after.sha256 != before.sha256
    assert after.sha256 == _sha(runs / "4711" / "round-1" / MODEL_FILE)


def test_missing_or_inconsistent_rounds_name_run_round_and_file(runs: Path) -> None:
    catalog = Catalog(runs, BASE)
    with pytest.raises(ArtifactError, match=r"run 4711 round 9: manifest.json: expected a file"):
        catalog.artifact("4711", 9)
    with pytest.raises(ArtifactError, match=r"run nope round 1: manifest.json"):
        catalog.artifact("nope", 1)
    bundle = runs / "4711" / "round-2"
    (bundle / MODEL_FILE).write_bytes((bundle / MODEL_FILE).read_bytes()[:-1])  # truncated
    with pytest.raises(ArtifactError) as truncated:
        catalog.artifact("4711", 2)
    assert (truncated.value.run_id, truncated.value.round, truncated.value.file) == (
        "4711",
        2,
        MODEL_FILE,
    )
    assert "expected the file manifest.json describes" in str(truncated.value)
    (bundle / MODEL_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"round 2: model.tflite: expected a file"):
        catalog.artifact("4711", 2)
    (runs / "4711" / "round-1" / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"round 1: manifest.json: .*expected a JSON manifest"):
        catalog.artifact("4711", 1)
    for run_id, round_ in (("..", 1), ("../4711", 1), ("4711", 0), ("4711", True)):
        with pytest.raises(ArtifactError, match="expected"):
            catalog.artifact(run_id, round_)
    assert isinstance(truncated.value, CoordinatorError)


def test_a_version_that_is_no_url_segment_or_held_twice_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_round(runs, "1", 1, version="../../etc")
    with pytest.raises(ArtifactError, match=r"manifest.json: expected a version of letters"):
        Catalog(runs, BASE).artifact("1", 1)
    write_round(runs, "2", 1, version="same")
    write_round(runs, "3", 1, version="same")
    catalog = Catalog(runs, BASE)
    catalog.artifact("2", 1)
    with pytest.raises(ArtifactError, match=r"round-1 also holds"):
        catalog.artifact("3", 1)


def test_find_by_run_and_round_or_by_scanning(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_round(runs, "4711", 1)
    write_round(runs, "4711", 3, version="custom-v3")  # not <run>.<n>: found by the scan
    write_round(runs, "broken", 1)
    (runs / "broken" / "round-1" / MODEL_FILE).write_bytes(b"other")  # skipped by the scan
    catalog = Catalog(runs, BASE)
    found = catalog.find("4711.1")
    assert found is not None and found.url == f"{BASE}/models/4711.1"
    custom = catalog.find("custom-v3")
    assert custom is not None and custom == catalog.artifact("4711", 3)
    for unknown in ("4711.2", "broken.1", "nothing", "..", "../4711.1", "4711.1/x", ""):
        assert catalog.find(unknown) is None, unknown


def test_path_serves_three_names_of_known_versions_only(runs: Path, pki: Pki) -> None:
    catalog = Catalog(runs, BASE, Signer(*pki.signer))
    bundle = runs / "4711" / "round-1"
    assert catalog.path("4711.1", "manifest.json") == bundle / MANIFEST_FILE
    assert catalog.path("4711.1", "model.tflite") == bundle / MODEL_FILE
    assert catalog.path("4711.1", "signer.pem") == pki.signer[0]
    for name in ("metrics.json", "model.keras", "../round-2/model.tflite", "..", "signer.key"):
        with pytest.raises(NotServed, match=r"name: expected one of manifest.json"):
            catalog.path("4711.1", name)
    for version in ("4711.7", "..", "../../ca", "4711.1/../4711.2"):
        with pytest.raises(NotServed, match=r"version: expected a model version in the catalog"):
            catalog.path(version, "model.tflite")
    unsigned = Catalog(runs, BASE)
    with pytest.raises(NotServed, match=r"signer\.pem: expected a signing coordinator"):
        unsigned.path("4711.1", "signer.pem")


def test_a_signer_replaced_on_disk_is_not_served(runs: Path, tmp_path: Path, pki: Pki) -> None:
    cert, key = tmp_path / "signer.pem", tmp_path / "signer.key"
    shutil.copy(pki.signer[0], cert)
    shutil.copy(pki.signer[1], key)
    catalog = Catalog(runs, BASE, Signer(cert, key))
    catalog.artifact("4711", 1)
    other_cert, _ = pki.ca.signer_cert("other")
    shutil.copy(other_cert, cert)
    with pytest.raises(DeliveryError, match="restart the coordinator"):
        catalog.path("4711.1", "signer.pem")


def test_from_settings_takes_url_and_signer(runs: Path, pki: Pki) -> None:
    settings = DeliverySettings(port=9000, signing_cert=pki.signer[0], signing_key=pki.signer[1])
    catalog = Catalog.from_settings(settings, runs)
    assert catalog.artifact("4711", 1).url == "http://127.0.0.1:9000/models/4711.1"
    assert catalog.signer is not None and catalog.signer.cert_path == pki.signer[0]
    broken = DeliverySettings(signing_cert=pki.server[0], signing_key=pki.server[1])
    with pytest.raises(DeliveryError, match=r"delivery.signing_cert: expected a certificate with"):
        Catalog.from_settings(broken, runs)


@pytest.mark.slow
def test_a_real_exported_round(tmp_path: Path, bundles: Bundles, pki: Pki) -> None:
    """A bundle ``export_tflite`` wrote (what checkpoint.py writes per round), signed."""
    runs = tmp_path / "runs"
    shutil.copytree(bundles("mlp", "classify", "float32", "812.1"), runs / "812" / "round-1")
    catalog = Catalog(runs, BASE, Signer(*pki.signer))
    artifact = catalog.artifact("812", 1)
    manifest = json.loads((runs / "812" / "round-1" / MANIFEST_FILE).read_text())
    assert artifact.version == manifest["version"] == "812.1"
    assert artifact.sha256 == manifest["file"]["sha256"]
    assert artifact.size == manifest["file"]["size_bytes"]
    verify_artifact(
        artifact, pki.signer[0].read_bytes(), pki.ca_pem.read_bytes(), signed_bytes=signed_bytes
    )
