"""Fixtures for the coordinator's delivery tests: round bundles under runs/, a real fleet CA."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, TensorInfo
from models.spec import InputSpec, Task
from provisioning.ca import FleetCA


def write_round(
    runs: Path, run_id: str, number: int, *, version: str | None = None, seed: int = 0
) -> Path:
    """``runs/<run_id>/round-<n>/`` as a round leaves it: manifest.json, model.tflite, metrics.

    The manifest is the real ``models.manifest.Manifest`` (what ``export_tflite`` saves), its
    digest and size those of the model file. The model bytes stand in for a TFLite file (the
    catalog never parses one; test_catalog.py checks a real export too).
    """
    out = runs / run_id / f"round-{number}"
    out.mkdir(parents=True)
    model = b"\x1c\x00\x00\x00TFL3" + random.Random(seed).randbytes(20_000)
    (out / MODEL_FILE).write_bytes(model)
    Manifest(
        name="mlp-classify",
        version=version or f"{run_id}.{number}",
        task=Task.CLASSIFY,
        family="mlp",
        input=InputSpec.tabular(["temp_c", "humidity_pct"]),
        quantization="float32",
        sha256=hashlib.sha256(model).hexdigest(),
        size_bytes=len(model),
        input_tensor=TensorInfo((-1, 2), "float32"),
        output_tensor=TensorInfo((-1, 3), "float32"),
        labels=("empty", "occupied", "crowded"),
    ).save(out / MANIFEST_FILE)
    (out / "metrics.json").write_text('{"accuracy": 0.9}')
    return out


@dataclass(frozen=True)
class Pki:
    """Files the fleet CA issued: what `orchard-provision ca ...` writes."""

    ca: FleetCA
    server: tuple[Path, Path]  # TLS server certificate for 127.0.0.1
    signer: tuple[Path, Path]  # code signing
    client: tuple[Path, Path]  # a device's client certificate (its MQTT one)

    @property
    def ca_pem(self) -> Path:
        return self.ca.dir / "ca.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = FleetCA.init(tmp_path_factory.mktemp("pki") / "ca")
    identity = ca.issue("pi-1", mqtt="cert")
    assert identity.mqtt_cert is not None and identity.mqtt_key is not None
    device = ca.dir.parent / "device"
    device.mkdir()
    (device / "client.pem").write_bytes(identity.mqtt_cert)
    (device / "client.key").write_bytes(identity.mqtt_key)
    return Pki(
        ca=ca,
        server=ca.server_cert("coordinator", ("127.0.0.1", "localhost")),
        signer=ca.signer_cert("coordinator"),
        client=(device / "client.pem", device / "client.key"),
    )
