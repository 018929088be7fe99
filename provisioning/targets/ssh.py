"""``ssh``: apply the plan to a running board over OpenSSH.

One round trip reads the board's state; only changed entries travel (as a tar on stdin);
then the installer runs, systemd reloads and the agent restarts. A second run finds nothing
to change, runs nothing and says so. The transport is injectable (:class:`Transport`).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioning import paths, tree
from provisioning.errors import TargetError
from provisioning.plan import Plan

logger = logging.getLogger(__name__)

_STATE_SCRIPT = r"""R=%s
while IFS= read -r p; do
  if [ -L "$R$p" ]; then printf '%%s\tL %%s\n' "$p" "$(readlink "$R$p")"
  elif [ -f "$R$p" ]; then
    printf '%%s\tF %%s %%s\n' "$p" "$(stat -c %%a "$R$p")" "$(sha256sum < "$R$p" | cut -d' ' -f1)"
  else printf '%%s\tM\n' "$p"; fi
done
"""


@dataclass(frozen=True)
class Result:
    code: int
    stdout: bytes
    stderr: bytes


class Transport(Protocol):
    def run(self, command: str, stdin: bytes = b"", timeout: float = 600.0) -> Result:
        """Run a shell command on the board."""
        ...


class OpenSshTransport:
    """The system ``ssh`` client in batch mode (keys or an agent; never a password prompt)."""

    def __init__(self, destination: str, port: int | None = None, options: Sequence[str] = ()):
        self.destination = destination
        self.argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if port is not None:
            self.argv += ["-p", str(port)]
        self.argv += list(options)

    def run(self, command: str, stdin: bytes = b"", timeout: float = 600.0) -> Result:
        argv = [*self.argv, self.destination, "--", command]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"ssh {self.destination}: {exc}") from exc
        if done.returncode == 255:
            raise TargetError(
                f"ssh {self.destination}: cannot connect: {done.stderr.decode(errors='replace')}"
            )
        return Result(done.returncode, done.stdout, done.stderr)


class SshTarget:
    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        transport: Transport | None = None,
        root: str = "/",
        sudo: bool | None = None,
        live: bool | None = None,
        ssh_options: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.transport = transport or OpenSshTransport(host, port, ssh_options)
        self.root = root.rstrip("/")
        user = host.split("@", 1)[0] if "@" in host else None
        self.sudo = sudo if sudo is not None else user not in (None, "root")
        self.live = live if live is not None else self.root == ""

    def _run(self, command: str, stdin: bytes = b"", what: str = "") -> str:
        full = f"sudo -n sh -c {shlex.quote(command)}" if self.sudo else command
        result = self.transport.run(full, stdin)
        if result.code != 0:
            raise TargetError(
                f"{self.host}: {what or command} failed (exit {result.code}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode(errors="replace")

    def state(self, entries: list[str]) -> dict[str, str]:
        script = _STATE_SCRIPT % shlex.quote(self.root)
        out = self._run(script, ("\n".join(entries) + "\n").encode(), "reading the board's state")
        state = {}
        for line in out.splitlines():
            path, _, value = line.partition("\t")
            state[path] = value
        return state

    def apply(self, plan: Plan) -> tree.ApplyReport:
        want = tree.expected_state(plan)
        changed = tree.changed_entries(plan, self.state(list(want)))
        report = tree.ApplyReport(f"ssh {self.host}", changed, len(want) - len(changed))
        if not changed:
            return report
        root = shlex.quote(self.root or "/")
        self._run(f"tar -xpf - -C {root} --no-same-owner", tree.tar_tree(plan, changed), "upload")
        env = f"ORCHARD_ROOT={root} " if self.root else ""
        installer = shlex.quote(self.root + paths.INSTALLER)
        out = self._run(f"{env}sh {installer}", what="the installer")
        report.actions.append(f"{paths.INSTALLER}: {out.strip()}")
        if self.live:
            for command in (
                "systemctl daemon-reload",
                f"systemctl restart {paths.AGENT_UNIT}",
                f"systemctl start {paths.TRAINER_SOCKET}",
            ):
                self._run(command)
                report.actions.append(command)
        logger.info("ssh %s: %d entries changed", self.host, len(changed))
        return report
