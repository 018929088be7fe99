"""Which config keys the running agent takes without a restart, and taking them.

| keys                                         | taken by                                        |
|----------------------------------------------|-------------------------------------------------|
| ``sampling.*``, ``sensors.*.interval_s``,     | the sampler (:meth:`Sampler.update`), within    |
| ``sensors.*.timeout_s``                      | its next wait (at most 1 s)                     |
| ``training.*`` but ``reserve_agent_cpu``     | the trainer supervisor's watchdog (memory_mb,   |
|                                              | max_seconds); the ClientApp's gate reads the    |
|                                              | effective config each round; a trainer reads it |
|                                              | when it starts                                  |
| ``labels.max_per_minute``,                   | the label service's rate limit and matching     |
| ``labels.match_tolerance_s``                 |                                                 |
| ``remote.*``                                 | read when the next change is written            |
| ``logging.level``                            | the root logger                                 |

Every other key needs a restart. With ``trainer_launcher = "systemd"`` the trainer unit's
``MemoryMax=``/``CPUQuota=`` were rendered by provisioning and stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from agent.config import AgentSettings
    from agent.federation.trainer_supervisor import TrainerSupervisor
    from agent.labels import LabelService
    from agent.sensors import Sampler

LIVE: Final = (
    "sampling.*",
    "sensors.*.interval_s",
    "sensors.*.timeout_s",
    "training.*",
    "labels.max_per_minute",
    "labels.match_tolerance_s",
    "remote.*",
    "logging.level",
)
RESTART: Final = ("training.reserve_agent_cpu",)  # pins the agent's own threads at start
# A change under these must also bring the MQTT link back before it is kept.
BROKER: Final = ("mqtt.", "health.")


def _matches(key: str, pattern: str) -> bool:
    parts, want = key.split("."), pattern.split(".")
    return len(parts) == len(want) and all(w in ("*", p) for p, w in zip(parts, want, strict=True))


def is_live(key: str) -> bool:
    return key not in RESTART and any(_matches(key, p) for p in LIVE)


def restart_keys(changed: Iterable[str]) -> tuple[str, ...]:
    """The changed keys the running agent cannot take (an empty tuple: all live)."""
    return tuple(k for k in changed if not is_live(k))


def needs_broker(changed: Iterable[str]) -> bool:
    return any(k.startswith(BROKER) for k in changed)


class LiveParts:
    """The running parts a live change reaches (``None`` for the parts that do not run)."""

    def __init__(
        self,
        sampler: Sampler | None = None,
        trainer: TrainerSupervisor | None = None,
        labels: LabelService | None = None,
    ) -> None:
        self.sampler = sampler
        self.trainer = trainer
        self.labels = labels

    def apply(self, settings: AgentSettings, changed: Iterable[str] = ()) -> None:
        """Hand every live-capable section of ``settings`` to the part that uses it."""
        if "logging.level" in changed:  # else a -v (debug) run stays as it is
            logging.getLogger().setLevel(settings.logging.level.upper())
        if self.sampler is not None:
            self.sampler.update(settings.sampling, settings.sensors)
        if self.trainer is not None:
            self.trainer.update_budget(settings.training)
        if self.labels is not None:
            self.labels.update(settings.labels)
