"""The updater's edges on a real board: systemctl, the agent's ``/healthz``, the golden check.

:func:`updater_for` builds an :class:`~agent.software.apply.Updater` from ``agent.toml``.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent.config import AgentSettings
from agent.errors import AgentError
from agent.handover import FAILED_FILE as HANDOVER_FAILED
from agent.slots import VERIFY_MEMORY_MB
from agent.software.apply import Budget, GoldenCheck, HealthProbe, Updater
from agent.software.files import UpdateFiles, open_regular
from agent.software.layout import BASE, VenvLayout

logger = logging.getLogger(__name__)

STAMP = ".installed"  # the first-boot installer's record of what it installed (requirement first)
DEFAULT_REQUIREMENT = "orchard-fl[agent]"
_POLL_S = 0.25
_PROBE_S = 0.5


class Systemctl:
    def __init__(self, handover_failed: Path | None = None) -> None:
        self.handover_failed = handover_failed  # the agent writes why a handover failed here

    def handover(self, unit: str, timeout_s: float) -> None:
        """``SIGUSR2`` to the agent (agent/handover.py), then until systemd names another main
        process; a stopped agent is started instead."""
        before = self._main_pid(unit)
        if before == 0:
            self.restart(unit, timeout_s)
            return
        if self.handover_failed is not None:
            self.handover_failed.unlink(missing_ok=True)
        self._run(["systemctl", "kill", "--kill-who=main", "--signal=SIGUSR2", unit], 60.0)
        # Cheap looks while the new agent starts (no process per look: on a small board that
        # CPU is the serving agent's): the old agent exits once the new one serves.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(before):
            why = self._handover_failed()
            if why is not None:
                last = self._last_log(unit)
                raise AgentError(f"{why}: {last}" if last else why)
            time.sleep(_POLL_S)  # polling a process's exit, bounded by the deadline
        while time.monotonic() < deadline:
            pid, state = self._main_pid(unit), self._show(unit, "ActiveState")
            if pid not in (0, before) and state == "active":
                logger.info("%s: agent %d took over from %d", unit, pid, before)
                return
            if state == "failed":
                raise AgentError(self._why_failed(unit) or f"{unit} failed")
            time.sleep(_POLL_S)  # polling systemd, bounded by the deadline
        raise AgentError(f"no new agent took over {unit} within {timeout_s:g} s")

    def _handover_failed(self) -> str | None:
        """The agent's note on a failed handover, read as root from a directory the agent's
        user owns: a link or a FIFO put there is not followed, and 512 bytes at most are read."""
        path = self.handover_failed
        if path is None:
            return None
        try:
            f = open_regular(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            why = f"{path}: {exc.strerror}"
        else:
            if f is None:
                why = "not a regular file"
            else:
                with f:
                    why = f.read(512).decode(errors="replace").strip() or "the handover failed"
        path.unlink(missing_ok=True)
        return why

    def _main_pid(self, unit: str) -> int:
        value = self._show(unit, "MainPID")
        return int(value) if value.isdigit() else 0

    @staticmethod
    def _show(unit: str, prop: str) -> str:
        try:
            return subprocess.run(
                ["systemctl", "show", "-p", prop, "--value", unit],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def restart(self, unit: str, timeout_s: float) -> None:
        # Starts the update causes must not count against StartLimitBurst: a broken release's
        # failed start followed by the switch back would otherwise leave the unit refusing.
        try:
            self._run(["systemctl", "reset-failed", unit], 60.0)
        except AgentError as exc:
            logger.debug("reset-failed %s: %s", unit, exc)
        try:
            self._run(["systemctl", "restart", unit], timeout_s)
        except AgentError as exc:
            raise AgentError(self._why_failed(unit) or str(exc)) from None

    def _why_failed(self, unit: str) -> str | None:
        """``exit status 1: <the unit's last log line>``, shorter than systemctl's advice."""
        return f"exit status {self._show(unit, 'ExecMainStatus') or '?'}: {self._last_log(unit)}"

    @staticmethod
    def _last_log(unit: str) -> str:
        """The agent's own last line (its error): not systemd's lines about the unit, nor the
        running agent's note on the failed handover."""
        try:
            log = subprocess.run(
                ["journalctl", "-u", unit, "-n", "15", "-o", "cat", "--no-pager"],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip().splitlines()  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return "no log"
        skip = (unit, "Orchard agent", "handover")
        lines = [line for line in log if not any(s in line for s in skip)]
        return lines[-1][-160:] if lines else "no log"

    def stop(self, unit: str, timeout_s: float) -> None:
        self._run(["systemctl", "stop", unit], timeout_s)

    @staticmethod
    def _run(cmd: list[str], timeout_s: float) -> None:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AgentError(f"`{' '.join(cmd)}` did not return within {timeout_s:g} s") from None
        except OSError as exc:
            raise AgentError(f"`{' '.join(cmd)}`: {exc.strerror}") from None
        if done.returncode != 0:
            raise AgentError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthz_probe(url: str, *, stable_s: float = 5.0) -> HealthProbe:
    """``/healthz`` says ready (and the agent part is there) and still does ``stable_s`` later:
    an agent that crashes right after READY is not taken for a healthy one."""

    def probe(within_s: float) -> str | None:
        deadline = time.monotonic() + within_s
        last = "no answer yet"
        ready_since: float | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5.0) as resp:
                    doc = json.load(resp)
                ok = bool(doc.get("ready")) and doc.get("status") == "ok"
                last = "ready" if ok else f"/healthz says ready={doc.get('ready')}"
            except (OSError, ValueError, urllib.error.URLError) as exc:
                ok, last = False, f"{url}: {getattr(exc, 'reason', exc)}"
            now = time.monotonic()
            if ok:
                ready_since = ready_since or now
                if now - ready_since >= stable_s:
                    return None
            else:
                ready_since = None
            time.sleep(_PROBE_S)  # polling a remote endpoint, bounded by the deadline
        return f"{last} (within {within_s:g} s)"

    return probe


def golden_check(settings: AgentSettings, timeout_s: float = 300.0) -> GoldenCheck:
    """Run the new environment's verifier on the serving model (no model: nothing to check)."""
    root = settings.models.dir

    def check(venv: Path) -> str | None:
        try:
            slot = (root / "ACTIVE").read_text(encoding="utf-8").strip()
        except OSError:
            return None  # no model installed yet
        bundle = root / slot
        cmd = [
            str(venv / "bin" / "python"), "-m", "agent.verify_child", str(bundle),
            "--num-threads", str(settings.models.num_threads),
            "--latency-bound-ms", repr(settings.models.latency_bound_ms * 4),
            "--memory-mb", repr(VERIFY_MEMORY_MB),
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"the verifier did not finish within {timeout_s:g} s"
        lines = done.stdout.strip().splitlines()
        try:
            verdict = json.loads(lines[-1])
        except (IndexError, ValueError):
            return f"the verifier failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
        if not isinstance(verdict, dict):
            return f"the verifier said {lines[-1][:200]!r}, expected a JSON object"
        return None if verdict.get("ok") else str(verdict.get("reason"))

    return check


def requirement(state_dir: Path) -> str:
    """What the installer installed (``orchard-fl[agent]``, ``orchard-fl[agent,train]``)."""
    try:
        first = (state_dir / STAMP).read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return DEFAULT_REQUIREMENT
    return first if first.startswith("orchard-fl") else DEFAULT_REQUIREMENT


def updater_for(settings: AgentSettings, *, base: Path = BASE, user: str = "orchard") -> Updater:
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{settings.http.port}/healthz"
    try:
        pw = pwd.getpwnam(user)
        owner: tuple[int, int] | None = (pw.pw_uid, pw.pw_gid)
    except KeyError:
        owner = None
    return Updater(
        VenvLayout(base),
        UpdateFiles(settings.state_dir),
        trust_ca=settings.models.trust_ca,
        requirement=requirement(settings.state_dir),
        services=Systemctl(settings.state_dir / HANDOVER_FAILED),
        probe=healthz_probe(url),
        golden=golden_check(settings),
        owner=owner,
        budget=Budget(healthy_within_s=max(60.0, settings.remote.healthy_within_s * 3)),
    )
