"""The federated run the ServerApp executes: set-up, then one :class:`Round` after another.

Each round (:mod:`coordinator.federation.round`) runs its named phases and returns its history
record; the run writes ``history.json`` and the plots after every round, so a run killed
midway leaves everything up to its last round. Privacy options (central DP, local DP, SecAgg+;
docs/privacy.md) act only through :mod:`coordinator.federation.privacy_modes`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.serverapp import Grid

from coordinator.data import arrays_for, read_csv
from coordinator.federation import plots, privacy, strategies
from coordinator.federation.checkpoint import GlobalModel, Holdout, synthetic_holdout
from coordinator.federation.errors import RunFailed
from coordinator.federation.history import History, RunHistory
from coordinator.federation.privacy_modes import Privacy, modes_for
from coordinator.federation.round import Round, RunState
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.selection import AllNodes, Fleet
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.grid = grid
        self.settings = settings
        self.run_id = run_id
        self.fleet = fleet or AllNodes()
        self.poll_s, self.clock, self.sleep = poll_s, clock, sleep
        if not settings.model_spec:
            raise RunFailed(
                "run.model-spec is empty: the coordinator must say which model to train"
            )
        self.spec = ModelSpec.from_dict(json.loads(settings.model_spec))
        self.out = Path(settings.out_dir or "runs") / run_id
        self.history = History(self.out / "history.json", run_id, settings.to_run_config())
        self.privacy = Privacy(modes_for(settings))

    def execute(self) -> None:
        try:
            self._execute()
        except Exception as exc:
            self.history.finish("failed", str(exc))
            raise
        self.history.finish("completed")

    def _execute(self) -> None:
        run = self.prepare()
        for number in range(1, self.settings.num_server_rounds + 1):
            rnd = Round(
                number,
                run,
                self.grid,
                self.fleet,
                self.privacy,
                clock=self.clock,
                sleep=self.sleep,
                poll_s=self.poll_s,
            )
            record = rnd.execute()
            self.history.add_round(record)
            self._plots(run)
            logger.info(
                "round %d done in %.1f s: %s", number, record["duration_s"], record["train"]
            )

    def prepare(self) -> RunState:
        """The global model, its initial arrays and the strategy, recorded in the history."""
        s = self.settings
        model = GlobalModel(self.spec, seed=s.seed)
        pairs = model.stat_pairs()
        run = RunState(
            run_id=self.run_id,
            settings=s,
            spec=self.spec,
            model=model,
            holdout=self._holdout(model),
            out=self.out,
            pairs=pairs,
            statistics=privacy.frozen_indices(pairs),  # the normalisation arrays
        )
        self.privacy.fix_statistics(run)
        run.arrays = model.initial_arrays()
        run.fixed = list(run.arrays)
        self.history.extra["model"] = {
            "spec": self.spec.to_dict(),
            "arrays": [list(a.shape) for a in run.arrays],
            "parameters": int(sum(a.size for a in run.arrays)),
            "frozen_arrays": run.frozen,
        }
        self.history.extra["initial_central"] = model.central(run.holdout)
        self.history.save()
        run.strategy = strategies.build(s, min_nodes=1)  # central DP: wrapped, accountant ready
        self.privacy.prepare(run)
        return run

    def _holdout(self, model: GlobalModel) -> Holdout:
        if self.settings.validation:
            table = read_csv(Path(self.settings.validation))
            x, y = arrays_for(self.spec, table)
            if len(x):
                return Holdout(x.astype(np.float32), y, real=True)
            logger.warning("validation set %s has no usable rows", self.settings.validation)
        return synthetic_holdout(model.model, self.spec)

    def _plots(self, run: RunState) -> None:
        data = RunHistory.decode(self.history.to_dict(), self.run_id)
        label = {Task.CLASSIFY: "accuracy", Task.REGRESS: "MAE", Task.FORECAST: "MAE"}.get(
            self.spec.task, "loss"
        )
        plots.training(data, self.out / "training.png", label)
        if self.spec.task is Task.CLASSIFY and run.holdout.real:
            confusion = run.model.confusion(run.holdout)
            plots.confusion(confusion, self.spec.labels, self.out / "confusion.png")
