"""The health message contract (docs/architecture.md, MQTT health): topics, payloads, pure stdlib.

The coordinator imports this module (and only this one) from ``agent.health``::

    from agent.health.schema import parse_topic, decode_payload, Health, SchemaError

    parts = parse_topic(msg.topic)                 # TopicParts(fleet, device_id, kind)
    payload = decode_payload(parts.kind, msg.payload)  # Status | Birth | Health | Event

Every payload is a frozen dataclass with ``to_json()`` and ``from_json()`` / ``validate()``;
decoding refuses unknown keys at every level (no raw readings can ride along), wrong types,
NaN and out-of-range numbers with a ``SchemaError`` naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from agent.health.codec import MAX_PAYLOAD_BYTES, SchemaError, bounds, decode, encode, parse_json
from agent.health.topics import (
    DEFAULT_PREFIX,
    DOWNLINK_KINDS,
    KINDS,
    Kind,
    TopicParts,
    Topics,
    check_name,
    is_downlink,
    parse_topic,
    subscriptions,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DOWNLINK_KINDS",
    "EVENT_KINDS",
    "KINDS",
    "MAX_PAYLOAD_BYTES",
    "PAYLOADS",
    "STATES",
    "Ack",
    "AckStatus",
    "Birth",
    "Delivery",
    "DeliveryState",
    "Disk",
    "Event",
    "Federation",
    "Health",
    "Inference",
    "Kind",
    "LiveModel",
    "Memory",
    "ModelInfo",
    "Outbox",
    "Payload",
    "Runtime",
    "SchemaError",
    "Sensors",
    "State",
    "Status",
    "SupernodeState",
    "Throttling",
    "TopicParts",
    "Topics",
    "Training",
    "check_name",
    "decode_payload",
    "is_downlink",
    "parse_topic",
    "subscriptions",
]

State = Literal["init", "ready", "alert", "disconnected", "lost"]
STATES: Final[tuple[str, ...]] = ("init", "ready", "alert", "disconnected", "lost")
SupernodeState = Literal["stopped", "starting", "connected", "backoff", "failed"]


_POS: Final = bounds(low=0)
_PCT: Final = bounds(low=0, high=100)
_TOKEN: Final = bounds(token=True)


class _Payload:
    """``to_json`` / ``from_json`` / ``validate`` shared by the top-level payload types."""

    _topic_kind: str = ""

    def to_json(self) -> str:
        return encode(self)

    @classmethod
    def validate(cls, payload: Any) -> Any:
        """A parsed JSON object as this type; ``SchemaError`` names the first wrong field."""
        return decode(cls, payload, cls._topic_kind)

    @classmethod
    def from_json(cls, data: str | bytes | bytearray) -> Any:
        return cls.validate(parse_json(data, cls._topic_kind))


# -- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status(_Payload):
    """Retained. The Last Will is ``lost``; a clean stop publishes ``disconnected``."""

    _topic_kind = "status"
    state: State
    session: int = field(metadata=_POS)
    ts: float = field(metadata=_POS)
    reasons: tuple[str, ...] = ()  # why the state is ``alert``, e.g. ("throttled", "hot")


# -- birth ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    version: str
    sha256: str
    quantization: str


@dataclass(frozen=True)
class Runtime:
    name: str  # ai_edge_litert | tflite_runtime | tensorflow.lite
    version: str


@dataclass(frozen=True)
class Birth(_Payload):
    """Retained static facts, published once per connect."""

    _topic_kind = "birth"
    device_id: str
    ts: float = field(metadata=_POS)
    session: int = field(metadata=_POS)
    fleet: str | None = None
    board: str | None = None  # /proc/device-tree/model, None off a Pi
    serial: str | None = None
    os: str = ""
    arch: str = ""
    python: str = ""
    agent_version: str = ""
    runtime: Runtime | None = None  # which LiteRT serves
    cpu_count: int = field(default=0, metadata=_POS)
    memory_total_mb: float = field(default=0.0, metadata=_POS)
    sensors: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    # the coordinator marks a device stale after 3 missed intervals
    health_interval_s: float = field(default=30.0, metadata=_POS)
    model: ModelInfo | None = None  # the model serving when the agent connected
    # agent.overlay.config_version of the effective agent.toml when the agent connected (an
    # Ack carries it for each remote change)
    config_version: str | None = None


# -- health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    total_mb: float = field(metadata=_POS)
    available_mb: float = field(metadata=_POS)
    pct: float = field(metadata=_PCT)


@dataclass(frozen=True)
class Disk:
    free_mb: float = field(metadata=_POS)
    pct: float = field(metadata=_PCT)


@dataclass(frozen=True)
class Throttling:
    """Firmware ``get_throttled`` bits 0..3 (now) and 16..19 (has occurred since boot)."""

    under_voltage: bool
    freq_capped: bool
    throttled: bool
    soft_temp_limit: bool
    under_voltage_occurred: bool
    freq_capped_occurred: bool
    throttled_occurred: bool
    soft_temp_limit_occurred: bool

    @property
    def any_now(self) -> bool:
        return self.under_voltage or self.freq_capped or self.throttled or self.soft_temp_limit


@dataclass(frozen=True)
class Inference:
    count: int = field(default=0, metadata=_POS)
    p50_ms: float | None = field(default=None, metadata=_POS)
    p95_ms: float | None = field(default=None, metadata=_POS)
    errors: int = field(default=0, metadata=_POS)


_UNIT: Final = bounds(low=0, high=1)
DeliveryState = Literal["idle", "fetching", "verifying", "installed", "failed", "refused"]


@dataclass(frozen=True)
class LiveModel:
    """How one model version has predicted on this board (the serving one and the one before).

    Counted since the version started serving on this agent (kept across agent restarts in
    the prediction log). Aggregates only: ``classes`` maps a class name to its count of
    predictions (classification; empty otherwise), ``drift_psi`` is the population stability
    index of this version's class distribution against the previous version's (``None``
    without a previous version or classes), ``labelled`` counts predictions that received a
    label, ``accuracy`` (classification) or ``mae`` (regression, forecast) is over those.
    """

    version: str
    predictions: int = field(default=0, metadata=_POS)
    errors: int = field(default=0, metadata=_POS)
    p50_ms: float | None = field(default=None, metadata=_POS)
    p99_ms: float | None = field(default=None, metadata=_POS)
    mean_confidence: float | None = field(default=None, metadata=_UNIT)
    classes: dict[str, int] = field(default_factory=dict)
    drift_psi: float | None = field(default=None, metadata=_POS)
    labelled: int = field(default=0, metadata=_POS)
    accuracy: float | None = field(default=None, metadata=_UNIT)
    mae: float | None = field(default=None, metadata=_POS)
    since: float | None = field(default=None, metadata=_POS)  # when it started serving


@dataclass(frozen=True)
class Delivery:
    """Where the agent is with the coordinator's desired model (``<base>/desired``).

    ``desired`` is the version asked for (``None``: nothing asked yet); ``state`` is ``idle``
    (nothing to do: the desired version serves, or nothing is desired), ``fetching``,
    ``verifying``, ``installed`` (the desired version serves), ``failed`` (a fetch or install
    failed; retried with backoff) or ``refused`` (signature or digest wrong: not retried until
    the desired state changes). ``last_error`` says why, ``attempts`` counts tries of this
    desired version, ``rollout`` echoes the desired state's rollout id.
    """

    desired: str | None = None
    state: DeliveryState = "idle"
    attempts: int = field(default=0, metadata=_POS)
    last_error: str | None = None
    rollout: str | None = None


@dataclass(frozen=True)
class Training:
    """``state`` and ``last_outcome`` are the trainer's tokens (idle, running; ok, failed...)."""

    state: str = field(default="idle", metadata=_TOKEN)
    round: int | None = field(default=None, metadata=_POS)
    last_duration_s: float | None = field(default=None, metadata=_POS)
    peak_rss_mb: float | None = field(default=None, metadata=_POS)
    last_outcome: str | None = field(default=None, metadata=_TOKEN)
    failures_in_row: int = field(default=0, metadata=_POS)


@dataclass(frozen=True)
class Federation:
    supernode: SupernodeState = "stopped"
    node_id: int | None = None
    restarts: int = field(default=0, metadata=_POS)


@dataclass(frozen=True)
class Sensors:
    rate_hz: float = field(default=0.0, metadata=_POS)
    rejected: int = field(default=0, metadata=_POS)
    failed: tuple[str, ...] = ()  # names of disabled sensors (names only, never values)


@dataclass(frozen=True)
class Outbox:
    queued: int = field(default=0, metadata=_POS)
    dropped: int = field(default=0, metadata=_POS)


@dataclass(frozen=True)
class Health(_Payload):
    """Periodic (``health_interval_s``) and on significant change. Aggregates only."""

    _topic_kind = "health"
    seq: int = field(metadata=_POS)
    ts: float = field(metadata=_POS)
    uptime_s: float = field(metadata=_POS)
    cpu_pct: float = field(metadata=_PCT)
    load: tuple[float, float, float] = field(metadata=_POS)
    memory: Memory = field()
    disk: Disk = field()
    rss_mb: float = field(metadata=_POS)
    cpu_temp_c: float | None = field(default=None, metadata=bounds(low=-60, high=150))
    throttling: Throttling | None = None  # None when not a Pi
    model: ModelInfo | None = None
    inference: Inference = field(default_factory=Inference)
    training: Training = field(default_factory=Training)
    federation: Federation = field(default_factory=Federation)
    sensors: Sensors = field(default_factory=Sensors)
    outbox: Outbox = field(default_factory=Outbox)
    models: tuple[LiveModel, ...] = ()  # live metrics per version: serving first
    delivery: Delivery | None = None  # None: the agent takes no desired state (no [mqtt])


@dataclass(frozen=True)
class HealthParts:
    """The sections of :class:`Health` the agent's parts own (the board facts are sampled by
    the reporter). ``None``: that part is not running on this agent."""

    model: ModelInfo | None = None
    inference: Inference | None = None
    training: Training | None = None
    federation: Federation | None = None
    sensors: Sensors | None = None
    models: tuple[LiveModel, ...] | None = None
    delivery: Delivery | None = None


@dataclass(frozen=True)
class BirthParts:
    """The sections of :class:`Birth` the agent knows (the rest are the board's facts)."""

    agent_version: str = ""
    sensors: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    runtime: Runtime | None = None
    model: ModelInfo | None = None
    config_version: str | None = None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def parts_dict(parts: HealthParts | BirthParts) -> dict[str, Any]:
    """The sections that are set, as the plain data :meth:`Health.validate` reads."""
    return {
        f.name: _plain(v)
        for f in dataclasses.fields(parts)
        if (v := getattr(parts, f.name)) is not None
    }


# -- event ----------------------------------------------------------------------------------

EVENT_KINDS: Final = (
    "state_change",
    "model_swap",
    "rollback",
    "delivery",
    "software_update",
    "budget_violation",
    "sensor_failed",
    "sensor_recovered",
    "supernode",
    "training",
    "error",
)


@dataclass(frozen=True)
class Event(_Payload):
    """Not retained: state changes, model swaps, rollbacks, budget violations, errors.

    ``kind`` is a lowercase token (usually one of ``EVENT_KINDS``); ``data`` is a flat object
    of at most 64 scalars (no lists, so no series of readings).
    """

    _topic_kind = "event"
    kind: str = field(metadata=_TOKEN)
    ts: float = field(metadata=_POS)
    data: dict[str, str | int | float | bool | None] = field(default_factory=dict)


# -- ack ------------------------------------------------------------------------------------

AckStatus = Literal["applied", "restarting", "rejected", "refused", "rolled_back", "updating"]


@dataclass(frozen=True)
class Ack(_Payload):
    """Not retained: the agent's answer to a command (``agent.remote.command.Command``).

    ``status``: ``applied`` (the new config runs; ``live`` says whether without a restart),
    ``restarting`` (written, the agent restarts through systemd to take it; ``applied`` follows
    once it is healthy), ``rejected`` (a wrong key or value: ``errors`` name each, in the
    check-config wording; the old config keeps running), ``refused`` (unsigned, wrongly
    signed, expired, replayed, or a key that must not change remotely: nothing changed) or
    ``rolled_back`` (the new config did not become healthy in time: the last good one runs).
    ``config_version`` is the sha256 (first 16 hex digits) of the effective config that runs.

    For an ``update`` command (a new agent software release): ``updating`` (the release is
    downloaded and verified; the root updater installs it beside the running one), then
    ``applied`` (the new version runs and is healthy), ``rolled_back`` (it did not become
    healthy, or the power went out before it was confirmed: the old version runs again) or
    ``rejected`` (not installed: a bad manifest or wheel, a failed download, a full disk, a wheel
    that does not import). ``agent_version`` is the version that runs when the ack is sent.
    """

    _topic_kind = "ack"
    seq: int = field(metadata=_POS)
    ts: float = field(metadata=_POS)
    status: AckStatus
    config_version: str | None = None
    live: bool = False
    errors: tuple[str, ...] = ()
    agent_version: str | None = None


Payload: TypeAlias = Status | Birth | Health | Event | Ack
PAYLOADS: Final[
    Mapping[str, type[Status] | type[Birth] | type[Health] | type[Event] | type[Ack]]
] = {
    "status": Status,
    "birth": Birth,
    "health": Health,
    "event": Event,
    "ack": Ack,
}


def decode_payload(kind: str, data: str | bytes | bytearray) -> Payload:
    """The payload of a message on topic ``kind`` (see :func:`parse_topic`), validated."""
    cls = PAYLOADS.get(kind)
    if cls is None:
        raise SchemaError("topic.kind", kind, f"one of {', '.join(KINDS)}")
    result: Payload = cls.from_json(data)
    return result
