"""The ``GET /healthz`` document: one type, built by the agent, decoded by its readers.

The app fills the serving part (``ready``, ``model``, ``uptime_s``); the running agent adds
:class:`AgentState` (device, sensors, the SuperNode, the trainer, the MQTT link). Readers such
as the demo and the tests decode the JSON with :meth:`Healthz.decode`, whose errors name the
field, the value and what was expected. Pure stdlib: the coordinator may import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError
from agent.federation.status import DISABLED as DISABLED
from agent.federation.status import StatusError, Supernode, Trainer, TrainerStatus
from agent.health.schema import ModelInfo


class HealthzError(AgentError):
    """A ``/healthz`` document that does not fit :class:`Healthz`."""


# The serving model, as /healthz and the health messages both name it.
ModelRef = ModelInfo


@dataclass(frozen=True)
class MqttLink:
    enabled: bool
    connected: bool = False
    protocol: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class AgentState:
    device_id: str
    sensors: Mapping[str, str] = field(default_factory=dict)  # name -> ok | failing | disabled
    tensorflow_loaded: bool = False
    federation: Supernode = DISABLED
    trainer: Trainer | None = None
    mqtt: MqttLink = MqttLink(enabled=False)


@dataclass(frozen=True)
class Healthz:
    ready: bool
    model: ModelRef | None
    uptime_s: float
    agent: AgentState | None = None  # None: the app alone (tests), no running agent around it
    status: str = "ok"

    @property
    def model_loaded(self) -> bool:
        return self.ready

    def encode(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "ready": self.ready,
            "model_loaded": self.ready,
            "model": None if self.model is None else dataclasses.asdict(self.model),
            "uptime_s": self.uptime_s,
        }
        a = self.agent
        if a is not None:
            trainer = None
            if a.trainer is not None:
                t = a.trainer
                trainer = {
                    **t.status.to_dict(),
                    "starts": t.starts,
                    "kills": t.kills,
                    "running": t.running,
                }
            doc.update(
                device_id=a.device_id,
                sensors=dict(a.sensors),
                tensorflow_loaded=a.tensorflow_loaded,
                federation=dataclasses.asdict(a.federation),
                trainer=trainer,
                mqtt=dataclasses.asdict(a.mqtt) if a.mqtt.enabled else {"enabled": False},
            )
        return doc

    @classmethod
    def decode(cls, doc: Any) -> Healthz:
        if not isinstance(doc, Mapping):
            raise HealthzError(f"healthz: expected a JSON object. Received: {doc!r:.80}")
        model = doc.get("model")
        agent = None
        if "device_id" in doc:
            agent = AgentState(
                device_id=_get(doc, "device_id", str),
                sensors=_sensors(doc.get("sensors", {})),
                tensorflow_loaded=_get(doc, "tensorflow_loaded", bool),
                federation=_record(Supernode, "federation", doc.get("federation")),
                trainer=_trainer(doc.get("trainer")),
                mqtt=_record(MqttLink, "mqtt", doc.get("mqtt")),
            )
        return cls(
            ready=_get(doc, "ready", bool),
            model=None if model is None else _record(ModelRef, "model", model),
            uptime_s=float(_get(doc, "uptime_s", (int, float))),
            agent=agent,
            status=_get(doc, "status", str),
        )


def _get(doc: Mapping[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    value = doc.get(name)
    bad_bool = isinstance(value, bool) and types is not bool
    if not isinstance(value, types) or bad_bool:
        names = (
            types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        )
        raise HealthzError(
            f"healthz: expected {name} to be {names}. Received: {name}={value!r:.80}"
        )
    return value


def _sensors(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise HealthzError(
            f"healthz: expected sensors to map names to states. Received: {value!r:.80}"
        )
    return dict(value)


def _record(kind: Any, name: str, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise HealthzError(f"healthz: expected {name} to be an object. Received: {value!r:.80}")
    try:
        return kind(**value)
    except TypeError as exc:
        raise HealthzError(f"healthz: {name}: {exc}. Received: {name}={value!r:.120}") from None


def _trainer(value: Any) -> Trainer | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise HealthzError(f"healthz: expected trainer to be an object. Received: {value!r:.80}")
    counters = {k: value.get(k) for k in ("starts", "kills", "running")}
    document = {k: v for k, v in value.items() if k not in counters}
    try:
        status = TrainerStatus(**document)
    except (TypeError, StatusError) as exc:
        raise HealthzError(f"healthz: trainer: {exc}") from None
    return Trainer(
        status, int(counters["starts"] or 0), int(counters["kills"] or 0), bool(counters["running"])
    )
