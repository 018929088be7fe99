"""Serve an ASGI app with uvicorn on a background thread (the coordinator's dashboard, and the
model artifact server of coordinator/delivery/ over TLS or mutual TLS)."""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from coordinator.errors import CoordinatorError

logger = logging.getLogger(__name__)


class DashboardServer:
    """``start()`` returns once uvicorn listens (``port=0``: a free port); ``stop()`` ends it.

    ``tls_cert`` + ``tls_key`` serve HTTPS; ``tls_ca`` as well requires every client to present
    a certificate issued by that CA (mutual TLS). ``name`` is the config section the server
    belongs to, for its thread and its messages.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8780,
        *,
        name: str = "dashboard",
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        if tls_ca is not None and tls_cert is None:
            raise CoordinatorError(f"{name}: mutual TLS (tls_ca) needs tls_cert and tls_key")
        self.host = host
        self.port = port
        self.name = name
        self.tls = tls_cert is not None
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            ssl_ca_certs=tls_ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls_ca is not None else ssl.CERT_NONE,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name=f"orchard-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise CoordinatorError(
                    f"{self.name} could not listen on {self.host}:{self.port} "
                    f"(port in use? set [{self.name}] port; or a TLS file it cannot load)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise CoordinatorError(f"{self.name} did not start within {timeout} s")
            time.sleep(0.02)
        sockets = self._server.servers[0].sockets if self._server.servers else []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logger.info("%s on %s", self.name, self.url)

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
            logger.warning("%s thread did not exit within %s s", self.name, timeout)
