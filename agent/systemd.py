"""systemd's notify protocol (``sd_notify``): READY=1, WATCHDOG=1, STOPPING=1, STATUS=...

A no-op without ``$NOTIFY_SOCKET``, so the agent runs the same under systemd and in a shell.

The file descriptor store (``FileDescriptorStoreMax=`` in the unit): :meth:`Notifier.store_fd`
hands the HTTP listening socket to systemd, which passes it back to the next agent it starts
(``$LISTEN_FDS``, ``$LISTEN_FDNAMES``; :func:`inherited_fds`). While the agent restarts (a
software update, a remote config change) the socket stays open in the kernel: a client's
connection waits in its backlog for the next agent instead of being refused.
"""

from __future__ import annotations

import array
import logging
import os
import socket

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET`` (abstract sockets start with ``@``)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address: str | bytes | None = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls) -> Notifier:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = int(usec) if usec and usec.isdigit() else None
        successor = "ORCHARD_HANDOVER_PARENT" in os.environ  # agent/handover.py: it will be main
        if pid and pid.isdigit() and int(pid) != os.getpid() and not successor:
            watchdog = None  # the watchdog is meant for another process
        return cls(os.environ.get("NOTIFY_SOCKET"), watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``"READY=1"``); False when disabled or the send failed."""
        if self._address is None:
            return False
        try:
            self._socket().sendto(message.encode(), self._address)
        except OSError as exc:
            logger.warning("sd_notify %r failed: %s", message, exc)
            return False
        return True

    def store_fd(self, fd: int, name: str) -> bool:
        """Keep ``fd`` in the unit's file descriptor store under ``name`` (replacing one)."""
        if self._address is None:
            return False
        message = f"FDSTORE=1\nFDNAME={name}".encode()
        try:
            self._socket().sendmsg(
                [message],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())],
                0,
                self._address,
            )
        except OSError as exc:
            logger.warning("sd_notify FDSTORE %s failed: %s", name, exc)
            return False
        return True

    def _socket(self) -> socket.socket:
        """Bounded sends: a notify socket whose reader stalls (its queue holds 10 datagrams)
        must not stop the agent; a message not taken within a second is logged and dropped."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(SEND_TIMEOUT_S)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def inherited_fds(environ: dict[str, str] | None = None) -> dict[str, int]:
    """The descriptors systemd passed to this process, by name (``$LISTEN_FDNAMES``), taken
    out of the environment so that children do not see them."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if not (pid.isdigit() and int(pid) == os.getpid() and count.isdigit()):
        return {}
    fds = {}
    for i in range(int(count)):
        fd = 3 + i  # SD_LISTEN_FDS_START
        os.set_inheritable(fd, False)
        fds[names[i] if i < len(names) and names[i] else f"fd{i}"] = fd
    return fds
