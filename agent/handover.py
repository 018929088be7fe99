"""Hand the running agent over to a new process without closing the prediction endpoint.

A software update's switch (agent/software/apply.py) asks for it with ``SIGUSR2`` on the unit's
main process. The running agent (the predecessor) keeps serving and starts its successor: the
same command line (``/opt/orchard/venv/bin/orchard-agent run ...``, through the link, so the new
release), with its HTTP listening socket and a pipe:

1. the successor loads the model and serves on the same socket (the kernel hands each new
   connection to one of the two), then writes ``serving`` to the pipe;
2. the predecessor tells systemd ``MAINPID=<successor>`` (accepted from the main process under
   ``NotifyAccess=main``), stops (sensors, MQTT, federation, then HTTP) and exits;
3. the successor waits for it to be gone, then builds MQTT, delivery, remote commands and the
   federation, as at any start.

If the successor exits or is not serving within ``TIMEOUT_S``, the predecessor kills it and
goes on as before: a release whose agent cannot start costs no downtime at all. An agent that
predates this module dies of ``SIGUSR2`` and systemd restarts it (``Restart=on-failure``) on
the new release: a plain restart.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from typing import Final, Literal

logger = logging.getLogger(__name__)

ENV_FD: Final = "ORCHARD_HANDOVER_FD"  # the listening socket the successor serves on
ENV_PIPE: Final = "ORCHARD_HANDOVER_PIPE"  # where it says "serving"
ENV_PARENT: Final = "ORCHARD_HANDOVER_PARENT"  # the predecessor's pid
TIMEOUT_S: Final = 300.0
GONE_TIMEOUT_S: Final = 60.0
_SERVING: Final = b"serving\n"
FAILED_FILE: Final = "handover-failed"  # in the state dir: why the last handover failed

State = Literal["starting", "serving", "failed"]


class Successor:
    """The predecessor's side: start the successor and see whether it serves (polled)."""

    def __init__(self, argv: list[str], http_fd: int, *, timeout_s: float = TIMEOUT_S) -> None:
        self.argv = argv
        self.http_fd = http_fd
        self.deadline = time.monotonic() + timeout_s
        self.reason: str | None = None
        read, write = os.pipe()
        self._read = read
        env = {
            **os.environ,
            ENV_FD: str(http_fd),
            ENV_PIPE: str(write),
            ENV_PARENT: str(os.getpid()),
        }
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                argv, env=env, pass_fds=(http_fd, write)
            )
        except OSError as exc:
            self.proc = None
            self.reason = f"cannot start {argv[0]}: {exc.strerror}"
            os.close(read)
        finally:
            os.close(write)

    @property
    def pid(self) -> int:
        return 0 if self.proc is None else self.proc.pid

    def poll(self) -> State:
        if self.proc is None:
            return "failed"
        ready, _, _ = select.select([self._read], [], [], 0)
        if ready:
            data = os.read(self._read, 64)
            if data.startswith(_SERVING):
                os.close(self._read)
                return "serving"
        code = self.proc.poll()
        if code is not None:
            self.reason = f"the new agent exited with status {code} before it served"
        elif time.monotonic() > self.deadline:
            self.reason = "the new agent did not serve in time"
            self.proc.kill()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:  # stuck in the kernel: reaped at its exit
                logger.warning("handover: the new agent %d outlives SIGKILL", self.proc.pid)
        else:
            return "starting"
        os.close(self._read)
        return "failed"


def argv() -> list[str]:
    """This agent's command line with its script path (``sys.argv[0]``, the link's
    ``orchard-agent``, so the successor runs the release the link names now)."""
    return [sys.argv[0], *sys.argv[1:]]


def inherited_socket(environ: dict[str, str] | None = None) -> socket.socket | None:
    """The successor's side: the predecessor's listening socket, if this is a handover."""
    env = os.environ if environ is None else environ
    fd = env.pop(ENV_FD, "")
    if not fd.isdigit():
        return None
    os.set_inheritable(int(fd), False)
    return socket.socket(fileno=int(fd))


def is_successor() -> bool:
    return ENV_PARENT in os.environ


def warm_up(url: str) -> None:
    """Requests to this agent's own endpoint before it says it serves, so the first client's
    request does not pay for what a first request imports (the thread pool, the error path)
    while this agent's main thread imports MQTT and the rest."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for path, body in (("/healthz", None), ("/api/info", None), ("/api/predict", b"{}")):
        request = urllib.request.Request(url + path, data=body, method="POST" if body else "GET")
        try:
            opener.open(request, timeout=30).close()
        except urllib.error.HTTPError:
            pass  # a 400 for the empty prediction, a 401 without the token: answered
        except OSError as exc:
            logger.debug("handover warm-up %s: %s", path, exc)


def announce_serving() -> None:
    """Tell the predecessor that this agent serves."""
    fd = os.environ.pop(ENV_PIPE, "")
    if not fd.isdigit():
        return
    try:
        os.write(int(fd), _SERVING)
    except OSError as exc:
        logger.warning("handover: cannot tell the previous agent: %s", exc)
    finally:
        os.close(int(fd))


def wait_predecessor_gone(timeout_s: float = GONE_TIMEOUT_S) -> None:
    """Until the predecessor exited (bounded): then MQTT and the rest are this agent's alone."""
    parent = os.environ.pop(ENV_PARENT, "")
    if not parent.isdigit():
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(int(parent), 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)  # polling another process's exit, bounded by the deadline
    logger.warning("handover: the previous agent %s still runs after %g s", parent, timeout_s)
