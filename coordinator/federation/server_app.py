"""The ServerApp (runs as ``flwr-serverapp`` under the SuperLink; the FAB only points here)."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from coordinator.federation.rounds import FederatedRun
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.selection import fleet_for

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(context.run_config)
    FederatedRun(grid, settings, str(context.run_id), fleet=fleet_for(settings)).execute()
