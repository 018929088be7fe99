"""Run the app under uvicorn in a background thread; the agent's main thread supervises.

The socket is bound here, before uvicorn starts, so a busy port is a clear ``ConfigError`` in
the caller rather than a ``sys.exit`` inside uvicorn's thread, and port 0 (tests) is resolved.

uvicorn's event loop, HTTP parser and WebSocket support are chosen explicitly, not ``auto``:
flwr depends on ``uvicorn[standard]``, so httptools, uvloop, watchfiles and websockets are on a
board, and ``auto`` would make the agent's footprint depend on what else is installed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator

from starlette.types import ASGIApp

from agent.errors import AgentError, ConfigError
from agent.serve.settings import HttpSettings

logger = logging.getLogger(__name__)

# httptools, not h11: +0.1 to 0.3 MB RSS for p50 0.36 vs 0.41 ms with one client and ~4,000
# vs ~2,600 predictions/s with four (docs/benchmarks.md, agent RSS without FastAPI).
HTTP = "httptools"
# Imported by uvicorn's package __init__ (its --reload supervisor) when installed; never used.
UNUSED_BY_UVICORN = ("watchfiles",)


@contextlib.contextmanager
def _unimportable(names: tuple[str, ...]) -> Iterator[None]:
    """While inside, ``import name`` fails for each of ``names`` not imported yet.

    uvicorn falls back to its stat reloader when watchfiles cannot be imported (the agent never
    reloads); afterwards anything else may import watchfiles as usual.
    """
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "not importable"
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class HttpServer:
    def __init__(self, app: ASGIApp, settings: HttpSettings, *, log_level: str = "warning") -> None:
        with _unimportable(UNUSED_BY_UVICORN):
            import uvicorn

        self.settings = settings
        self._config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            # asyncio, not uvloop: uvloop costs ~2 MB RSS for ~40 us less per request (p50
            # 0.46 vs 0.50 ms on the dev machine); the 75 MB budget is the tighter figure.
            loop="asyncio",
            http=HTTP,
            ws="none",  # no websockets: nothing to serve, nothing to import
            reload=False,
            workers=None,
            server_header=False,
            timeout_keep_alive=30,
            limit_concurrency=64,  # a board answers a few clients; beyond that, 503
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.inherited = False  # the listening socket came from systemd's descriptor store

    @property
    def fileno(self) -> int:
        if self._sock is None:
            raise AgentError("the HTTP server is not started")
        return self._sock.fileno()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise AgentError("the HTTP server is not started")
        return int(self._sock.getsockname()[1])

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0, *, sock: socket.socket | None = None) -> None:
        """Bind (or take ``sock``, a listening socket the previous agent left with systemd,
        when it is bound to ``[http]`` host and port), serve in a thread and wait until uvicorn
        accepts connections."""
        if not self.settings.loopback and self.settings.token is None:
            logger.warning("serving predictions on %s without a token", self.settings.host)
        if sock is not None and not _bound_as(sock, self.settings):
            logger.info("the inherited HTTP socket is not [http]'s address: binding anew")
            sock.close()
            sock = None
        self.inherited = sock is not None
        self._sock = sock if sock is not None else _bind(self.settings)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="orchard-http"
        )
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise AgentError(f"the HTTP server did not start within {timeout:g} s")
            time.sleep(0.005)
        kept = " (the socket systemd kept across the restart)" if self.inherited else ""
        logger.info("serving predictions on %s%s", self.url, kept)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()


def _bound_as(sock: socket.socket, settings: HttpSettings) -> bool:
    """Whether ``sock`` is a TCP socket bound to ``settings``' host and port."""
    try:
        if sock.type != socket.SOCK_STREAM:
            return False
        name = sock.getsockname()
        wanted = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False
    return any(info[4][:2] == name[:2] for info in wanted)


def _bind(settings: HttpSettings) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        # The proto from getaddrinfo (IPPROTO_TCP) matters: asyncio only sets TCP_NODELAY on
        # accepted sockets whose listener says IPPROTO_TCP; without it Nagle plus delayed ACKs
        # hold each response ~40 ms.
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(
            "http.port", settings.port, f"a free port on {settings.host} ({exc.strerror or exc})"
        ) from exc
    sock.set_inheritable(True)
    return sock
