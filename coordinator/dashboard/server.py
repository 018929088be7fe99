"""Serve an ASGI app with uvicorn on a background thread (the coordinator's dashboard)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import uvicorn

from coordinator.errors import CoordinatorError

logger = logging.getLogger(__name__)


class DashboardServer:
    """``start()`` returns once uvicorn listens (``port=0``: a free port); ``stop()`` ends it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8780) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="orchard-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise CoordinatorError(
                    f"dashboard could not listen on {self.host}:{self.port} "
                    "(port in use? set [dashboard] port)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise CoordinatorError(f"dashboard did not start within {timeout} s")
            time.sleep(0.02)
        sockets = self._server.servers[0].sockets if self._server.servers else []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logger.info("dashboard on %s", self.url)

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
            self._server.run()

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("dashboard thread did not exit within %s s", timeout)
