"""The rollout controller: starts canaries and deliveries, judges, promotes, rolls back.

The running coordinator owns one and calls :meth:`RolloutController.resume` once at start,
then :meth:`RolloutController.tick` every ``[rollout] tick_s``::

    controller = RolloutController(store, registry, artifacts, publisher, settings.rollout)
    controller.resume()                 # re-publish every desired state, same seq
    while running:
        controller.tick()               # operator requests, newcomers, the policy, publishing
    controller.after_run(run_id, last_round)   # [rollout] after_run: deliver, canary or none

Every change is stored first (one transaction), then published; a desired state whose
publication failed is retried on the next tick, and ``resume`` re-publishes all of them, so a
coordinator killed at any point continues where it was (docs/rollout.md, "Restart safety").

Stages: ``canary`` -> ``promoted`` (every device gets the new version), or -> ``rolling_back``
(every canary device gets the previous version back) -> ``rolled_back`` once each canary
device serves the previous version again or is offline (recorded; it gets the retained
desired state when it returns). An operator abort takes the same way to ``aborted``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.delivery.desired import Artifact
from coordinator.errors import CoordinatorError
from coordinator.health.records import DeviceRecord
from coordinator.health.registry import Registry
from coordinator.rollout.errors import NoPreviousModel, RolloutRefused
from coordinator.rollout.policy import choose_canary, duration, evaluate
from coordinator.rollout.ports import ArtifactSource, Publisher
from coordinator.rollout.settings import RolloutSettings
from coordinator.rollout.store import (
    By,
    Decision,
    DesiredState,
    Request,
    Rollout,
    RolloutStore,
    StoreTx,
)
from coordinator.rollout.view import RolloutStatus, build_status, online, samples

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class RolloutController:
    """Drives rollouts for one coordinator; call it from one thread (the coordinator's loop).

    Public: :meth:`start`, :meth:`deliver`, :meth:`promote`, :meth:`abort`,
    :meth:`after_run`, :meth:`tick`, :meth:`resume`, :meth:`status`. Refusals raise
    :class:`RolloutRefused`; a store failure raises :class:`RolloutError`.
    """

    def __init__(
        self,
        store: RolloutStore,
        registry: Registry,
        artifacts: ArtifactSource,
        publisher: Publisher,
        settings: RolloutSettings,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.publisher = publisher
        self.settings = settings
        self.clock = clock
        self._created = clock()
        # After a restart the registry shows every device silent since the coordinator
        # stopped: give them this long to report before calling their data missing.
        self.grace_s = registry.stale_after_intervals * registry.default_interval_s
        self._said: tuple[str, ...] = ()

    # -- commands -----------------------------------------------------------------------------

    def start(
        self,
        run_id: str,
        round_: int,
        *,
        canary_pct: float | None = None,
        devices: Sequence[str] | None = None,
        soak_s: float | None = None,
        min_labels: int | None = None,
    ) -> str:
        """Start a canary of run ``run_id``'s round ``round_``; returns the rollout id.

        ``canary_pct`` % (default ``[rollout] canary_pct``) of the online devices serving the
        previous version, chosen deterministically, or exactly ``devices``. Refused
        (:class:`RolloutRefused`) when a rollout is active, the artifact is missing, no device
        serves a previous model (:class:`NoPreviousModel`: deliver instead) or a device is
        unknown.
        """
        return self._start(run_id, round_, canary_pct, devices, soak_s, min_labels, None).id

    def deliver(self, run_id: str, round_: int, *, by: By = "operator") -> str:
        """Ask every known device to serve this round's model, no canary; returns its id."""
        return self._deliver(run_id, round_, by, None).id

    def promote(self, *, by: By = "operator", reason: str | None = None) -> Rollout:
        """Promote the active canary now (the operator overriding the policy)."""
        return self._operator_promote(None, by, reason, None)

    def abort(self, *, by: By = "operator", reason: str | None = None) -> Rollout:
        """Abort the active rollout: its canary devices go back to the previous version."""
        return self._operator_abort(None, by, reason, None)

    def after_run(self, run_id: str, last_round: int) -> str | None:
        """What ``[rollout] after_run`` says to do with a finished run's last round.

        ``deliver``: every device; ``canary``: start a canary (the first model, with no
        previous one to compare with, is delivered instead); ``none``: nothing. A refusal (a
        rollout is still active, no artifact) is logged and returns None: the run stays done.
        """
        mode = self.settings.after_run
        if mode == "none":
            return None
        try:
            if mode == "canary":
                try:
                    return self.start(run_id, last_round)
                except NoPreviousModel as exc:
                    logger.info("after run %s: %s; delivering to every device", run_id, exc)
            return self.deliver(run_id, last_round, by="auto")
        except RolloutRefused as exc:
            logger.warning("after run %s round %d: no %s: %s", run_id, last_round, mode, exc)
            return None

    def status(self) -> RolloutStatus:
        return build_status(self.store, self.registry)

    # -- the loop -----------------------------------------------------------------------------

    def resume(self) -> int:
        """After a restart: re-publish every device's desired state with its stored ``seq``.

        The active rollout needs nothing else: its stage, members and criteria are stored, and
        the next :meth:`tick` continues judging it. Returns how many states were published.
        """
        states = self.store.desired_states()
        sent = sum(self._publish_one(s) for s in states)
        active = self.store.active()
        if active is not None:
            logger.info(
                "resuming rollout %s of %s (%s, started %s ago); re-published %d of %d desired "
                "states",
                active.id,
                active.version,
                active.stage,
                duration(self.clock() - active.started),
                sent,
                len(states),
            )
        return sent

    def tick(self) -> Rollout | None:
        """Consume operator requests, place newcomers, judge or settle the active rollout and
        publish what changed. Returns the rollout acted on, in its new state, or None."""
        acted: Rollout | None = None
        for request in self.store.pending():
            acted = self._consume(request) or acted
        records = {rec.device_id: rec for rec in self.registry.devices()}
        self._place_newcomers(records)
        active = self.store.active()
        if active is not None and active.stage == "canary":
            acted = self._judge(active, records)
        elif active is not None:
            acted = self._settle(active, records)
        self._publish()
        return acted

    # -- start and deliver --------------------------------------------------------------------

    def _start(
        self,
        run_id: str,
        round_: int,
        canary_pct: float | None,
        devices: Sequence[str] | None,
        soak_s: float | None,
        min_labels: int | None,
        request_id: int | None,
    ) -> Rollout:
        s = self.settings
        if canary_pct is not None and devices is not None:
            raise RolloutRefused("give a canary percentage or a list of devices, not both")
        pct = s.canary_pct if canary_pct is None else canary_pct
        soak = s.soak_s if soak_s is None else soak_s
        labels = s.min_labels if min_labels is None else min_labels
        if not 0 < pct <= 100:
            raise RolloutRefused(f"expected a percentage in (0, 100]. Received: canary={pct!r}")
        if soak < 0:
            raise RolloutRefused(f"expected a duration >= 0. Received: soak_s={soak!r}")
        if labels < 0:
            raise RolloutRefused(f"expected an integer >= 0. Received: min_labels={labels!r}")
        self._refuse_if_active()
        artifact = self._artifact(run_id, round_)
        records = {rec.device_id: rec for rec in self.registry.devices()}
        current = self.store.current()
        previous = current.artifact if current else self._baseline(records, artifact.version)
        deliver = f"`orchard-coordinator rollout deliver --run {run_id} --round {round_}`"
        if previous is None:
            raise NoPreviousModel(
                f"no device serves a previous model to compare with or roll back to: use "
                f"{deliver} to send a first model to every device"
            )
        if previous.version == artifact.version:
            raise RolloutRefused(f"{artifact.version} already is the fleet's model")
        serving_previous = sorted(
            d for d, rec in records.items() if rec.model_version == previous.version
        )
        if devices is not None:
            canary = self._explicit(devices, records)
        else:
            eligible = [d for d in serving_previous if online(records[d])]
            if not eligible:
                raise RolloutRefused(
                    f"no online device serves the previous version {previous.version}: "
                    f"name the canary with --devices, or use {deliver}"
                )
            canary = choose_canary(eligible, pct, artifact.version)
        control = tuple(d for d in serving_previous if d not in canary)
        with self.store.transaction() as tx:
            rollout = tx.add_rollout(
                kind="canary",
                run_id=run_id,
                round_=round_,
                artifact=artifact,
                previous_artifact=previous,
                stage="canary",
                canary=canary,
                control=control,
                soak_s=soak,
                deadline_s=soak * s.deadline_factor,
                min_labels=labels,
                thresholds=s.thresholds,
            )
            for device_id in canary:
                tx.set_desired(device_id, self._fleet(device_id, records, tx), artifact, rollout.id)
            for device_id, rec in records.items():
                want = tx.desired(device_id)
                if device_id not in canary and (want is None or want.version != previous.version):
                    tx.set_desired(device_id, rec.fleet, previous, rollout.id)
            if current is None:
                tx.set_current(previous, None)
            self._finish(tx, request_id, f"started {rollout.id}: canary {', '.join(canary)}")
        logger.info(
            "rollout %s: %s on canary %s (control: %d devices on %s), soak %s, min labels %d",
            rollout.id,
            artifact.version,
            ", ".join(canary),
            len(control),
            previous.version,
            duration(soak),
            labels,
        )
        self._publish()
        return rollout

    def _deliver(self, run_id: str, round_: int, by: By, request_id: int | None) -> Rollout:
        self._refuse_if_active()
        artifact = self._artifact(run_id, round_)
        records = {rec.device_id: rec for rec in self.registry.devices()}
        current = self.store.current()
        known = self._known(records)
        with self.store.transaction() as tx:
            reason = f"delivered {artifact.version} to every device ({len(known)}), no canary"
            rollout = tx.add_rollout(
                kind="deliver",
                run_id=run_id,
                round_=round_,
                artifact=artifact,
                previous_artifact=current.artifact if current else None,
                stage="promoted",
                canary=(),
                control=(),
                soak_s=0.0,
                deadline_s=0.0,
                min_labels=0,
                thresholds=self.settings.thresholds,
                decision=Decision("promote", reason, by, tx.now),
                finished=tx.now,
            )
            for device_id, fleet in known.items():
                tx.set_desired(device_id, fleet, artifact, rollout.id)
            tx.set_current(artifact, rollout.id)
            self._finish(tx, request_id, f"{rollout.id}: {reason}")
        logger.info("rollout %s: %s", rollout.id, reason)
        self._publish()
        return rollout

    def _artifact(self, run_id: str, round_: int) -> Artifact:
        try:
            return self.artifacts.artifact(run_id, round_)
        except CoordinatorError as exc:
            raise RolloutRefused(
                f"no model to deliver for run {run_id} round {round_}: {exc}"
            ) from exc

    def _baseline(self, records: Mapping[str, DeviceRecord], new: str) -> Artifact | None:
        """With no delivery yet: the version most online devices serve, if it is served."""
        counts: dict[str, int] = {}
        for rec in records.values():
            version = rec.model_version
            if online(rec) and version is not None and version != new:
                counts[version] = counts.get(version, 0) + 1
        if not counts:
            return None
        version = max(sorted(counts), key=lambda v: counts[v])
        artifact = self.artifacts.find(version)
        if artifact is None:
            raise NoPreviousModel(
                f"the fleet serves {version}, which the coordinator cannot serve, so a canary "
                f"could not be rolled back to it: deliver a model to every device first"
            )
        return artifact

    def _explicit(
        self, devices: Sequence[str], records: Mapping[str, DeviceRecord]
    ) -> tuple[str, ...]:
        chosen = tuple(sorted(set(devices)))
        unknown = [d for d in chosen if d not in records]
        if not chosen or unknown:
            raise RolloutRefused(
                f"expected devices the registry knows. Received: devices={list(devices)!r} "
                f"(unknown: {', '.join(unknown) or 'none given'})"
            )
        return chosen

    def _refuse_if_active(self) -> None:
        active = self.store.active()
        if active is not None:
            raise RolloutRefused(
                f"rollout {active.id} of {active.version} is active ({active.stage}): "
                "promote or abort it first"
            )

    # -- decisions ----------------------------------------------------------------------------

    def _judge(self, rollout: Rollout, records: Mapping[str, DeviceRecord]) -> Rollout:
        now = self.clock()
        canary, control = samples(rollout, records)
        verdict = evaluate(canary, control, rollout.criteria, now - rollout.started)
        starved = verdict.action == "rollback" and bool(verdict.missing)
        if starved and now - self._created < self.grace_s:
            verdict_reason = f"(after a restart, waiting {duration(self.grace_s)} for reports)"
            key = ("grace", rollout.id)
            self._say(key, "rollout %s: %s %s", rollout.id, verdict.reason, verdict_reason)
            return rollout
        if verdict.action == "promote":
            return self._promote(rollout, Decision("promote", verdict.reason, "auto", now), None)
        if verdict.action == "rollback":
            return self._roll_back(rollout, Decision("rollback", verdict.reason, "auto", now), None)
        self._say((rollout.id, *verdict.missing), "rollout %s: %s", rollout.id, verdict.reason)
        return rollout

    def _promote(self, rollout: Rollout, decision: Decision, request_id: int | None) -> Rollout:
        records = {rec.device_id: rec for rec in self.registry.devices()}
        known = self._known(records)
        with self.store.transaction() as tx:
            done = tx.update_rollout(rollout, stage="promoted", decision=decision, finished=tx.now)
            for device_id, fleet in known.items():
                tx.set_desired(device_id, fleet, rollout.artifact, rollout.id)
            tx.set_current(rollout.artifact, rollout.id)
            self._finish(tx, request_id, f"promoted {rollout.id}")
        logger.info("rollout %s promoted (%s): %s", rollout.id, decision.by, decision.reason)
        self._publish()
        return done

    def _roll_back(self, rollout: Rollout, decision: Decision, request_id: int | None) -> Rollout:
        previous = rollout.previous_artifact
        assert previous is not None  # a canary always has one (checked at start)
        records = {rec.device_id: rec for rec in self.registry.devices()}
        with self.store.transaction() as tx:
            back = tx.update_rollout(rollout, stage="rolling_back", decision=decision)
            for device_id in rollout.canary:
                tx.set_desired(device_id, self._fleet(device_id, records, tx), previous, rollout.id)
            self._finish(tx, request_id, f"rolling {rollout.id} back")
        logger.warning(
            "rollout %s: %s back to %s on %s (%s): %s",
            rollout.id,
            "aborted, going" if decision.outcome == "abort" else "rolling",
            previous.version,
            ", ".join(rollout.canary),
            decision.by,
            decision.reason,
        )
        self._publish()
        return self._settle(back, records)

    def _settle(self, rollout: Rollout, records: Mapping[str, DeviceRecord]) -> Rollout:
        """Finish a rollback once no online canary device still serves another version."""
        waiting, offline = self._rollback_progress(rollout, records)
        if waiting:
            said = ", ".join(waiting)
            self._say(
                (rollout.id, said), "rollout %s: rolling back, waiting for %s", rollout.id, said
            )
            return rollout
        stage = "aborted" if rollout.decision and rollout.decision.outcome == "abort" else None
        with self.store.transaction() as tx:
            done = tx.update_rollout(
                rollout,
                stage=stage or "rolled_back",
                finished=tx.now,
                offline=tuple(offline),
            )
        if offline:
            logger.warning(
                "rollout %s %s; offline, will get %s when they return: %s",
                rollout.id,
                done.stage,
                rollout.previous,
                ", ".join(offline),
            )
        else:
            logger.info(
                "rollout %s %s: every canary device serves %s",
                rollout.id,
                done.stage,
                rollout.previous,
            )
        return done

    def _rollback_progress(
        self, rollout: Rollout, records: Mapping[str, DeviceRecord]
    ) -> tuple[list[str], list[str]]:
        """(online canary devices not serving the previous version yet, offline ones)."""
        waiting, offline = [], []
        for device_id in rollout.canary:
            rec = records.get(device_id)
            if not online(rec):
                offline.append(device_id)
            elif rec is not None and rec.model_version != rollout.previous:
                waiting.append(device_id)
        return waiting, offline

    # -- operator requests --------------------------------------------------------------------

    def _consume(self, request: Request) -> Rollout | None:
        p = request.params
        try:
            if request.action == "start":
                return self._start(
                    str(p["run_id"]),
                    int(p["round"]),
                    _opt(p.get("canary_pct"), float),
                    _devices(p.get("devices")),
                    _opt(p.get("soak_s"), float),
                    _opt(p.get("min_labels"), int),
                    request.id,
                )
            if request.action == "deliver":
                return self._deliver(str(p["run_id"]), int(p["round"]), "operator", request.id)
            if request.action == "promote":
                return self._operator_promote(request.rollout, "operator", None, request.id)
            if request.action == "abort":
                return self._operator_abort(request.rollout, "operator", None, request.id)
            raise RolloutRefused(f"unknown request {request.action!r}")
        except RolloutRefused as exc:
            result = f"refused: {exc}"
        except (KeyError, TypeError, ValueError) as exc:
            result = f"refused: a malformed {request.action} request ({exc!r})"
        with self.store.transaction() as tx:
            tx.finish_request(request.id, result)
        logger.warning("request #%d (%s): %s", request.id, request.action, result)
        return None

    def _target(self, expected: str | None, action: str) -> Rollout:
        active = self.store.active()
        if active is None or (expected is not None and active.id != expected):
            was = self.store.rollout(expected) if expected else None
            detail = f"rollout {was.id} is {was.stage} now" if was else "no rollout is active"
            raise RolloutRefused(f"nothing to {action}: {detail}")
        return active

    def _operator_promote(
        self, expected: str | None, by: By, reason: str | None, request_id: int | None
    ) -> Rollout:
        rollout = self._target(expected, "promote")
        if rollout.stage != "canary":
            raise RolloutRefused(
                f"rollout {rollout.id} is rolling back to {rollout.previous}: it cannot be "
                "promoted; start a new rollout once it is done"
            )
        if reason is None:
            records = {rec.device_id: rec for rec in self.registry.devices()}
            canary, control = samples(rollout, records)
            now = self.clock()
            said = evaluate(canary, control, rollout.criteria, now - rollout.started)
            reason = f"promoted by the operator; the policy said {said.action}: {said.reason}"
        return self._promote(rollout, Decision("promote", reason, by, self.clock()), request_id)

    def _operator_abort(
        self, expected: str | None, by: By, reason: str | None, request_id: int | None
    ) -> Rollout:
        rollout = self._target(expected, "abort")
        if rollout.stage == "canary":
            why = reason or f"aborted by the operator {duration(self.clock() - rollout.started)} in"
            return self._roll_back(rollout, Decision("abort", why, by, self.clock()), request_id)
        # Already rolling back: stop waiting for the canary devices that have not confirmed.
        records = {rec.device_id: rec for rec in self.registry.devices()}
        waiting, offline = self._rollback_progress(rollout, records)
        assert rollout.decision is not None
        note = f"; the operator stopped waiting for {', '.join(waiting) or 'nobody'}"
        decision = Decision(
            rollout.decision.outcome,
            rollout.decision.reason + note,
            rollout.decision.by,
            rollout.decision.at,
        )
        with self.store.transaction() as tx:
            done = tx.update_rollout(
                rollout,
                stage="aborted",
                decision=decision,
                finished=tx.now,
                offline=tuple(sorted([*waiting, *offline])),
            )
            self._finish(tx, request_id, f"aborted {rollout.id}{note}")
        logger.warning("rollout %s aborted while rolling back%s", rollout.id, note)
        return done

    # -- desired states -----------------------------------------------------------------------

    def _place_newcomers(self, records: Mapping[str, DeviceRecord]) -> None:
        """Devices first heard of since the last change get the fleet's current version (the
        previous one during a canary, where they join the control group)."""
        current = self.store.current()
        if current is None:
            return
        known = {s.device_id for s in self.store.desired_states()}
        new = sorted(d for d in records if d not in known)
        if not new:
            return
        active = self.store.active()
        with self.store.transaction() as tx:
            for device_id in new:
                rollout_id = active.id if active else current.rollout
                tx.set_desired(device_id, records[device_id].fleet, current.artifact, rollout_id)
            if active is not None and active.stage == "canary":
                tx.update_rollout(active, control=(*active.control, *new))
        logger.info("new device(s) %s: desired %s", ", ".join(new), current.version)

    def _known(self, records: Mapping[str, DeviceRecord]) -> dict[str, str | None]:
        """Every device the registry or the store knows, with its fleet."""
        known = {s.device_id: s.fleet for s in self.store.desired_states()}
        known.update({d: rec.fleet for d, rec in records.items()})
        return dict(sorted(known.items()))

    def _fleet(
        self, device_id: str, records: Mapping[str, DeviceRecord], tx: StoreTx
    ) -> str | None:
        rec = records.get(device_id)
        if rec is not None:
            return rec.fleet
        want = tx.desired(device_id)
        return want.fleet if want else None

    def _publish(self) -> int:
        """Publish every desired state changed since it was last published."""
        return sum(self._publish_one(s) for s in self.store.unpublished())

    def _publish_one(self, state: DesiredState) -> bool:
        try:
            self.publisher.publish(state.device_id, state.fleet, state.message())
        except CoordinatorError as exc:
            logger.warning(
                "could not publish %s's desired %s (seq %d), retrying next tick: %s",
                state.device_id,
                state.version,
                state.seq,
                exc,
            )
            return False
        self.store.mark_published(state.device_id, state.seq)
        return True

    @staticmethod
    def _finish(tx: StoreTx, request_id: int | None, result: str) -> None:
        """Mark the request done in the same transaction as what it did; a request cancelled
        meanwhile (``rollout abort`` before it was acted on) undoes it."""
        if request_id is not None and not tx.finish_request(request_id, result):
            raise RolloutRefused(f"request #{request_id} was cancelled before it was acted on")

    def _say(self, key: tuple[str, ...], fmt: str, *args: Any) -> None:
        """Log a waiting message when what is awaited changes, not on every tick."""
        if key != self._said:
            self._said = key
            logger.info(fmt, *args)


def _opt(value: Any, kind: Callable[[Any], Any]) -> Any:
    return None if value is None else kind(value)


def _devices(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise TypeError(f"devices: expected a list of device ids. Received: {value!r}")
    return value
