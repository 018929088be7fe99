"""The updater's edges on a real board: systemctl, the agent's ``/healthz``, the golden check.

:func:`updater_for` builds an :class:`~agent.software.apply.Updater` from ``agent.toml``.
"""

from __future__ import annotations

import json
import logging
import pwd
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent.config import AgentSettings
from agent.errors import AgentError
from agent.slots import VERIFY_MEMORY_MB
from agent.software.apply import Budget, GoldenCheck, HealthProbe, Updater
from agent.software.files import UpdateFiles
from agent.software.layout import BASE, VenvLayout

logger = logging.getLogger(__name__)

STAMP = ".installed"  # the first-boot installer's record of what it installed (requirement first)
DEFAULT_REQUIREMENT = "orchard-fl[agent]"
_POLL_S = 0.5


class Systemctl:
    def restart(self, unit: str, timeout_s: float) -> None:
        # Starts the update causes must not count against StartLimitBurst: a broken release's
        # failed start followed by the switch back would otherwise leave the unit refusing.
        try:
            self._run(["systemctl", "reset-failed", unit], 60.0)
        except AgentError as exc:
            logger.debug("reset-failed %s: %s", unit, exc)
        self._run(["systemctl", "restart", unit], timeout_s)

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
            time.sleep(_POLL_S)  # polling a remote endpoint, bounded by the deadline
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
        services=Systemctl(),
        probe=healthz_probe(url),
        golden=golden_check(settings),
        owner=owner,
        budget=Budget(healthy_within_s=max(60.0, settings.remote.healthy_within_s * 3)),
    )
