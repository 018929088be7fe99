"""Entry point only: the thin ClientApp lives in the installed ``agent`` package."""

from agent.federation import client_app as _impl

app = _impl.app
