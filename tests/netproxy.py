"""A loopback TCP relay for tests: records every byte, and can cut or black-hole the link.

Put it between a real client and a real server (an agent and Mosquitto, a SuperNode and the
SuperLink) to see exactly what crosses the wire, or to fail the network the way networks fail:

    with TcpProxy(("127.0.0.1", broker_port)) as proxy:
        agent_config["mqtt"]["port"] = proxy.port
        ...
        proxy.cut()         # both ends see the connection close; new connections are refused
        proxy.blackhole()   # connections stay open but nothing passes (keepalives time out)
        proxy.restore()
        proxy.sent()        # every byte the clients sent (client -> server), in order

Only the network is simulated; both ends are the real programs.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from types import TracebackType

logger = logging.getLogger(__name__)

_CHUNK = 65536
_POLL_S = 0.05


class _Link:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.up = bytearray()  # client -> server
        self.down = bytearray()  # server -> client
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Relays ``127.0.0.1:port`` to ``target``; one thread per connection, bounded polls."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(_POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refusing = threading.Event()
        self._holding = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- failures --------------------------------------------------------------------------------

    def cut(self) -> None:
        """Close every live connection and refuse new ones until :meth:`restore`."""
        self._refusing.set()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def blackhole(self) -> None:
        """Keep connections open but pass nothing either way (and accept no new ones)."""
        self._holding.set()
        self._refusing.set()

    def restore(self) -> None:
        """Let traffic through again; black-holed connections resume where they were."""
        self._refusing.clear()
        self._holding.clear()

    # -- what crossed ------------------------------------------------------------------------------

    def sent(self) -> bytes:
        """Every byte clients sent towards the target, connection by connection."""
        with self._lock:
            return b"".join(bytes(link.up) for link in self._links)

    def received(self) -> bytes:
        """Every byte the target sent back to clients."""
        with self._lock:
            return b"".join(bytes(link.down) for link in self._links)

    # -- internals -------------------------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError as exc:
                logger.info("proxy: target %s:%s unreachable: %s", *self.target, exc)
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
                self.connections += 1
            self._spawn(self._pump, f"proxy-link-{self.connections}", link)

    def _pump(self, link: _Link) -> None:
        pairs = {link.client: (link.server, link.up), link.server: (link.client, link.down)}
        try:
            while not (self._stop.is_set() or link.closed.is_set()):
                if self._holding.is_set():
                    link.closed.wait(_POLL_S)
                    continue
                readable, _, _ = select.select(list(pairs), [], [], _POLL_S)
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    peer, record = pairs[sock]
                    with self._lock:
                        record += data
                    peer.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            link.close()
