"""Entry point only: the thin ClientApp lives in the installed ``agent`` package.

The FAB is built by the coordinator and runs on boards whose agent may be older (a fleet in
the middle of an update): those keep the ClientApp at its earlier place.
"""

import importlib

try:
    from agent.clientapp.app import app
except ModuleNotFoundError:  # an agent from before agent/clientapp/
    app = importlib.import_module("agent.federation.client_app").app

__all__ = ["app"]
