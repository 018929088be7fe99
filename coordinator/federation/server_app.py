"""The ServerApp (runs as ``flwr-serverapp`` under the SuperLink; the FAB only points here)."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from coordinator.federation.rounds import FederatedRun, Selector, _all_eligible
from coordinator.federation.runconfig import RunSettings

logger = logging.getLogger(__name__)

app = ServerApp()


def selector_for(settings: RunSettings) -> Selector:
    """Health-aware selection over the coordinator's device registry, when one is configured."""
    if not settings.registry:
        return _all_eligible
    from coordinator.federation.selection import registry_selector

    return registry_selector(settings)


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(context.run_config)
    FederatedRun(grid, settings, str(context.run_id), selector=selector_for(settings)).execute()
