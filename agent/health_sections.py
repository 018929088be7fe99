"""What the agent's parts tell the health reporter: the ``health`` and ``birth`` sections.

Names, counts and figures only; never a sensor reading (docs/architecture.md, MQTT health).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from agent.sensors.status import SensorState

if TYPE_CHECKING:
    from agent.config import AgentSettings
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
) -> dict[str, Any]:
    status = sampler.status()
    out: dict[str, Any] = {
        "model": slots.info().get("model"),
        "inference": metrics.inference_stats(),
        "sensors": {
            "rate_hz": round(sum(s.rate_hz for s in status.values()), 3),
            "rejected": sum(s.rejected_total for s in status.values()),
            "failed": sorted(n for n, s in status.items() if s.state == SensorState.DISABLED),
        },
    }
    if trainer is not None:
        t = trainer.current_status()
        out["training"] = {
            "state": _TRAINER_STATE.get(t.state, t.state),
            "round": t.round,
            "last_duration_s": t.last_duration_s,
            "peak_rss_mb": t.peak_rss_mb,
            "last_outcome": t.last_outcome,
            "failures_in_row": t.failures_in_row,
        }
    if supernode is not None:
        info = supernode.info()
        out["federation"] = {
            "supernode": info.supernode,
            "node_id": info.node_id,
            "restarts": info.restarts,
        }
    return out


def birth_facts(cfg: AgentSettings, capabilities: list[str]) -> dict[str, Any]:
    try:
        agent_version = version("orchard-fl")
    except PackageNotFoundError:
        agent_version = "unknown"
    facts: dict[str, Any] = {
        "agent_version": agent_version,
        "sensors": [s.name for s in cfg.sensors],
        "capabilities": capabilities,
    }
    try:
        from models.runtime import backend

        rt = backend()
        facts["runtime"] = {"name": rt.name, "version": rt.version}
    except Exception:  # no runtime is a fact too: birth simply omits it
        pass
    return facts
