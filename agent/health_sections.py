"""What the agent's parts tell the health reporter: the ``health`` and ``birth`` sections.

Names, counts and figures only; never a sensor reading (docs/architecture.md, MQTT health).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, cast

from agent.health.schema import (
    BirthParts,
    Federation,
    HealthParts,
    ModelInfo,
    Runtime,
    Sensors,
    SupernodeState,
    Training,
)
from agent.sensors.status import SensorState

if TYPE_CHECKING:
    from agent.config import AgentSettings
    from agent.federation.status import Supernode, TrainerStatus
    from agent.federation.supernode import SupernodeSupervisor
    from agent.federation.trainer_supervisor import TrainerSupervisor
    from agent.metrics import AgentMetrics
    from agent.sensors import Sampler
    from agent.slots import ModelSlots

_TRAINER_STATE = {
    "starting": "running",
    "training": "running",
    "evaluating": "running",
    "exporting": "running",
    "stopped": "idle",
}


def health_sections(
    metrics: AgentMetrics,
    sampler: Sampler,
    slots: ModelSlots,
    trainer: TrainerSupervisor | None,
    supernode: SupernodeSupervisor | None,
) -> HealthParts:
    status = sampler.status()
    predictor = slots.current()  # one read: a swap may happen between two
    m = None if predictor is None else predictor.manifest
    return HealthParts(
        model=None if m is None else ModelInfo(m.version, m.sha256, m.quantization),
        inference=metrics.inference_stats(),
        sensors=Sensors(
            rate_hz=round(sum(s.rate_hz for s in status.values()), 3),
            rejected=sum(s.rejected_total for s in status.values()),
            failed=tuple(sorted(n for n, s in status.items() if s.state == SensorState.DISABLED)),
        ),
        training=None if trainer is None else _training(trainer.current_status()),
        federation=None if supernode is None else _federation(supernode.info()),
    )


def _training(t: TrainerStatus) -> Training:
    return Training(
        state=_TRAINER_STATE.get(t.state, t.state),
        round=t.round,
        last_duration_s=t.last_duration_s,
        peak_rss_mb=t.peak_rss_mb,
        last_outcome=t.last_outcome,
        failures_in_row=t.failures_in_row,
    )


def _federation(info: Supernode) -> Federation:
    return Federation(cast(SupernodeState, info.supernode), info.node_id, info.restarts)


def birth_facts(cfg: AgentSettings, capabilities: list[str]) -> BirthParts:
    try:
        agent_version = version("orchard-fl")
    except PackageNotFoundError:
        agent_version = "unknown"
    runtime = None
    try:
        from models.runtime import backend

        rt = backend()
        runtime = Runtime(rt.name, rt.version)
    except Exception:  # no runtime is a fact too: birth simply omits it
        pass
    return BirthParts(
        agent_version=agent_version,
        sensors=tuple(s.name for s in cfg.sensors),
        capabilities=tuple(capabilities),
        runtime=runtime,
    )
