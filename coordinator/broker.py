"""An embedded MQTT broker (amqtt) for zero-setup runs: loopback, anonymous, MQTT 3.1.1 only.

``orchard-coordinator run`` and ``demo`` start one when ``coordinator.toml`` names no broker, so
a fresh laptop needs nothing installed; production points ``[mqtt] host`` at Mosquitto. The
broker runs on its own asyncio loop in a daemon thread::

    broker = EmbeddedBroker()          # port=0: a free port chosen by the OS
    broker.start()                     # returns once it accepts TCP connections
    print(broker.port)
    broker.stop()

amqtt speaks MQTT 3.1.1 and refuses a v5 CONNECT, so clients must negotiate (v5, falling back
to 3.1.1), as Orchard's reporter and ingest do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import warnings
from concurrent.futures import Future
from typing import Any

from coordinator.errors import BrokerError

logger = logging.getLogger(__name__)

# amqtt logs every connection at INFO and routine events (a v5 client being refused, a port
# probe) as warnings with tracebacks; start failures reach us as exceptions anyway. Set these
# loggers' levels explicitly to see them.
_CHATTY_LOGGERS = ("amqtt", "transitions")


def _quiet_amqtt() -> None:
    for name in _CHATTY_LOGGERS:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(logging.CRITICAL)


def _config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        # Only anonymous auth: no event/packet loggers, no $SYS publisher, no topic checks.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # amqtt leaves errors of dropped client connections to the loop; they are routine.
    logger.debug("embedded broker: %s", context.get("exception") or context.get("message"))


def accepts_tcp(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """amqtt on ``host:port`` in a background thread; ``start()``/``stop()`` may repeat."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise BrokerError(f"expected a port in [0, 65535]. Received: port={port!r}")
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def port(self) -> int:
        """The bound port (known once started; kept across stop/start so restarts reuse it)."""
        if self._port is None:
            raise BrokerError("the embedded broker has no port yet: call start() first")
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the listener accepts TCP, raises ``BrokerError`` if not."""
        if self.running:
            return
        _quiet_amqtt()
        loop = asyncio.new_event_loop()
        started: Future[int] = Future()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._serve, args=(loop, started), name="orchard-mqtt-broker", daemon=True
        )
        self._thread.start()
        try:
            self._port = started.result(timeout=timeout)
        except TimeoutError as exc:
            self.stop()
            raise BrokerError(f"embedded MQTT broker did not start within {timeout} s") from exc
        except Exception as exc:
            self.stop()
            raise BrokerError(
                f"embedded MQTT broker could not start on {self.host}:{self._requested_port}: "
                f"{exc} (another broker there? set [mqtt] host to use it, or another port)"
            ) from exc
        deadline = time.monotonic() + timeout
        while not accepts_tcp(self.host, self._port):
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"embedded MQTT broker is not accepting on port {self._port}")
            time.sleep(0.02)
        logger.info("embedded MQTT broker listening on %s:%d", self.host, self._port)

    def _serve(self, loop: asyncio.AbstractEventLoop, started: Future[int]) -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_log_loop_error)
        try:
            loop.run_until_complete(self._start_async(started))
        except Exception as exc:  # reported to start() through the future
            if not started.done():
                started.set_exception(exc)
            loop.close()
            return
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _start_async(self, started: Future[int]) -> None:
        port = self._port if self._port is not None else self._requested_port
        with warnings.catch_warnings():  # passlib (via amqtt's auth plugin) imports crypt
            warnings.simplefilter("ignore", DeprecationWarning)
            from amqtt.broker import Broker

            self._broker = Broker(_config(self.host, port))
        await self._broker.start()
        bound = port
        server = self._broker._servers.get("default")  # amqtt keeps the asyncio.Server here
        if server is not None and server.instance is not None and server.instance.sockets:
            bound = int(server.instance.sockets[0].getsockname()[1])
        started.set_result(bound)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down (connected clients see the socket close)."""
        loop, thread, broker = self._loop, self._thread, self._broker
        if loop is None or thread is None:
            return
        if broker is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            try:
                future.result(timeout=timeout)
            except Exception as exc:
                logger.warning("embedded MQTT broker shutdown: %r", exc)
                # amqtt's shutdown can fail half-way; never leave its listening socket open
                # (a restart on the same port would then fail with "address already in use").
                closing = asyncio.run_coroutine_threadsafe(_close_listeners(broker), loop)
                try:
                    closing.result(timeout=timeout)
                except Exception as again:
                    logger.warning("closing the embedded broker's listeners: %r", again)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout)
        if thread.is_alive():
            logger.warning("embedded MQTT broker thread did not exit within %s s", timeout)
        self._loop = self._thread = self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


async def _close_listeners(broker: Any) -> None:
    """Close every listening socket of an amqtt broker (its ``Server.close_instance``)."""
    for server in list(getattr(broker, "_servers", {}).values()):
        await server.close_instance()
