"""The federated run the ServerApp executes: rounds, selection, checkpoints, history.

The loop is Flower's ``Strategy.start`` unrolled (configure → send_and_receive → aggregate, for
train then evaluate) so that each round can (1) offer the round only to devices the health
policy allows, (2) bound every wait, including "not enough devices", which Flower's sampler
would wait on forever, (3) pool normalisation statistics exactly, and (4) write its checkpoint
and history entry as soon as it ends.

Privacy options (:mod:`coordinator.federation.privacy`, docs/privacy.md): central DP lives in
the strategy, local DP on the devices; with SecAgg+ the train phase runs through Flower's
``SecAggPlusWorkflow`` instead of ``configure_train``/``aggregate_train``. In a private run the
normalisation statistics come from the validation set and stay fixed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from coordinator.data import arrays_for, read_csv
from coordinator.federation import plots, privacy, stats, strategies
from coordinator.federation.checkpoint import GlobalModel, Holdout, synthetic_holdout
from coordinator.federation.errors import RunFailed
from coordinator.federation.grid import RoundGrid
from coordinator.federation.history import History
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.selection import AllNodes, Fleet
from models.normalization import adapt
from models.spec import ModelSpec, Task

logger = logging.getLogger(__name__)


class FederatedRun:
    def __init__(
        self,
        grid: Grid,
        settings: RunSettings,
        run_id: str,
        *,
        fleet: Fleet | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.grid = grid
        self.settings = settings
        self.run_id = run_id
        self.fleet = fleet or AllNodes()
        self.poll_s = poll_s
        if not settings.model_spec:
            raise RunFailed(
                "run.model-spec is empty: the coordinator must say which model to train"
            )
        self.spec = ModelSpec.from_dict(json.loads(settings.model_spec))
        self.out = Path(settings.out_dir or "runs") / run_id
        self.history = History(self.out / "history.json", run_id, settings.to_run_config())

    def execute(self) -> None:
        try:
            self._execute()
        except Exception as exc:
            self.history.finish("failed", str(exc))
            raise
        self.history.finish("completed")

    def _execute(self) -> None:
        s = self.settings
        model = GlobalModel(self.spec, seed=s.seed)
        holdout = self._holdout(model)
        pairs = model.stat_pairs()
        statistics = privacy.frozen_indices(pairs)  # normalisation arrays
        self.frozen: list[int] = []
        if s.private:  # statistics from the coordinator's data, fixed for the whole run
            if not holdout.real:
                raise RunFailed(
                    f"run.validation {s.validation!r} has no usable rows: a private run takes "
                    "its normalisation statistics from the coordinator's validation set"
                )
            adapt(model.model, self.spec, holdout.x, holdout.y)
            self.frozen = statistics
        arrays = model.initial_arrays()
        self.fixed = list(arrays)
        self.history.extra["model"] = {
            "spec": self.spec.to_dict(),
            "arrays": [list(a.shape) for a in arrays],
            "parameters": int(sum(a.size for a in arrays)),
            "frozen_arrays": self.frozen,
        }
        self.history.extra["initial_central"] = model.central(holdout)
        self.history.save()
        strategy = strategies.build(s, min_nodes=1)  # central DP: wrapped, accountant ready
        if s.local_dp:
            privacy.require_accounting()
        for rnd in range(1, s.num_server_rounds + 1):
            started = time.monotonic()
            eligible, skipped = self._eligible(rnd)
            view = RoundGrid(self.grid, eligible)
            record: dict[str, Any] = {
                "round": rnd,
                "selected": eligible,
                "skipped": {str(node): why for node, why in sorted(skipped.items())},
            }
            before = arrays
            if s.secure_aggregation:
                arrays, phases = self._secure_train(view, rnd, arrays, eligible, record)
            else:
                arrays, phases = self._train(view, strategy, rnd, arrays, pairs, record)
            record["update_norm"] = privacy.norm(  # of the trained arrays
                a - b for i, (a, b) in enumerate(zip(arrays, before, strict=True))
                if i not in statistics
            )  # fmt: skip

            done = len(view.phases)
            eval_msgs = strategy.configure_evaluate(rnd, ArrayRecord(arrays), ConfigRecord(), view)
            eval_replies = list(view.send_and_receive(eval_msgs, timeout=s.round_timeout))
            record["evaluate"] = _plain(strategy.aggregate_evaluate(rnd, eval_replies))
            if len(view.phases) > done:
                phases["evaluate"] = view.phases[done].to_dict()

            model.load(arrays)
            record["central"] = model.central(holdout)
            record["model"] = model.checkpoint(
                self.out / f"round-{rnd}",
                name=s.model_name or f"{self.spec.family}-{self.spec.task.value}",
                version=f"{self.run_id}.{rnd}",
                quantization=s.quantization,
                holdout=holdout,
                metrics={"round": rnd, **(record["central"] or record["evaluate"] or {})},
            )
            record["phases"] = phases
            record["failures"] = sum(
                len(p["replies"]) - sum("error" not in r for r in p["replies"]) + len(p["no_reply"])
                for p in phases.values()
            )
            record["bytes_sent"] = sum(p["bytes_sent"] for p in phases.values())
            record["bytes_received"] = sum(p["bytes_received"] for p in phases.values())
            if s.central_dp:
                record.setdefault("privacy", {})["central_dp"] = privacy.central_dp_record(strategy)
            if s.local_dp:
                record.setdefault("privacy", {})["local_dp"] = privacy.local_dp_record(s, rnd)
            record["duration_s"] = round(time.monotonic() - started, 3)
            self.fleet.record(rnd, _outcomes(phases.get("train")))
            self.history.add_round(record)
            self._plots(model, holdout)
            logger.info("round %d done in %.1f s: %s", rnd, record["duration_s"], record["train"])

    def _train(
        self,
        view: RoundGrid,
        strategy: Any,
        rnd: int,
        arrays: list[np.ndarray],
        pairs: list[tuple[int, int]],
        record: dict[str, Any],
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """A Message-API train phase (central DP, when on, lives inside ``strategy``)."""
        s = self.settings
        config = ConfigRecord()
        if s.private:
            config = ConfigRecord(dict(privacy.round_config(rnd, self.frozen)))
        privacy.expect(strategy, len(list(view.get_node_ids())), s.fraction_train)
        train_msgs = strategy.configure_train(rnd, ArrayRecord(arrays), config, view)
        replies = list(view.send_and_receive(train_msgs, timeout=s.round_timeout))
        if s.private:
            record["updates"] = {
                "received": privacy.update_norms(replies, arrays, self.frozen),
                "frozen_max_change": privacy.frozen_change(replies, arrays, self.frozen),
            }
        if s.central_dp:
            replies = privacy.uniform(replies)
        aggregated, train_metrics = strategy.aggregate_train(rnd, replies)
        if s.central_dp:  # the wrapper clipped the replies in place
            record["updates"]["clipped"] = privacy.update_norms(replies, arrays, self.frozen)
        if aggregated is not None:
            new = [np.asarray(a, np.float32) for a in aggregated.to_numpy_ndarrays()]
            if s.private:
                arrays = privacy.fix_statistics(new, self.fixed, self.frozen)
            else:
                arrays = stats.pool(new, pairs, _ok_arrays(replies))
        record["train"] = _plain(train_metrics)
        return arrays, {"train": view.phases[0].to_dict()}

    def _secure_train(
        self,
        view: RoundGrid,
        rnd: int,
        arrays: list[np.ndarray],
        eligible: list[int],
        record: dict[str, Any],
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """A SecAgg+ train phase: four exchanges, the server sees only the masked sum."""
        s = self.settings
        config: dict[str, int | str | float] = dict(privacy.round_config(rnd, self.frozen))
        if s.strategy == "fedprox":
            config["proximal-mu"] = s.proximal_mu
        new, train_metrics, stages = privacy.secure_train(
            view.inner, s, rnd, arrays, eligible, config
        )
        if new is not None:
            arrays = privacy.fix_statistics(new, self.fixed, self.frozen)
        record["train"] = train_metrics
        record["secure_aggregation"] = privacy.secagg_record(s, stages)
        return arrays, {"train": privacy.merge_stages(stages)}

    def _holdout(self, model: GlobalModel) -> Holdout:
        if self.settings.validation:
            table = read_csv(Path(self.settings.validation))
            x, y = arrays_for(self.spec, table)
            if len(x):
                return Holdout(x.astype(np.float32), y, real=True)
            logger.warning("validation set %s has no usable rows", self.settings.validation)
        return synthetic_holdout(model.model, self.spec)

    def _eligible(self, rnd: int) -> tuple[list[int], dict[int, str]]:
        """Connected nodes the policy allows; wait (bounded) until there are ``min-devices``."""
        s = self.settings
        deadline = time.monotonic() + s.wait_for_devices
        while True:
            nodes = sorted(self.grid.get_node_ids())
            eligible, skipped = self.fleet.select(nodes)
            if len(eligible) >= s.min_devices:
                return eligible, skipped
            if time.monotonic() >= deadline:
                reasons = "; ".join(f"node {k}: {v}" for k, v in skipped.items()) or "none skipped"
                raise RunFailed(
                    f"round {rnd}: only {len(eligible)} of {s.min_devices} required devices "
                    f"available after {s.wait_for_devices:g} s ({len(nodes)} connected; {reasons})"
                )
            time.sleep(self.poll_s)

    def _plots(self, model: GlobalModel, holdout: Holdout) -> None:
        data = self.history.to_dict()
        label = {Task.CLASSIFY: "accuracy", Task.REGRESS: "MAE", Task.FORECAST: "MAE"}.get(
            self.spec.task, "loss"
        )
        plots.training(data, self.out / "training.png", label)
        if self.spec.task is Task.CLASSIFY and holdout.real:
            plots.confusion(model.confusion(holdout), self.spec.labels, self.out / "confusion.png")


def _ok_arrays(replies: list[Message]) -> list[tuple[float, list[np.ndarray]]]:
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


def _outcomes(phase: dict[str, Any] | None) -> dict[int, tuple[bool, str]]:
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
