"""What the agent's parts tell the health reporter: the ``health`` and ``birth`` sections.

Names, counts and figures only; never a sensor reading (docs/architecture.md, MQTT health).
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, cast

from agent.errors import AgentError
from agent.health.schema import (
    BirthParts,
    Federation,
    HealthParts,
    LiveModel,
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
    from agent.labels import LabelService
    from agent.metrics import AgentMetrics
    from agent.sensors import Sampler
    from agent.slots import ModelSlots
    from models.manifest import Manifest

logger = logging.getLogger(__name__)

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
    labels: LabelService | None = None,
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
        models=None if labels is None else _models(labels, m),
    )


def _models(labels: LabelService, manifest: Manifest | None) -> tuple[LiveModel, ...] | None:
    """Live metrics per version from the prediction log; ``None`` (section left out) when the
    log cannot be read, so a disk problem costs this section only."""
    try:
        return labels.live_models(manifest)
    except AgentError as exc:
        logger.warning("health: live model metrics unavailable: %s", exc)
        return None


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
