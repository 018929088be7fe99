"""Submit a run to the SuperLink and follow it to the end, with a deadline.

Progress comes from the ServerApp's own ``history.json`` (cheap to poll); the run's status
from ``flwr ls`` every few seconds. Past the deadline the run is stopped (``flwr stop``), so
a coordinator never waits forever on a fleet that went away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.federation import fab
from coordinator.federation import history as history_file
from coordinator.federation.errors import RunFailed
from coordinator.federation.history import HistoryError, RoundSummary
from coordinator.federation.runconfig import RunSettings, to_toml
from coordinator.federation.superlink import SuperLink

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 4.0


def deadline_for(settings: RunSettings) -> float:
    """Seconds a run may take: device wait, two phases per round, and slack per round."""
    per_round = 2 * settings.round_timeout + settings.wait_for_devices + 60.0
    return settings.wait_for_devices + 120.0 + settings.num_server_rounds * per_round


def submit(superlink: SuperLink, settings: RunSettings, workdir: Path) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "run-config.toml"
    config.write_text(to_toml(settings))
    return superlink.submit(fab.build(workdir), config)


def follow(
    superlink: SuperLink,
    run_id: str,
    settings: RunSettings,
    *,
    on_round: Callable[[RoundSummary], None] = lambda summary: None,
    timeout: float | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Wait for ``run_id`` to finish; call ``on_round`` once per finished round; return history.

    Raises ``RunFailed`` when the run fails, is stopped, or passes its deadline (then it is
    stopped first).
    """
    path = Path(settings.out_dir) / run_id / "history.json"
    deadline = time.monotonic() + (timeout or deadline_for(settings))
    seen = 0
    next_status = 0.0
    status = "pending"
    while True:
        data = history_file.load(path)
        rounds = history_file.raw_rounds(data)
        _report(rounds[seen:], on_round)
        seen = max(seen, len(rounds))
        now = time.monotonic()
        if now >= next_status:
            info = superlink.run_status(run_id)
            status = str(info.get("status", ""))
            next_status = now + STATUS_EVERY_S
            if status.startswith("finished"):
                data = history_file.load(path) or {}
                _report(history_file.raw_rounds(data)[seen:], on_round)
                if status != "finished:completed":
                    detail = info.get("status-details") or history_file.run_error(data)
                    raise RunFailed(f"run {run_id} {status}: {detail}")
                return data
        if now >= deadline:
            superlink.stop_run(run_id)
            raise RunFailed(f"run {run_id} passed its deadline (status {status}); stopped it")
        time.sleep(poll_s)


def _report(records: list[Any], on_round: Callable[[RoundSummary], None]) -> None:
    for record in records:
        try:
            summary = RoundSummary.decode(record)
        except HistoryError as exc:
            logger.warning("%s", exc)
            continue
        on_round(summary)
