"""One federated round as named phases: select, configure, train, aggregate, evaluate,
checkpoint, publish.

This is Flower's ``Strategy.start`` unrolled (configure -> send_and_receive -> aggregate, for
train then evaluate) so that a round can (1) offer itself only to devices the health policy
allows, (2) bound every wait, including "not enough devices", which Flower's sampler would wait
on forever, (3) pool normalisation statistics exactly, and (4) write its checkpoint and
history entry as soon as it ends. A privacy option changes a round only through its
:class:`~coordinator.federation.privacy_modes.PrivacyMode` hooks.

:class:`RunState` is what the rounds of one run share; :class:`Round` is one round, whose
``record`` becomes its entry in ``history.json`` (format: :mod:`coordinator.federation.history`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from coordinator.federation import privacy
from coordinator.federation.checkpoint import GlobalModel, Holdout
from coordinator.federation.errors import RunFailed
from coordinator.federation.grid import RoundGrid
from coordinator.federation.privacy_modes import Privacy
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.selection import Fleet
from models.spec import ModelSpec

logger = logging.getLogger(__name__)

PHASES = ("select", "configure", "train", "aggregate", "evaluate", "checkpoint", "publish")


@dataclass
class RunState:
    """What the rounds of one run share; ``arrays`` is the current global model."""

    run_id: str
    settings: RunSettings
    spec: ModelSpec
    model: GlobalModel
    holdout: Holdout
    out: Path
    pairs: list[tuple[int, int]]  # (mean, variance) indices of each normalisation layer
    statistics: list[int]  # the indices in ``pairs``
    strategy: Any = None
    arrays: list[np.ndarray] = field(default_factory=list)
    fixed: list[np.ndarray] = field(default_factory=list)  # the initial arrays
    frozen: list[int] = field(default_factory=list)  # arrays devices must not change


class Round:
    """Round ``number`` of ``run``; :meth:`execute` runs the :data:`PHASES` in order."""

    def __init__(
        self,
        number: int,
        run: RunState,
        grid: Grid,
        fleet: Fleet,
        privacy_: Privacy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 1.0,
    ) -> None:
        self.number = number
        self.run = run
        self.grid = grid
        self.fleet = fleet
        self.privacy = privacy_
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.start = run.arrays  # the global arrays this round starts from
        self.arrays = run.arrays  # ... and ends with
        self.record: dict[str, Any] = {"round": number}
        self.phases: dict[str, dict[str, Any]] = {}
        self.selected: list[int] = []
        self.view = RoundGrid(grid, [])
        self.config: dict[str, Any] = {}
        self.messages: list[Message] = []
        self.replies: list[Message] = []
        self.started = 0.0

    def execute(self) -> dict[str, Any]:
        self.started = self.clock()
        for phase in PHASES:
            getattr(self, phase)()
        return self.record

    # -- phases ---------------------------------------------------------------------------
    def select(self) -> None:
        """Connected nodes the policy allows; wait (bounded) until there are ``min-devices``."""
        s = self.run.settings
        deadline = self.clock() + s.wait_for_devices
        while True:
            nodes = sorted(self.grid.get_node_ids())
            eligible, skipped = self.fleet.select(nodes)
            if len(eligible) >= s.min_devices:
                break
            if self.clock() >= deadline:
                reasons = "; ".join(f"node {k}: {v}" for k, v in skipped.items()) or "none skipped"
                raise RunFailed(
                    f"round {self.number}: only {len(eligible)} of {s.min_devices} required "
                    f"devices available after {s.wait_for_devices:g} s ({len(nodes)} connected; "
                    f"{reasons})"
                )
            self.sleep(self.poll_s)
        self.selected = eligible
        self.view = RoundGrid(self.grid, eligible)
        self.record["selected"] = eligible
        self.record["skipped"] = {str(node): why for node, why in sorted(skipped.items())}

    def configure(self) -> None:
        """The train messages (their config from the privacy options)."""
        self.config = self.privacy.configure(self)
        if self.privacy.replaces_train:
            return
        strategy, nodes = self.run.strategy, len(list(self.view.get_node_ids()))
        privacy.expect(strategy, nodes, self.run.settings.fraction_train)
        config, start = ConfigRecord(dict(self.config)), ArrayRecord(self.start)
        self.messages = list(strategy.configure_train(self.number, start, config, self.view))

    def train(self) -> None:
        """Send the train messages; wait for the replies until the round timeout."""
        if self.privacy.replaces_train:
            self.privacy.train(self)
            return
        timeout = self.run.settings.round_timeout
        self.replies = list(self.view.send_and_receive(self.messages, timeout=timeout))
        self.phases["train"] = self.view.phases[0].to_dict()

    def aggregate(self) -> None:
        """The strategy's aggregate (after the privacy options saw the replies)."""
        if not self.privacy.replaces_train:
            replies = self.privacy.received(self, self.replies)
            aggregated, metrics = self.run.strategy.aggregate_train(self.number, replies)
            new = None
            if aggregated is not None:
                new = [np.asarray(a, np.float32) for a in aggregated.to_numpy_ndarrays()]
            result = self.privacy.aggregated(self, new, replies)
            if result is not None:
                self.arrays = result
            self.record["train"] = _plain(metrics)
        statistics = set(self.run.statistics)
        self.record["update_norm"] = privacy.norm(  # of the trained arrays
            a - b
            for i, (a, b) in enumerate(zip(self.arrays, self.start, strict=True))
            if i not in statistics
        )

    def evaluate(self) -> None:
        """Federated evaluation of the new global model, then the coordinator's own."""
        strategy, view = self.run.strategy, self.view
        done = len(view.phases)
        messages = strategy.configure_evaluate(
            self.number, ArrayRecord(self.arrays), ConfigRecord(), view
        )
        replies = list(view.send_and_receive(messages, timeout=self.run.settings.round_timeout))
        self.record["evaluate"] = _plain(strategy.aggregate_evaluate(self.number, replies))
        if len(view.phases) > done:
            self.phases["evaluate"] = view.phases[done].to_dict()
        self.run.model.load(self.arrays)
        self.record["central"] = self.run.model.central(self.run.holdout)

    def checkpoint(self) -> None:
        """``round-<n>/``: the global model as ``.keras``, ``.tflite`` and its manifest."""
        run, s = self.run, self.run.settings
        self.record["model"] = run.model.checkpoint(
            run.out / f"round-{self.number}",
            name=s.model_name or f"{run.spec.family}-{run.spec.task.value}",
            version=f"{run.run_id}.{self.number}",
            quantization=s.quantization,
            holdout=run.holdout,
            metrics={
                "round": self.number,
                **(self.record["central"] or self.record["evaluate"] or {}),
            },
        )

    def publish(self) -> None:
        """Totals and the privacy entries into the record; each node's outcome to the fleet."""
        record = self.record
        record["phases"] = self.phases
        record["failures"] = sum(
            len(p["replies"]) - sum("error" not in r for r in p["replies"]) + len(p["no_reply"])
            for p in self.phases.values()
        )
        record["bytes_sent"] = sum(p["bytes_sent"] for p in self.phases.values())
        record["bytes_received"] = sum(p["bytes_received"] for p in self.phases.values())
        self.privacy.publish(self)
        record["duration_s"] = round(self.clock() - self.started, 3)
        self.run.arrays = self.arrays
        self.fleet.record(self.number, outcomes(self.phases.get("train")))


def outcomes(phase: dict[str, Any] | None) -> dict[int, tuple[bool, str]]:
    """Per node: trained or not, and why not (error reason, or no reply in time)."""
    if not phase:
        return {}
    out = {int(n): (False, "no reply before the round timeout") for n in phase["no_reply"]}
    for reply in phase["replies"]:
        error = reply.get("error")
        out[int(reply["node_id"])] = (False, str(error["reason"])) if error else (True, "ok")
    return out


def _plain(record: Any) -> dict[str, float] | None:
    return None if record is None else {k: float(v) for k, v in record.items()}
