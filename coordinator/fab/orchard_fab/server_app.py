"""Entry point only: the ServerApp lives in the installed ``coordinator`` package."""

from coordinator.federation import server_app as _impl

app = _impl.app
