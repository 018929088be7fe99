"""A simulated fleet for the rollout tests: boards whose health reaches a real Registry through
the ingest's own path (JSON bytes -> ``decode_payload`` -> ``Message`` -> ``record_many``), a
publisher that keeps what it was given (retained, per device, as the broker would) and an
artifact source over a dict. Only the ports the lead implements elsewhere are fakes."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.delivery.desired import Artifact, Desired
from agent.health.schema import Delivery, LiveModel, Payload, decode_payload
from coordinator.errors import CoordinatorError
from coordinator.health.registry import Message, Registry
from coordinator.rollout.controller import RolloutController
from coordinator.rollout.settings import RolloutSettings, Thresholds
from coordinator.rollout.store import RolloutStore
from tests.coordinator.health.helpers import birth, health, status
from tests.fakes import FakeClock


def artifact(version: str) -> Artifact:
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    return Artifact(
        version=version,
        sha256=digest(version),
        size=20480,
        manifest_sha256=digest(version + "/manifest"),
        manifest_size=3100,
        url=f"http://127.0.0.1:8781/models/{version}",
    ).check()


class MissingArtifact(CoordinatorError):
    pass


class Artifacts:
    """``ArtifactSource`` over the rounds a test declares: version ``<run>.<round>``."""

    def __init__(self) -> None:
        self.by_round: dict[tuple[str, int], Artifact] = {}

    def add(self, run_id: str, round_: int) -> Artifact:
        a = artifact(f"{run_id}.{round_}")
        self.by_round[(run_id, round_)] = a
        return a

    def artifact(self, run_id: str, round_: int) -> Artifact:
        try:
            return self.by_round[(run_id, round_)]
        except KeyError:
            raise MissingArtifact(f"runs/{run_id}/round-{round_}/model.tflite is missing") from None

    def find(self, version: str) -> Artifact | None:
        return next((a for a in self.by_round.values() if a.version == version), None)


class Publisher:
    """``Publisher`` keeping every message, and the retained one per device as a broker would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, Desired]] = []
        self.retained: dict[str, Desired] = {}
        self.down = False

    def publish(self, device_id: str, fleet: str | None, desired: Desired) -> None:
        if self.down:
            raise CoordinatorError("broker unreachable")
        wire = Desired.from_json(desired.to_json())  # a valid message, as the agent reads it
        assert wire == desired and wire.device_id == device_id
        self.sent.append((device_id, fleet, desired))
        self.retained[device_id] = desired

    def versions(self) -> dict[str, str | None]:
        return {d: m.model.version if m.model else None for d, m in self.retained.items()}

    def to(self, device_id: str) -> list[Desired]:
        return [m for d, _, m in self.sent if d == device_id]


@dataclass
class Board:
    device_id: str
    serving: str
    fleet: str | None = None
    live: dict[str, LiveModel] = field(default_factory=dict)
    delivery: Delivery = field(default_factory=Delivery)
    seq: int = 0
    session: int = 1


class Fleet:
    """Boards that report health into a real Registry and follow their desired model."""

    def __init__(self, registry: Registry, clock: FakeClock) -> None:
        self.registry = registry
        self.clock = clock
        self.boards: dict[str, Board] = {}

    def send(self, board: Board, payload: Payload) -> None:
        kind = type(payload).__name__.lower()
        data = payload.to_json().encode()
        decoded = decode_payload(kind, data)  # what the ingest does with a message's bytes
        raw = data.decode() if kind in ("health", "birth") else None
        self.registry.record_many(
            [Message(board.device_id, board.fleet, decoded, self.clock(), raw=raw)]
        )

    def add(self, device_id: str, serving: str, *, fleet: str | None = None) -> Board:
        board = Board(device_id, serving, fleet)
        self.boards[device_id] = board
        self.send(board, status("ready", session=board.session, ts=self.clock()))
        self.send(board, birth(device_id, ts=self.clock()))
        self.report(device_id)
        return board

    def metrics(self, device_id: str, version: str, **values: float | int | None) -> None:
        """Set a board's live metrics for a version (as its prediction log would count them)."""
        board = self.boards[device_id]
        old = board.live.get(version, LiveModel(version, since=self.clock()))
        board.live[version] = dataclasses.replace(old, **values)  # type: ignore[arg-type]

    def report(self, *device_ids: str) -> None:
        for device_id in device_ids or tuple(self.boards):
            board = self.boards[device_id]
            board.seq += 1
            h = health(seq=board.seq, ts=self.clock(), version=board.serving)
            models = [board.live[v] for v in self._shown(board) if v in board.live]
            self.send(board, dataclasses.replace(h, models=tuple(models), delivery=board.delivery))

    def _shown(self, board: Board) -> list[str]:
        """The serving version first, then the one before (what the agent reports)."""
        others = sorted(v for v in board.live if v != board.serving)
        return [board.serving, *others[-1:]]

    def follow(self, publisher: Publisher, *device_ids: str) -> None:
        """Boards install their retained desired model (as the agent would), then report."""
        for device_id in device_ids or tuple(self.boards):
            board = self.boards[device_id]
            desired = publisher.retained.get(device_id)
            if desired is None or desired.model is None:
                continue
            board.delivery = Delivery(desired.model.version, "installed", 1, None, desired.rollout)
            board.serving = desired.model.version
            self.report(device_id)

    def offline(self, device_id: str) -> None:
        board = self.boards[device_id]
        self.send(board, status("lost", session=board.session, ts=self.clock()))

    def back(self, device_id: str) -> None:
        board = self.boards[device_id]
        board.session += 1
        self.send(board, status("ready", session=board.session, ts=self.clock()))
        self.report(device_id)


LENIENT = Thresholds(min_predictions=10)


def settings(**changes: object) -> RolloutSettings:
    base = RolloutSettings(soak_s=600.0, min_labels=30, thresholds=LENIENT)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Rig:
    """A controller over a real store and registry in a temp dir, with the fakes above."""

    path: Path
    clock: FakeClock
    registry: Registry
    store: RolloutStore
    artifacts: Artifacts
    publisher: Publisher
    fleet: Fleet
    controller: RolloutController

    @classmethod
    def make(cls, tmp: Path, clock: FakeClock, **changes: object) -> Rig:
        registry = Registry(tmp / "fleet.sqlite", clock=clock)
        store = RolloutStore(tmp / "rollout.sqlite", clock=clock)
        artifacts, publisher = Artifacts(), Publisher()
        controller = RolloutController(
            store, registry, artifacts, publisher, settings(**changes), clock=clock
        )
        return cls(
            tmp, clock, registry, store, artifacts, publisher, Fleet(registry, clock), controller
        )

    def restart(self, **changes: object) -> Rig:
        """A new coordinator process: new connections, a new publisher, the same files."""
        self.store.close()
        self.registry.close()
        fresh = Rig.make(self.path, self.clock, **changes)
        fresh.artifacts = self.artifacts
        fresh.controller.artifacts = self.artifacts
        fresh.fleet.boards = self.fleet.boards
        return fresh

    def close(self) -> None:
        self.store.close()
        self.registry.close()
