"""Build validated ``health`` and ``birth`` payloads from the board and the runner's snapshot.

The runner supplies only the sections it owns, typed: :class:`HealthParts` (model,
inference, training, federation, sensors) and :class:`BirthParts` (agent version, runtime,
sensor names, capabilities); nothing else, such as raw readings, has a place in them. A section
that fails validation is left out (logged once), so a bug elsewhere costs one section, never
the whole message.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.health.facts import BoardFacts, SystemSampler, static_facts
from agent.health.schema import (
    Birth,
    BirthParts,
    Health,
    HealthParts,
    Outbox,
    SchemaError,
    parts_dict,
)

logger = logging.getLogger(__name__)

HealthSnapshot = Callable[[], HealthParts]
BirthSnapshot = Callable[[], BirthParts]


class Composer:
    def __init__(
        self,
        facts: BoardFacts,
        system: SystemSampler,
        *,
        snapshot: HealthSnapshot,
        birth: BirthSnapshot,
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
        extra = self._sections("health", self._snapshot)
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
        extra = self._sections("birth", self._birth)
        birth: Birth = self._validate(Birth, base, extra, "birth")
        return birth

    def _sections(
        self, kind: str, source: Callable[[], HealthParts | BirthParts]
    ) -> dict[str, Any]:
        try:
            return parts_dict(source())
        except Exception:  # the runner's callback must not stop health reporting
            logger.exception("%s snapshot callback failed; sending board facts only", kind)
            return {}

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
