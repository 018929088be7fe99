"""Build validated ``health`` and ``birth`` payloads from the board and the runner's snapshot.

The runner supplies only the sections it owns (``model``, ``inference``, ``training``,
``federation``, ``sensors`` for health; ``agent_version``, ``runtime``, ``sensors``,
``capabilities`` for birth). A section that fails validation is left out (logged once), so a
bug elsewhere costs one section, never the whole message; anything not in the schema, such as
raw readings, is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.health.facts import BoardFacts, SystemSampler, static_facts
from agent.health.schema import Birth, Health, Outbox, SchemaError

logger = logging.getLogger(__name__)

Snapshot = Callable[[], Mapping[str, Any]]
HEALTH_SECTIONS: Final = ("model", "inference", "training", "federation", "sensors")
BIRTH_SECTIONS: Final = ("agent_version", "runtime", "sensors", "capabilities")


class Composer:
    def __init__(
        self,
        facts: BoardFacts,
        system: SystemSampler,
        *,
        snapshot: Snapshot,
        birth: Snapshot,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.facts = facts
        self.system = system
        self._snapshot = snapshot
        self._birth = birth
        # Uptime is elapsed time, so it is measured on the monotonic clock: a wall-clock step
        # (NTP's first sync on a board without an RTC) must not make it jump or freeze.
        self._monotonic = monotonic
        self._started_mono = monotonic()
        self._static: dict[str, object] | None = None
        self._warned: set[str] = set()

    def health(self, now: float, seq: int, outbox: Outbox) -> Health:
        throttling = self.facts.throttling()
        base: dict[str, Any] = {
            **self.system.sample(),
            "seq": seq,
            "ts": now,
            "uptime_s": round(max(0.0, self._monotonic() - self._started_mono), 3),
            "cpu_temp_c": self.facts.cpu_temp_c(),
            "throttling": None if throttling is None else dataclasses.asdict(throttling),
            "outbox": dataclasses.asdict(outbox),
        }
        extra = self._sections("health", self._snapshot, HEALTH_SECTIONS)
        health: Health = self._validate(Health, base, extra, "health")
        return health

    def birth(
        self, *, device_id: str, fleet: str | None, session: int, now: float, interval_s: float
    ) -> Birth:
        if self._static is None:
            self._static = static_facts(self.facts)
        base: dict[str, Any] = {
            **self._static,
            "device_id": device_id,
            "fleet": fleet,
            "session": session,
            "ts": now,
            "health_interval_s": interval_s,
        }
        extra = self._sections("birth", self._birth, BIRTH_SECTIONS)
        birth: Birth = self._validate(Birth, base, extra, "birth")
        return birth

    def _sections(self, kind: str, source: Snapshot, allowed: tuple[str, ...]) -> dict[str, Any]:
        try:
            data = dict(source())
        except Exception:  # the runner's callback must not stop health reporting
            logger.exception("%s snapshot callback failed; sending board facts only", kind)
            return {}
        for key in [k for k in data if k not in allowed]:
            self._warn_once(f"{kind}.{key}", "%s snapshot key %r not allowed; dropped", kind, key)
            del data[key]
        return data

    def _validate(self, cls: Any, base: dict[str, Any], extra: dict[str, Any], kind: str) -> Any:
        for _ in range(len(extra) + 1):
            try:
                return cls.validate({**base, **extra})
            except SchemaError as exc:
                section = exc.field.split(".")[1] if "." in exc.field else ""
                if section not in extra:
                    raise
                self._warn_once(exc.field, "%s: %s; section %r dropped", kind, exc, section)
                del extra[section]
        raise AssertionError("unreachable")  # pragma: no cover

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)
