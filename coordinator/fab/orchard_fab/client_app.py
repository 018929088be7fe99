"""Entry point only: the thin ClientApp lives in the installed ``agent`` package."""

from agent.clientapp import app as _impl

app = _impl.app
