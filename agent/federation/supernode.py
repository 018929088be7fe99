"""Supervise Flower's ``flower-supernode``: start it, read its log, restart it with backoff.

It exits 0 when the SuperLink forgets it, and can hang alive after giving up reconnecting or
when a Flower executable is missing from ``PATH``; those log lines trigger a restart too.
Its state (``starting``, ``connected``, ``backoff``, ``stopped``; ``backoff`` also while the
node itself retries an unreachable SuperLink) and node id feed ``/healthz`` and the health
messages; the node id is how the coordinator maps Flower nodes to devices.

When the SuperLink refuses the node (its key is not registered, TLS does not verify), Flower
prints the cause and exits; the supervisor logs it once in plain words, keeps it in
``last_error`` (``/healthz``: ``"refused: not authorised (...)"``, ``"TLS: certificate verify
failed: ..."``), reports the state ``failed`` and keeps retrying with backoff, so a key
registered later is picked up without touching the board.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final

from agent import cpus as agent_cpus
from agent.federation.settings import FederationSettings
from agent.federation.status import Supernode
from orchard_common import procs

logger = logging.getLogger(__name__)

_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RESTART_ON = ("Giving up reconnection", "FileNotFoundError")
_NOT_REGISTERED = (
    "refused: not authorised (the SuperLink does not know this SuperNode's key; register it "
    "on the coordinator: flwr supernode register <its auth_public_key>)"
)
_NO_KEY = (
    "refused: not authorised (the SuperLink requires SuperNode authentication; set "
    "[federation] auth_private_key and auth_public_key)"
)
# What flower-supernode 1.41 prints when the SuperLink refuses it -> what the user reads.
_REFUSALS: Final = (
    (re.compile(r"\[code: 2004\]|Failed to activate SuperNode"), _NOT_REGISTERED),
    (re.compile(r"\[code: 2001\]|All SuperNodes must be registered"), _NO_KEY),
    (
        re.compile(r"certificate verify failed: ([^(\n]+)"),
        "TLS: certificate verify failed: {0} "
        "(is [federation] root_certificates the CA that signed the SuperLink's certificate?)",
    ),
    (
        re.compile(r"\[SSL: WRONG_VERSION_NUMBER\]"),
        "TLS: wrong version number (the SuperLink does not speak TLS on that port: "
        "is it running with --insecure?)",
    ),
    (re.compile(r"\[SSL: \w+\] ([^(\n]+)"), "TLS: {0}"),
)
STABLE_S = 60.0
FLOWER_NICE = 10


def flower_env(flwr_home: Path) -> dict[str, str]:
    """The environment every Flower process gets: private home, no phoning home, venv first."""
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
    }


def node_config_arg(values: Mapping[str, str | int | float | bool]) -> str:
    """``--node-config`` is parsed as TOML: strings quoted, escapes kept."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{key}="{escaped}"')
    return " ".join(parts)


def refusal_in(line: str) -> str | None:
    """The plain-words cause if ``line`` is Flower saying the SuperLink refused the node."""
    for pattern, message in _REFUSALS:
        match = pattern.search(line)
        if match:
            return message.format(*(g.strip() for g in match.groups()))
    return None


class SupernodeSupervisor:
    def __init__(
        self,
        settings: FederationSettings,
        *,
        state_dir: Path,
        node_config: Mapping[str, str | int | float | bool],
        on_event: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
        clock: Callable[[], float] = time.monotonic,
        cpus: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self.cpus = cpus  # where the SuperNode and its ClientApps run (agent/cpus.py)
        self.home = state_dir / "flwr"
        self.node_config = dict(node_config)
        self.on_event = on_event
        self.clock = clock
        self.state = "stopped"
        self.node_id: int | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_error: str | None = None  # why the SuperLink refused it; None once connected
        self._refused: str | None = None  # the refusal seen in the current run's output
        self._proc: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        s = self.settings
        exe = str(Path(sys.executable).parent / "flower-supernode")
        cmd = [
            exe,
            "--superlink",
            s.superlink,
            "--host",
            "127.0.0.1",
            "--port",
            str(s.runtime_port),
        ]
        if s.insecure:
            cmd.append("--insecure")
        elif s.root_certificates:
            cmd += ["--root-certificates", str(s.root_certificates)]
        if s.auth_private_key:  # flwr >= 1.41 derives the public half (the flag is deprecated)
            cmd += ["--auth-supernode-private-key", str(s.auth_private_key)]
        cmd += ["--node-config", node_config_arg(self.node_config)]
        return cmd

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._supervise, name="supernode", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._terminate(timeout)
        if self._thread:
            self._thread.join(timeout)
        self.state = "stopped"

    def info(self) -> Supernode:
        return Supernode(self.state, self.node_id, self.restarts, self.last_exit, self.last_error)

    def _terminate(self, timeout: float) -> None:
        procs.stop(self._proc, timeout)

    def _supervise(self) -> None:
        if self.cpus:  # the processes this thread starts inherit its CPUs
            agent_cpus.pin_thread(self.cpus, "flower-supernode")
        backoff = procs.Backoff(self.settings.restart_min_s, self.settings.restart_max_s)
        while not self._stop.is_set():
            started = self.clock()
            self._run_once()
            if self._stop.is_set():
                break
            if self.clock() - started >= STABLE_S:
                backoff.reset()
            delay = backoff.next()
            self.state = "failed" if self._refused else "backoff"
            self.restarts += 1
            self.on_event(
                "supernode_exit",
                {"rc": self.last_exit, "restart_in_s": delay, "reason": self._refused},
            )
            logger.warning(
                "flower-supernode exited (rc %s); restart in %.1f s", self.last_exit, delay
            )
            if self._stop.wait(delay):
                break

    def _run_once(self) -> None:
        self.state, self.node_id, self._refused = "starting", None, None
        log_path = self.home / "supernode.log"
        try:
            proc = subprocess.Popen(
                self.command(),
                env=flower_env(self.home),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,  # its SuperExec and ClientApps share this group
            )
        except OSError as exc:
            logger.error("cannot start flower-supernode: %s", exc)
            self.last_exit = None
            return
        self._proc = proc
        # Its SuperExec and the ClientApp it starts per message inherit this: they must not
        # compete with inference (measured: p99 4.4x idle at normal priority, while they start).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, FLOWER_NICE)
        assert proc.stdout is not None
        reader = threading.Thread(
            target=self._follow, args=(proc.stdout, log_path), name="supernode-log", daemon=True
        )
        reader.start()
        # Its children inherit the pipe, so end-of-file can come long after the node died:
        # the process exit is what counts. Leftovers of its group go with it.
        self.last_exit = proc.wait()
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5.0)

    def _follow(self, stream: IO[str], log_path: Path) -> None:
        with log_path.open("a", encoding="utf-8") as log:
            for line in stream:
                log.write(line)
                log.flush()
                self._line(line)

    def _line(self, line: str) -> None:
        match = _NODE_ID.search(line)
        if match:
            self.node_id = int(match.group(1))
            self.state, self.last_error = "connected", None
            self.on_event("supernode_connected", {"node_id": self.node_id})
        elif "Connection successful" in line:
            self.state, self.last_error = "connected", None
        elif (refusal := refusal_in(line)) is not None:
            self._refused = refusal
            if refusal != self.last_error:
                logger.warning(
                    "the SuperLink %s refused this SuperNode: %s", self.settings.superlink, refusal
                )
            self.last_error = refusal
        elif "Connection attempt failed" in line and not self._refused:
            # Flower's own retry loop: the process lives on, but the SuperLink is unreachable
            # until "Connection successful" (logged after any retried attempt). After a
            # refusal these come from its SuperExec, which outlives it briefly: still failed.
            self.state = "backoff"
        elif any(marker in line for marker in _RESTART_ON):
            logger.warning("flower-supernode is stuck (%s): restarting it", line.strip())
            threading.Thread(target=self._terminate, args=(10.0,), daemon=True).start()
