"""The root updater: install a staged release beside the running one, switch, judge, keep or undo.

Run by ``orchard-update.service`` (root, started by ``orchard-update.path`` when the agent writes
``<state_dir>/update/request.json``) as ``orchard-agent software apply``, from the environment
that runs. For one request, in this order (agent/software/layout.py has the files):

1. the staged manifest is verified against ``[models] trust_ca`` (signature, version, Python),
   the wheels it lists are copied into ``/opt/orchard/.wheels`` (root only) and checked there
   (size, sha256), so nothing the agent's user could change afterwards gets installed;
2. the inactive environment is removed, the free space checked (about three times the wheels),
   and the release installed there offline (``python -m venv``, ``pip install --no-index``);
   the new ``orchard-agent version`` must run and name the release (a wheel that fails to
   import stops here: the link was never touched);
3. everything is synced to disk, the journal says ``switched``, the link is renamed onto the
   new environment, the trainer stopped (its socket starts the new one) and the agent
   restarted through systemd (Type=notify: ``systemctl restart`` returns at READY);
4. the new agent must answer ``/healthz`` ready within ``healthy_within_s`` and the installed
   model must pass its golden inputs under the new runtime (``python -m agent.verify_child`` of
   the new environment); then the journal says ``committed``;
5. otherwise the link goes back, the journal says ``rolled_back`` with the reason, and the old
   agent is restarted.

The outcome goes to ``result.json`` for the agent to ack (``applied``, ``rolled_back`` or
``rejected``); the request is removed. A power cut anywhere leaves the link on a complete
environment; ``orchard-agent software recover`` (``orchard-update-recover.service``, at boot,
before the agent) puts it back on the old one when the journal says the new one was not
confirmed, and reports that.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from agent.errors import AgentError
from agent.handover import TIMEOUT_S as HANDOVER_TIMEOUT_S
from agent.software.files import (
    Outcome,
    UpdateFiles,
    UpdateRequest,
    UpdateResult,
    open_regular,
)
from agent.software.layout import Journal, VenvLayout
from agent.software.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ReleaseRefused,
    SoftwareManifest,
    check_release,
    check_wheels,
)

logger = logging.getLogger(__name__)

SIGNER_FILE = "signer.pem"
AGENT_UNIT = "orchard-agent.service"
TRAINER_UNIT = "orchard-trainer.service"
SPACE_FACTOR = 3  # installed size is about this many times the wheels (measured: 2.4 to 2.9)
SPACE_MARGIN = 64 << 20
INSTALL_TIMEOUT_S = 1800.0
SMOKE_TIMEOUT_S = 300.0
_TAIL = 600


class Rejected(AgentError):
    """The release is not installed (the link was never touched): why, for the ack."""


class ServiceManager(Protocol):
    def restart(self, unit: str, timeout_s: float) -> None:
        """Restart ``unit`` and return once it is started; raise :class:`AgentError` if not."""

    def handover(self, unit: str, timeout_s: float) -> None:
        """Have ``unit``'s agent hand over to a new one (agent/handover.py) and return once the
        new one is the main process; raise :class:`AgentError` (the old one still serves)."""

    def stop(self, unit: str, timeout_s: float) -> None: ...


# Why the agent is not healthy (None: healthy), given how long it may take.
HealthProbe = Callable[[float], str | None]
# Why the installed model fails its golden inputs under an environment (None: passes).
GoldenCheck = Callable[[Path], str | None]


@dataclass(frozen=True)
class Budget:
    healthy_within_s: float = 180.0
    # Longer than the successor is given to serve (its clock starts later) plus the old
    # agent's stop: else a successor serving at the last moment is taken for one that did not
    # start, and the link goes back under a new release that runs. TimeoutStartSec bounds it.
    restart_timeout_s: float = HANDOVER_TIMEOUT_S + 120.0
    install_timeout_s: float = INSTALL_TIMEOUT_S


class Updater:
    def __init__(
        self,
        layout: VenvLayout,
        files: UpdateFiles,
        *,
        trust_ca: Path | None,
        requirement: str,
        services: ServiceManager,
        probe: HealthProbe,
        golden: GoldenCheck,
        owner: tuple[int, int] | None = None,
        python: str | None = None,
        budget: Budget = Budget(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.files = files
        self.trust_ca = trust_ca
        self.requirement = requirement  # e.g. "orchard-fl[agent]": pinned to the release
        self.services = services
        self.probe = probe
        self.golden = golden
        self.owner = owner  # who the result file belongs to (the agent's user)
        self.python: str = python or str(getattr(sys, "_base_executable", sys.executable))
        self.budget = budget
        self.clock = clock
        self._new_serves = False  # the new release's agent took over during this update

    # -- entry points ----------------------------------------------------------------------

    def recover(self, *, restart: bool = False, why: str | None = None) -> UpdateResult | None:
        """Close an update a power cut (or a killed or failed updater) left open; report it."""
        closed = self.layout.repair(why)
        if closed is None:
            return None
        result = UpdateResult(
            seq=closed.seq,
            version=closed.version,
            outcome="rolled_back",
            running=closed.old_version,
            reason=closed.reason,
            ts=self.clock(),
        )
        self._finish(result)  # before the restart: the old agent acks it when it starts
        if restart:
            self._restart_quietly()
        return result

    def apply(self) -> UpdateResult | None:
        """Handle the pending request, if any; return what was written to result.json.

        Whatever happens, the request is gone afterwards and, when it could be read, answered:
        a request left behind would start this unit again and again (``orchard-update.path``)
        until systemd's start limit stops every later update."""
        self.recover(restart=True)
        try:
            request = self.files.read_request()
        except ManifestError as exc:  # its seq is unknown: nothing to answer to
            logger.error("update request unreadable, removed: %s", exc)
            self.files.request.unlink(missing_ok=True)
            return None
        if request is None:
            return None
        journal = self.layout.read_journal()
        if (
            journal is not None
            and (journal.seq, journal.version) == (request.seq, request.version)
            and not journal.unfinished
        ):
            # Done before a power cut kept the request from being removed: report, not redo.
            outcome: Outcome = "applied" if journal.phase == "committed" else "rolled_back"
            running = journal.version if outcome == "applied" else journal.old_version
            result = UpdateResult(
                request.seq, request.version, outcome, running, journal.reason, self.clock()
            )
        else:
            try:
                return self._apply(request)  # it writes the result itself
            except (Rejected, ManifestError) as exc:
                logger.warning("update %d to %s rejected: %s", request.seq, request.version, exc)
                result = self._rejected(request, str(exc))
            except Exception as exc:  # the system (a full disk at the switch) or a defect
                logger.exception("update %d to %s failed", request.seq, request.version)
                why = f"the updater failed: {exc!r}"[:_TAIL]
                closed = self.recover(restart=True, why=why)  # back on the old environment
                if closed is not None:
                    return closed
                result = self._rejected(request, why)
        self._finish(result)
        return result

    def _rejected(self, request: UpdateRequest, why: str) -> UpdateResult:
        return UpdateResult(
            request.seq, request.version, "rejected", request.from_version, why, self.clock()
        )

    # -- one update ------------------------------------------------------------------------

    def _apply(self, request: UpdateRequest) -> UpdateResult:
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        manifest = self._verified(request)
        wheels = self._copy_wheels(manifest, Path(request.staged))
        timings["verify_s"] = round(time.monotonic() - t0, 2)

        old = self.layout.migrate(request.seq, request.from_version)
        new = self.layout.other(old)
        target = self.layout.slot(new)
        self._remove(target)
        self._check_space(manifest)
        journal = self.layout.write_journal(
            Journal(request.seq, manifest.version, "installing", old, new, request.from_version)
        )
        t1 = time.monotonic()
        try:
            self._install(target, wheels, manifest.version)
        except Rejected as exc:
            self._remove(target)
            self.layout.write_journal(replace(journal, phase="rolled_back", reason=str(exc)))
            raise
        timings["install_s"] = round(time.monotonic() - t1, 2)

        os.sync()  # the new environment's files are on disk before the link names it
        journal = self.layout.write_journal(replace(journal, phase="switched"))
        t2 = time.monotonic()
        self.layout.point(new)
        logger.info(
            "update %d: %s now names %s (%s)", request.seq, self.layout.link, new, manifest.version
        )
        why = self._start_and_judge(target)
        timings["switch_to_healthy_s"] = round(time.monotonic() - t2, 2)
        timings["total_s"] = round(time.monotonic() - t0, 2)
        if why is None:
            self.layout.write_journal(replace(journal, phase="committed"))
            shutil.rmtree(wheels, ignore_errors=True)
            logger.info(
                "update %d: %s committed in %.1f s",
                request.seq,
                manifest.version,
                timings["total_s"],
            )
            result = UpdateResult(
                request.seq,
                manifest.version,
                "applied",
                manifest.version,
                None,
                self.clock(),
                timings,
            )
            self._finish(result)
            return result
        logger.warning(
            "update %d to %s: %s; switching back to %s", request.seq, manifest.version, why, old
        )
        self.layout.point(old)
        self.layout.write_journal(replace(journal, phase="rolled_back", reason=why))
        result = UpdateResult(
            request.seq,
            manifest.version,
            "rolled_back",
            request.from_version,
            why,
            self.clock(),
            timings,
        )
        self._finish(result)  # before the switch back: the old agent acks it when it runs
        self._back_to_old()
        return result

    def _verified(self, request: UpdateRequest) -> SoftwareManifest:
        staged = Path(request.staged)
        if staged.is_symlink() or staged.resolve().parent != self.files.dir.resolve():
            raise Rejected(
                f"request.staged: expected a directory in {self.files.dir}. Received: {staged}"
            )
        try:
            manifest = SoftwareManifest.from_json((staged / MANIFEST_FILE).read_bytes())
            signer_pem = b"" if manifest.signature is None else (staged / SIGNER_FILE).read_bytes()
        except OSError as exc:
            raise Rejected(f"staged release {staged}: {exc.strerror}: {exc.filename}") from None
        if manifest.version != request.version:
            raise Rejected(
                f"manifest.version: expected {request.version!r} (the request's). "
                f"Received: version={manifest.version!r}"
            )
        try:
            check_release(manifest, signer_pem, self.trust_ca, self.clock())
        except ReleaseRefused as exc:
            raise Rejected(str(exc)) from None
        return manifest

    def _copy_wheels(self, manifest: SoftwareManifest, staged: Path) -> Path:
        dest = self.layout.base / ".wheels"
        self._remove(dest)
        dest.mkdir(mode=0o700, parents=True)
        for w in manifest.wheels:
            try:
                _copy_regular(staged / w.file, dest / w.file, w.size)
            except Rejected:
                self._remove(dest)
                raise
            except OSError as exc:
                self._remove(dest)
                raise Rejected(
                    f"wheels[{w.file}]: cannot copy {staged / w.file}: {exc.strerror}"
                ) from None
        try:
            check_wheels(manifest, dest)
        except ManifestError:
            self._remove(dest)
            raise
        return dest

    def _check_space(self, manifest: SoftwareManifest) -> None:
        st = os.statvfs(self.layout.base)
        free = st.f_bavail * st.f_frsize
        need = SPACE_FACTOR * manifest.total_bytes + SPACE_MARGIN
        if free < need:
            raise Rejected(
                f"disk: expected {need >> 20} MB free in {self.layout.base} for release "
                f"{manifest.version}. Received: free={free >> 20} MB (the disk is full)"
            )

    def _install(self, target: Path, wheels: Path, version: str) -> None:
        self._run([self.python, "-m", "venv", str(target)], "creating the environment", 300.0)
        pip = [
            str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
            "--no-cache-dir", "--disable-pip-version-check", "--find-links", str(wheels),
            f"{self.requirement}=={version}",
        ]  # fmt: skip
        self._run(pip, "pip install", self.budget.install_timeout_s)
        out = self._run(
            [str(target / "bin" / "orchard-agent"), "version"], "the new version", SMOKE_TIMEOUT_S
        )
        if f"orchard-agent {version} " not in out + " ":
            raise Rejected(
                f"the new version: expected `orchard-agent version` to name {version}. "
                f"Received: {out.strip()[:200]!r}"
            )

    def _run(self, cmd: list[str], what: str, timeout_s: float) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            raise Rejected(f"{what}: did not finish within {timeout_s:g} s") from None
        except OSError as exc:
            raise Rejected(f"{what}: {exc.strerror}: {cmd[0]}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-_TAIL:]
            raise Rejected(f"{what} failed (exit {done.returncode}): {tail}")
        return done.stdout

    def _start_and_judge(self, target: Path) -> str | None:
        self._new_serves = False
        try:
            self.services.stop(TRAINER_UNIT, 60.0)
            self.services.handover(AGENT_UNIT, self.budget.restart_timeout_s)
        except AgentError as exc:
            return f"the new agent did not start: {exc}"
        self._new_serves = True
        why = self.probe(self.budget.healthy_within_s)
        if why is not None:
            return f"the new agent is not healthy: {why}"
        why = self.golden(target)
        if why is not None:
            return f"the installed model fails its golden inputs under the new version: {why}"
        return None

    # -- helpers ---------------------------------------------------------------------------

    def _finish(self, result: UpdateResult) -> None:
        try:
            self.files.write_result(result, owner=self.owner)
        except OSError as exc:  # the coordinator sees a timeout; the journal has the outcome
            logger.error("cannot write the outcome of update %d: %s", result.seq, exc)
        finally:
            self.files.request.unlink(missing_ok=True)
        if result.outcome != "rejected":
            shutil.rmtree(self.layout.base / ".wheels", ignore_errors=True)

    def _back_to_old(self) -> None:
        """The link names the old environment again. If the new agent took over, hand back to
        the old one (or restart when that fails); if it never did, the old one still serves."""
        if not self._new_serves:
            return
        try:
            self.services.stop(TRAINER_UNIT, 60.0)
            self.services.handover(AGENT_UNIT, self.budget.restart_timeout_s)
        except AgentError as exc:
            logger.warning("handing back to the old version failed (%s): restarting", exc)
            self._restart_quietly()

    def _restart_quietly(self) -> None:
        try:
            self.services.stop(TRAINER_UNIT, 60.0)
            self.services.restart(AGENT_UNIT, self.budget.restart_timeout_s)
        except AgentError as exc:
            logger.error("restarting the agent on the old version failed: %s", exc)

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)


def _copy_regular(src: Path, dest: Path, size: int) -> None:
    """Copy ``src``, a regular file the agent's user staged, as root: a link or a device put
    there is refused, not followed, and no more than ``size`` bytes (the manifest's, plus one
    to notice a longer file) are read."""
    try:
        fin = open_regular(src)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Rejected(
                f"wheels[{src.name}]: expected a file. Received: a symbolic link"
            ) from None
        raise
    if fin is None:
        raise Rejected(f"wheels[{src.name}]: expected a regular file. Received: {src}")
    with fin, dest.open("wb") as fout:
        left = size + 1
        while left > 0 and (chunk := fin.read(min(left, 1 << 20))):
            fout.write(chunk)
            left -= len(chunk)
