"""How a privacy option plugs into a round: one hook class, one subclass per option.

A :class:`PrivacyMode` sees the round at fixed points (see :class:`Round`'s phases):

    prepare    once, before round 1 (e.g. fail early when the accountant is missing)
    configure  add keys to the train messages' config
    train      run the whole train exchange itself (SecAgg+, ``replaces_train``)
    received   look at (or reweight) the train replies before the strategy aggregates them
    aggregated look at the replies after aggregation (central DP clipped them in place)
    publish    add the option's entry to the round's history record

Every hook of the base class does nothing. :class:`Privacy` holds the options a run enables
and the part they share: with any option on, the normalisation statistics come from the
coordinator's validation set and stay fixed (:mod:`coordinator.federation.privacy`). Adding an
option is one subclass and one line in :func:`modes_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Message

from coordinator.federation import privacy, stats
from coordinator.federation.errors import RunFailed
from coordinator.federation.runconfig import RunSettings
from models.normalization import adapt

if TYPE_CHECKING:
    from coordinator.federation.round import Round, RunState


class PrivacyMode:
    """One privacy option's part in each round; the defaults change nothing."""

    name = "none"
    replaces_train = False  # True: :meth:`train` runs the whole train exchange

    def prepare(self, run: RunState) -> None:
        return None

    def configure(self, rnd: Round, config: dict[str, Any]) -> None:
        return None

    def train(self, rnd: Round) -> None:
        return None

    def received(self, rnd: Round, replies: list[Message]) -> list[Message]:
        return replies

    def aggregated(self, rnd: Round, replies: list[Message]) -> None:
        return None

    def publish(self, rnd: Round) -> None:
        return None


class CentralDp(PrivacyMode):
    """Flower's server-side fixed clipping (the strategy comes wrapped: ``strategies.build``)."""

    name = "central_dp"

    def received(self, rnd: Round, replies: list[Message]) -> list[Message]:
        return privacy.uniform(replies)  # the accountant averages devices uniformly

    def aggregated(self, rnd: Round, replies: list[Message]) -> None:
        updates = rnd.record["updates"]
        updates["clipped"] = privacy.update_norms(replies, rnd.start, rnd.run.frozen)

    def publish(self, rnd: Round) -> None:
        entry = privacy.central_dp_record(rnd.run.strategy)
        rnd.record.setdefault("privacy", {})[self.name] = entry


class LocalDp(PrivacyMode):
    """``LocalDpMod`` on the devices; the coordinator only accounts for it."""

    name = "local_dp"

    def prepare(self, run: RunState) -> None:
        privacy.require_accounting()

    def publish(self, rnd: Round) -> None:
        entry = privacy.local_dp_record(rnd.run.settings, rnd.number)
        rnd.record.setdefault("privacy", {})[self.name] = entry


class SecAggPlus(PrivacyMode):
    """The train exchange through Flower's ``SecAggPlusWorkflow``: only the masked sum."""

    name = "secure_aggregation"
    replaces_train = True

    def configure(self, rnd: Round, config: dict[str, Any]) -> None:
        if rnd.run.settings.strategy == "fedprox":
            config[privacy.PROXIMAL_MU] = rnd.run.settings.strategy_options.proximal_mu

    def train(self, rnd: Round) -> None:
        s = rnd.run.settings
        new, metrics, stages = privacy.secure_train(
            rnd.view.inner, s, rnd.number, rnd.start, rnd.selected, rnd.config
        )
        if new is not None:
            rnd.arrays = privacy.fix_statistics(new, rnd.run.fixed, rnd.run.frozen)
        rnd.record["train"] = metrics
        rnd.record["secure_aggregation"] = privacy.secagg_record(s, stages)
        rnd.phases["train"] = privacy.merge_stages(stages)


def modes_for(settings: RunSettings) -> list[PrivacyMode]:
    """The options ``settings`` enables, in the order their hooks run."""
    enabled: list[tuple[bool, type[PrivacyMode]]] = [
        (settings.central_dp.enabled, CentralDp),
        (settings.local_dp.enabled, LocalDp),
        (settings.secure_aggregation.enabled, SecAggPlus),
    ]
    return [mode() for on, mode in enabled if on]


class Privacy:
    """The enabled options, called in order, plus what they share: fixed statistics."""

    def __init__(self, modes: Sequence[PrivacyMode]) -> None:
        self.modes = list(modes)

    @property
    def private(self) -> bool:
        return bool(self.modes)

    def fix_statistics(self, run: RunState) -> None:
        """Before the initial arrays: a private run's statistics from the coordinator's data."""
        if not self.private:
            return
        if not run.holdout.real:
            raise RunFailed(
                f"run.validation {run.settings.validation!r} has no usable rows: a private "
                "run takes its normalisation statistics from the coordinator's validation set"
            )
        adapt(run.model.model, run.spec, run.holdout.x, run.holdout.y)
        run.frozen = list(run.statistics)

    def prepare(self, run: RunState) -> None:
        for mode in self.modes:
            mode.prepare(run)

    def configure(self, rnd: Round) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.private:
            config.update(privacy.round_config(rnd.number, rnd.run.frozen))
        for mode in self.modes:
            mode.configure(rnd, config)
        return config

    @property
    def replaces_train(self) -> bool:
        return any(mode.replaces_train for mode in self.modes)

    def train(self, rnd: Round) -> None:
        for mode in self.modes:
            if mode.replaces_train:
                mode.train(rnd)

    def received(self, rnd: Round, replies: list[Message]) -> list[Message]:
        if self.private:
            frozen = rnd.run.frozen
            rnd.record["updates"] = {
                "received": privacy.update_norms(replies, rnd.start, frozen),
                "frozen_max_change": privacy.frozen_change(replies, rnd.start, frozen),
            }
        for mode in self.modes:
            replies = mode.received(rnd, replies)
        return replies

    def aggregated(
        self, rnd: Round, new: list[np.ndarray] | None, replies: list[Message]
    ) -> list[np.ndarray] | None:
        """The new global arrays (None: nothing aggregated): statistics fixed (private) or
        pooled exactly (otherwise)."""
        for mode in self.modes:
            mode.aggregated(rnd, replies)
        if new is None:
            return None
        if self.private:
            return privacy.fix_statistics(new, rnd.run.fixed, rnd.run.frozen)
        return stats.pool(new, rnd.run.pairs, ok_arrays(replies))

    def publish(self, rnd: Round) -> None:
        for mode in self.modes:
            mode.publish(rnd)


def ok_arrays(replies: list[Message]) -> list[tuple[float, list[np.ndarray]]]:
    """``(num-examples, arrays)`` of each successful train reply (for pooled statistics)."""
    out = []
    for msg in replies:
        if msg.has_error():
            continue
        metrics = next(iter(msg.content.metric_records.values()), None)
        arrays = next(iter(msg.content.array_records.values()), None)
        examples = metrics.get("num-examples", 0) if metrics is not None else 0
        if arrays is not None and isinstance(examples, int | float):
            out.append((float(examples), arrays.to_numpy_ndarrays()))
    return out
