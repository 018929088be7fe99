"""Desired-state delivery into real model slots, over real HTTP from a local artifact server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import ModelSettings
from agent.delivery.desired import Artifact
from agent.delivery.fetch import HttpFetcher
from agent.delivery.service import STAGING_DIR, DeliveryService, SignatureCheck
from agent.errors import DeliveryError
from agent.slots import INCOMING_DIR, ModelSlots
from tests.agent.delivery.artifacts import ArtifactServer, desired, serve
from tests.agent.serve.bundles import Bundles, bundles
from tests.agent.slot_helpers import Events, golden_ok
from tests.waiting import wait_until

__all__ = ["bundles"]
DEVICE = "pi-1"
TOPIC = f"orchard/v1/{DEVICE}/desired"


@pytest.fixture
def server(bundles: Bundles) -> Iterator[ArtifactServer]:
    with serve(
        {
            "v1": bundles("mlp", "classify", "float32", "v1"),
            "v2": bundles("mlp", "classify", "int8", "v2"),
        }
    ) as s:
        yield s


def _service(
    tmp_path: Path,
    events: Events,
    *,
    require_signed: bool = False,
    check: SignatureCheck | None = None,
) -> tuple[DeliveryService, ModelSlots]:
    settings = ModelSettings(
        dir=tmp_path / "models",
        require_signed=require_signed,
        fetch_timeout_s=5.0,
        retry_min_s=0.05,
        retry_max_s=0.2,
    )
    slots = ModelSlots(settings.dir, on_event=events)
    slots.load()
    service = DeliveryService(
        settings,
        slots,
        device_id=DEVICE,
        fetcher=HttpFetcher(timeout_s=5.0),
        check_signature=check,
        on_event=events,
    )
    service.start()
    return service, slots


def tree_digest(models: Path) -> str:
    """The slots' files (not ``.incoming/`` nor ``.delivery/``: a retry may stage any time)."""
    h = hashlib.sha256()
    for p in sorted(models.rglob("*")):
        skipped = INCOMING_DIR in p.parts or STAGING_DIR in p.parts
        if not skipped and p.is_file():
            h.update(str(p.relative_to(models)).encode() + p.read_bytes())
    return h.hexdigest()


def _serving(slots: ModelSlots) -> str | None:
    p = slots.current()
    return None if p is None else p.manifest.version


def _outcomes(events: Events) -> list[str]:
    return [str(d["outcome"]) for n, d in events if n == "delivery"]


def test_desired_model_is_fetched_installed_and_reported(
    tmp_path: Path, server: ArtifactServer
) -> None:
    events = Events()
    service, slots = _service(tmp_path, events)
    try:
        service.on_message(TOPIC, desired(DEVICE, 1, server.artifact("v1"), rollout="r-1"))
        wait_until(lambda: service.section().state == "installed", what="v1 installed")
        assert _serving(slots) == "v1"
        golden_ok(slots)
        s = service.section()
        assert (s.desired, s.attempts, s.last_error, s.rollout) == ("v1", 1, None, "r-1")
        assert "installed" in _outcomes(events)
        assert not (tmp_path / "models" / ".delivery").exists()  # staging cleaned up

        # the same message again (a reconnect re-delivers the retained one): nothing happens
        fetched = len(server.faults.requests)
        service.on_message(TOPIC, desired(DEVICE, 1, server.artifact("v1"), rollout="r-1"))
        service.on_message(TOPIC, desired(DEVICE, 2, server.artifact("v1")))
        wait_until(lambda: service.section().rollout is None, what="seq 2 taken")
        wait_until(lambda: service.section().state == "installed", what="still installed")
        assert len(server.faults.requests) == fetched
    finally:
        service.stop()


def test_rollback_to_the_previous_version_needs_no_download(
    tmp_path: Path, server: ArtifactServer
) -> None:
    events = Events()
    service, slots = _service(tmp_path, events)
    try:
        service.on_message(TOPIC, desired(DEVICE, 1, server.artifact("v1")))
        wait_until(lambda: _serving(slots) == "v1", what="v1")
        service.on_message(TOPIC, desired(DEVICE, 2, server.artifact("v2")))
        wait_until(lambda: _serving(slots) == "v2", what="v2")
        assert server.fetched("model.tflite") == 2
        server.faults.cut.add("model.tflite")  # a download would fail now
        service.on_message(TOPIC, desired(DEVICE, 3, server.artifact("v1")))
        wait_until(lambda: service.section().state == "installed", what="back on v1")
        assert _serving(slots) == "v1" and server.fetched("model.tflite") == 2
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("fault", "state"),
    [("cut", "failed"), ("alter", "refused")],
    ids=["download-dies-half-way", "tampered-bytes"],
)
def test_a_bad_download_keeps_the_old_model_and_is_retried(
    tmp_path: Path, server: ArtifactServer, fault: str, state: str
) -> None:
    events = Events()
    service, slots = _service(tmp_path, events)
    try:
        service.on_message(TOPIC, desired(DEVICE, 1, server.artifact("v1")))
        wait_until(lambda: _serving(slots) == "v1", what="v1")
        before = tree_digest(tmp_path / "models")
        getattr(server.faults, fault).add("model.tflite")
        service.on_message(TOPIC, desired(DEVICE, 2, server.artifact("v2")))
        seen = []

        def tried_three_times() -> bool:
            seen.append(service.section())
            return seen[-1].attempts >= 3 and seen[-1].state == state

        wait_until(tried_three_times, what=f"three tries, {state}")
        s = seen[-1]
        assert s.desired == "v2", s
        assert s.last_error and "model.tflite" in s.last_error
        assert _serving(slots) == "v1" and tree_digest(tmp_path / "models") == before
        assert _outcomes(events).count(state) >= 3
        # the server is mended: the next retry installs it
        getattr(server.faults, fault).clear()
        wait_until(lambda: service.section().state == "installed", what="v2 after retries")
        assert _serving(slots) == "v2"
    finally:
        service.stop()


def test_unsigned_is_refused_when_signatures_are_required(
    tmp_path: Path, server: ArtifactServer
) -> None:
    events = Events()
    service, slots = _service(tmp_path, events, require_signed=True)
    try:
        service.on_message(TOPIC, desired(DEVICE, 1, server.artifact("v1")))
        wait_until(lambda: service.section().state == "refused", what="refused")
        assert "require_signed" in (service.section().last_error or "")
        assert _serving(slots) is None and server.fetched("signer.pem") == 0
    finally:
        service.stop()


def test_a_signed_delivery_is_checked_with_the_fetched_signer(
    tmp_path: Path, server: ArtifactServer
) -> None:
    seen: list[tuple[str, bytes]] = []

    def check(artifact: Artifact, signer: bytes) -> None:
        seen.append((artifact.version, signer))
        if artifact.signature != "good":
            raise DeliveryError("bad signature", refused=True)

    server.faults.extra["signer.pem"] = b"-----BEGIN CERTIFICATE-----\n"
    events = Events()
    service, slots = _service(tmp_path, events, require_signed=True, check=check)
    try:
        signer = "a" * 64
        bad = server.artifact("v1", signer=signer, signature="bad")
        service.on_message(TOPIC, desired(DEVICE, 1, bad))
        wait_until(lambda: service.section().state == "refused", what="refused")
        assert _serving(slots) is None
        good = server.artifact("v1", signer=signer, signature="good")
        service.on_message(TOPIC, desired(DEVICE, 2, good))
        wait_until(lambda: service.section().state == "installed", what="installed")
        assert seen[-1] == ("v1", b"-----BEGIN CERTIFICATE-----\n")
    finally:
        service.stop()


def test_bad_stale_and_foreign_messages_change_nothing(
    tmp_path: Path, server: ArtifactServer
) -> None:
    events = Events()
    service, slots = _service(tmp_path, events)
    try:
        service.on_message(TOPIC, desired(DEVICE, 5, server.artifact("v1")))
        wait_until(lambda: _serving(slots) == "v1", what="v1")
        service.on_message(TOPIC, b"{not json")
        service.on_message(TOPIC, desired("pi-2", 9, server.artifact("v2")))
        service.on_message(TOPIC, desired(DEVICE, 4, server.artifact("v2")))  # stale seq
        service.on_message(TOPIC, b"")  # a cleared retained message
        assert _outcomes(events).count("refused") == 2
        assert service.section().desired == "v1" and _serving(slots) == "v1"
        assert server.fetched("model.tflite") == 1
    finally:
        service.stop()


def test_signed_by_the_fleet_ca_installs_anything_else_is_refused(
    tmp_path: Path, server: ArtifactServer
) -> None:
    """Real signatures: a signer certificate from the real FleetCA, checked by the agent's
    ``trust_ca`` check; a tampered signature, another CA's signer and a non-signing cert fail."""
    from agent.delivery.desired import signed_bytes
    from agent.delivery.trust import signature_check
    from orchard_common.signing import Signer, sign_artifact
    from provisioning.ca import FleetCA

    ca = FleetCA.init(tmp_path / "ca")
    other = FleetCA.init(tmp_path / "other-ca")
    signer = Signer(*ca.signer_cert("coordinator"))
    stranger = Signer(*other.signer_cert("coordinator"))
    events = Events()
    service, slots = _service(
        tmp_path, events, require_signed=True, check=signature_check(tmp_path / "ca" / "ca.pem")
    )

    def deliver(seq: int, artifact: Artifact, pem: bytes, state: str) -> str:
        server.faults.extra["signer.pem"] = pem
        service.on_message(TOPIC, desired(DEVICE, seq, artifact))
        wait_until(lambda: service.section().state == state, what=state)
        return service.section().last_error or ""

    try:
        good = sign_artifact(server.artifact("v1"), signer, signed_bytes=signed_bytes)
        assert deliver(1, good, signer.cert_pem, "installed") == ""
        v2 = sign_artifact(server.artifact("v2"), signer, signed_bytes=signed_bytes)
        forged = replace(v2, signature=good.signature)  # v1's signature on v2's digests
        assert "(signature)" in deliver(2, forged, signer.cert_pem, "refused")
        moved = replace(v2, sha256="0" * 64)  # a digest changed after signing: bytes differ
        assert "differs" in deliver(3, moved, signer.cert_pem, "refused")
        foreign = sign_artifact(server.artifact("v2"), stranger, signed_bytes=signed_bytes)
        assert "(issuer)" in deliver(4, foreign, stranger.cert_pem, "refused")
        assert "(fingerprint)" in deliver(5, v2, stranger.cert_pem, "refused")
        assert _serving(slots) == "v1"
        assert deliver(6, v2, signer.cert_pem, "installed") == ""
        assert _serving(slots) == "v2"
    finally:
        service.stop()
