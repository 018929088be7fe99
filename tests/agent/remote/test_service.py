"""Deciding on commands in the agent's process: real signatures from a real fleet CA, the
signer certificate fetched over HTTP, real files; the agent's parts are stand-ins that record
what reached them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.config import AgentSettings
from agent.delivery.fetch import HttpFetcher
from agent.health.schema import Ack
from agent.overlay import Overlay
from agent.remote import trial
from agent.remote.auth import NEEDS_CA, CommandAuth
from agent.remote.command import Command
from agent.remote.live import LiveParts
from agent.remote.service import RemoteConfig
from agent.remote.state import Pending, RemoteFiles
from tests.agent.remote.helpers import Fleet, fleet, snapshot
from tests.waiting import wait_until

DEVICE = "pi-1"
_FIVE: dict[str, str | None] = {"sampling.interval_s": "5"}


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("fleet")) as f:
        yield f


@dataclass
class Parts(LiveParts):
    """Records each settings object a live change hands on."""

    applied: list[AgentSettings] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def apply(self, settings: AgentSettings, changed: Any = ()) -> None:
        self.applied.append(settings)


@dataclass
class Board:
    path: Path
    files: RemoteFiles
    remote: RemoteConfig
    parts: Parts
    acks: list[Ack]
    events: list[tuple[str, dict[str, Any]]]
    restarts: list[str]
    health: list[str | None]

    def send(self, command: Command | bytes) -> Ack | None:
        before = len(self.acks)
        raw = command if isinstance(command, bytes) else command.to_json().encode()
        self.remote.handle(raw)
        return self.acks[-1] if len(self.acks) > before else None


def _board(tmp_path: Path, ca: Path | None, *, healthy_within_s: float = 60.0) -> Board:
    path = tmp_path / "agent.toml"
    trust = f'[models]\ntrust_ca = "{ca}"\n' if ca else ""
    path.write_text(
        f'device_id = "{DEVICE}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 1.0\n'
        f"[remote]\nhealthy_within_s = {healthy_within_s}\n{trust}"
    )
    cfg = config.load(path)
    files = RemoteFiles(cfg.state_dir)
    acks: list[Ack] = []
    events: list[tuple[str, dict[str, Any]]] = []
    restarts: list[str] = []
    health: list[str | None] = [None]  # what the health check answers (the last item)
    parts = Parts()
    remote = RemoteConfig(
        cfg,
        files=files,
        auth=CommandAuth(cfg.models.trust_ca, files.signers, HttpFetcher(timeout_s=5)),
        live=parts,
        send=lambda ack: acks.append(Ack.from_json(ack.to_json())),
        restart=restarts.append,
        health=lambda need_broker: health[-1],
        on_event=lambda kind, data: events.append((kind, data)),
    )
    return Board(path, files, remote, parts, acks, events, restarts, health)


def test_a_signed_live_change_is_written_applied_and_acked(tmp_path: Path, signers: Fleet) -> None:
    board = _board(tmp_path, signers.ca_pem)
    raw = signers.command(DEVICE, 10, {"sensors.env.interval_s": "0.5"}).to_json().encode()
    ack = board.send(raw)
    assert ack is not None and (ack.seq, ack.status, ack.live) == (10, "applied", True)
    assert board.parts.applied[-1].sensors[0].interval_s == 0.5
    cfg = config.load(board.path)
    assert ack.config_version == cfg.config_version
    assert cfg.overlay.keys == ("sensors.env.interval_s",)
    assert board.files.last()[0] == 10 and board.restarts == []
    assert not board.files.last_good.exists()  # before it: no overlay
    # the retained command delivered again (a reconnect; a restart): no second ack
    assert board.send(raw) is None
    assert _board(tmp_path, signers.ca_pem).send(raw) is None
    ack = board.send(signers.command(DEVICE, 11, {"labels.max_per_minute": "10"}))
    assert ack is not None and ack.status == "applied"
    assert Overlay.loads(board.files.last_good.read_text()).set == {"sensors.env.interval_s": 0.5}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda f: f.command(DEVICE, 20, {"sampling.interval_s": "5"}, by=None), "signed command"),
        (lambda f: f.command(DEVICE, 20, {"sampling.interval_s": "5"}, by=f.stranger), "(issuer)"),
        (
            lambda f: replace(
                f.command(DEVICE, 20, {"sampling.interval_s": "5"}),
                patch={"sampling.interval_s": "1"},
            ),
            "(signature)",
        ),
        (
            lambda f: f.command(DEVICE, 20, {"sampling.interval_s": "5"}, issued=1.0e9),
            "(expired)",
        ),
        (lambda f: f.command("pi-2", 20, {"sampling.interval_s": "5"}), "command.device_id"),
        (lambda f: f.command(DEVICE, 5, {"sampling.interval_s": "5"}), "replayed or stale"),
        (
            lambda f: f.command(DEVICE, 20, {"mqtt.tls_ca": '"/tmp/x"'}),
            "mqtt.tls_ca: expected keys",
        ),
    ],
    ids=["unsigned", "another-ca", "tampered", "expired", "other-device", "replayed", "forbidden"],
)
def test_refused_commands_change_nothing(
    tmp_path: Path, signers: Fleet, make: Any, reason: str
) -> None:
    board = _board(tmp_path, signers.ca_pem)
    first = board.send(signers.command(DEVICE, 10, {"sensors.env.interval_s": "0.5"}))
    assert first is not None and first.status == "applied"
    before = snapshot(tmp_path / "state")
    ack = board.send(make(signers))
    assert ack is not None and ack.status == "refused", ack
    assert reason in ack.errors[0], ack.errors
    assert ack.config_version == first.config_version  # what still runs
    assert snapshot(tmp_path / "state") == before
    assert len(board.parts.applied) == 1 and board.restarts == []


def test_an_expired_signer_certificate_is_refused_on_the_board_clock(
    tmp_path: Path, signers: Fleet
) -> None:
    board = _board(tmp_path, signers.ca_pem)
    command = signers.command(DEVICE, 10, {"sampling.interval_s": "5"}, issued=4.0e9)
    board.remote.clock = lambda: 4.0e9 + 1  # 2096: the command is fresh, the certificate not
    ack = board.send(command)
    assert ack is not None and ack.status == "refused" and "(expired)" in ack.errors[0]


def test_without_the_fleet_ca_every_command_is_refused(tmp_path: Path, signers: Fleet) -> None:
    board = _board(tmp_path, None)
    ack = board.send(signers.command(DEVICE, 10, {"sampling.interval_s": "5"}))
    assert ack is not None and ack.status == "refused" and ack.errors == (NEEDS_CA,)
    assert snapshot(tmp_path / "state") == {}


def test_a_wrong_value_is_rejected_with_the_validators_words(
    tmp_path: Path, signers: Fleet
) -> None:
    board = _board(tmp_path, signers.ca_pem)
    patch: dict[str, str | None] = {"sampling.interval_s": "-3", "training.memry_mb": "300"}
    ack = board.send(signers.command(DEVICE, 10, patch))
    assert ack is not None and ack.status == "rejected"
    assert "sampling.interval_s: expected a positive number. Received: interval_s=-3" in ack.errors
    assert any(e.startswith("training.memry_mb: expected a known option") for e in ack.errors)
    assert all(len(e) <= 256 for e in ack.errors)
    assert snapshot(tmp_path / "state") == {} and board.parts.applied == []


def test_malformed_commands_are_answered_when_their_seq_can_be_read(
    tmp_path: Path, signers: Fleet
) -> None:
    board = _board(tmp_path, signers.ca_pem)
    body = json.loads(signers.command(DEVICE, 10, {"sampling.interval_s": "5"}).to_json())
    ack = board.send(json.dumps({**body, "kind": "reboot"}).encode())
    assert ack is not None and (ack.seq, ack.status) == (10, "refused")
    assert ack.errors[0].startswith("command.kind: expected one of 'config'")
    assert board.send(b"\xff not json") is None
    kind, data = board.events[-1]
    assert kind == "remote_config" and data["status"] == "refused"
    assert "UTF-8 JSON" in data["reason"]


def test_a_change_that_needs_a_restart_is_kept_once_healthy(tmp_path: Path, signers: Fleet) -> None:
    board = _board(tmp_path, signers.ca_pem)
    ack = board.send(signers.command(DEVICE, 10, {"http.max_body_bytes": "2000000"}))
    assert ack is not None and ack.status == "restarting"
    assert board.restarts and "http.max_body_bytes" in board.restarts[0]
    pending = board.files.read_pending()
    assert pending is not None and pending.starts == 0 and pending.seq == 10
    assert ack.config_version == config.load(board.path, overlay=False).config_version

    # the next start, as systemd makes it: counted, loaded, judged healthy, acked
    assert trial.begin(board.path) is not None
    pending = board.files.read_pending()
    assert pending is not None and pending.starts == 1
    restarted = _board(tmp_path, signers.ca_pem)
    restarted.remote.ready()  # READY was sent: the trial is judged from the first look
    restarted.remote.start()
    try:
        wait_until(lambda: restarted.acks, 10, "the applied ack")
    finally:
        restarted.remote.stop()
    done = restarted.acks[0]
    assert (done.seq, done.status, done.live) == (10, "applied", False)
    assert done.config_version == pending.config_version == config.load(board.path).config_version
    assert board.files.read_pending() is None


def test_a_change_not_healthy_in_time_goes_back_to_the_last_good(
    tmp_path: Path, signers: Fleet
) -> None:
    board = _board(tmp_path, signers.ca_pem, healthy_within_s=5)
    board.send(signers.command(DEVICE, 10, {"sensors.env.interval_s": "0.5"}))
    good = board.files.overlay.read_bytes()
    board.send(
        signers.command(DEVICE, 11, {"mqtt.keepalive_s": "20", "remote.healthy_within_s": "5"})
    )
    pending = board.files.read_pending()
    assert pending is not None and pending.need_broker
    assert trial.begin(board.path) is not None
    restarted = _board(tmp_path, signers.ca_pem, healthy_within_s=5)
    restarted.health.append("not connected to the MQTT broker")
    restarted.remote.started -= 5  # five seconds into this start already
    restarted.remote.ready()  # READY was sent: the trial is judged from the first look
    restarted.remote.start()
    try:
        wait_until(lambda: restarted.restarts, 10, "the rollback's restart")
    finally:
        restarted.remote.stop()
    assert board.files.overlay.read_bytes() == good
    assert restarted.acks == []  # the next start sends it, with the last good config running
    again = _board(tmp_path, signers.ca_pem, healthy_within_s=5)
    again.remote.start()
    try:
        wait_until(lambda: again.acks, 10, "the rolled_back ack")
    finally:
        again.remote.stop()
    ack = again.acks[0]
    assert (ack.seq, ack.status) == (11, "rolled_back")
    assert "not healthy within 5 s: not connected to the MQTT broker" in ack.errors[0]
    assert ack.config_version == config.load(board.path).config_version
    assert board.files.read_pending() is None


def test_a_change_that_keeps_failing_to_start_is_rolled_back_before_it_loads(
    tmp_path: Path, signers: Fleet
) -> None:
    board = _board(tmp_path, signers.ca_pem)
    board.send(signers.command(DEVICE, 10, {"http.port": "1"}))
    for start in (1, 2):
        attempt = trial.begin(board.path)
        assert attempt is not None
        attempt.failed(f"http.port: expected a free port (start {start})")
    assert config.load(board.path).http.port == 1
    assert trial.begin(board.path) is None  # third start: the last good config is back
    assert config.load(board.path).http.port == 8765 and not board.files.overlay.exists()
    pending = board.files.read_pending()
    assert pending is not None and pending.outcome == "rolled_back"
    assert pending.reason == "not healthy in 2 start(s): http.port: expected a free port (start 2)"


def test_commands_wait_while_a_change_is_on_trial(tmp_path: Path, signers: Fleet) -> None:
    path = _board(tmp_path, signers.ca_pem).path
    RemoteFiles(tmp_path / "state").write_pending(
        Pending(
            seq=9,
            config_version=config.load(path).config_version,
            keys=("http.port",),
            need_broker=False,
            healthy_within_s=60,
            trial_starts=2,
            written=0,
        )
    )
    board = _board(tmp_path, signers.ca_pem)
    board.health.append("GET /healthz failed")
    board.remote.ready()
    board.remote.start()
    try:
        payload = signers.command(DEVICE, 10, {"sensors.env.interval_s": "0.5"}).to_json()
        board.remote.on_message("orchard/v1/pi-1/command", payload.encode())
        board.health.append(None)  # healthy: the trial ends, then the command is taken
        wait_until(lambda: len(board.acks) == 2, 10, "two acks")
    finally:
        board.remote.stop()
    assert [(a.seq, a.status, a.live) for a in board.acks] == [
        (9, "applied", False),
        (10, "applied", True),
    ]
