"""Signed configuration commands, taken on ``<base>/command`` and answered on ``<base>/ack``.

    remote = RemoteConfig(cfg, files=RemoteFiles(cfg.state_dir), auth=auth, live=LiveParts(...),
                          send=runner_ack, restart=runner_restart, health=runner_health)
    reporter.subscribe(reporter.topics.command, remote.on_message)
    remote.start()
    ...READY=1...
    remote.ready()                 # a change on trial may now be judged
    remote.stop()

The MQTT callback only keeps the newest payload; one worker thread decides. In this order a
command is ``refused`` (nothing written): not JSON of the contract (if its ``seq`` can be
read; else an ``event``), another device's, unsigned or not signed by the fleet, expired on the
board's clock, not newer than the last one acted on (a replay; the retained command delivered
again after a reconnect is ignored without an ack), or touching a key that never changes
remotely. A wrong key or value is ``rejected`` with every error of the validator. Otherwise the
new overlay is written (agent/remote/state.py) and the change is either taken live (``applied``,
``live=true``) or the agent acks ``restarting`` and exits with 75 for systemd to start it again;
the next start is a trial (agent/remote/trial.py) that ends in ``applied`` (``live=false``) or
``rolled_back``. While a change is on trial, newer commands wait.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.config import AgentSettings
from agent.errors import AgentError, InvalidConfig
from agent.health.codec import MAX_ITEMS, MAX_STR, SchemaError
from agent.health.schema import Ack, AckStatus
from agent.overlay import Overlay, OverlayError
from agent.overlay import read as read_overlay
from agent.remote import live
from agent.remote.auth import CommandAuth, SignerUnavailable
from agent.remote.command import Command
from agent.remote.live import LiveParts
from agent.remote.patch import Candidate, Refused, Rejected, build
from agent.remote.state import Pending, RemoteFiles
from agent.software.updates import SoftwareUpdates

logger = logging.getLogger(__name__)

RETRY_SIGNER_S = 30.0  # a signer certificate that could not be fetched is tried again
FLUSH_S = 5.0  # how long the ack of a restart may take to leave before the agent stops
POLL_S = 0.2
UPDATE_POLL_S = 1.0


class UpdateInProgress(Exception):
    """An update command came while the root updater works on another: it waits for it."""


AckSink = Callable[[Ack], None]
EventSink = Callable[[str, dict[str, Any]], None]
# Why the agent is not healthy (None: healthy); the argument says whether the MQTT link counts.
HealthCheck = Callable[[bool], str | None]


class RemoteConfig:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        files: RemoteFiles,
        auth: CommandAuth,
        live: LiveParts,
        send: AckSink,
        restart: Callable[[str], None],
        health: HealthCheck,
        on_event: EventSink = lambda kind, data: None,
        flushed: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
        updates: SoftwareUpdates | None = None,
    ) -> None:
        self.settings = settings
        self.updates = updates  # None: this agent takes no software updates
        self.source = Path(settings.source)  # the provisioned agent.toml
        self.files = files
        self.auth = auth
        self.live = live
        self.send = send
        self.restart = restart
        self.health = health
        self.on_event = on_event
        self.flushed = flushed
        self.clock = clock
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._latest: bytes | None = None
        self._retry_at: float | None = None
        self._answered: set[str] = set()  # payload digests answered by this process
        self._retrying: set[str] = set()  # ... told that the signer could not be fetched yet
        self._thread: threading.Thread | None = None
        self._trial: Pending | None = None

    # -- public API ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="remote-config", daemon=True)
        self._thread.start()

    def ready(self) -> None:
        """The agent has started (READY sent, serving): a change on trial may be judged."""
        self._ready.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def on_message(self, topic: str, payload: bytes) -> None:
        """The MQTT callback: keep the newest payload for the worker; never blocks or raises."""
        if not payload:  # the retained command was cleared
            return
        with self._lock:
            self._latest = bytes(payload)
            self._retry_at = None
        self._wake.set()

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._resume()
        except Exception:
            logger.exception("remote config: the change on trial could not be resumed")
        while not self._stop.is_set():
            try:
                self._update_outcome()
                if self._trial is not None:
                    self._judge(self._trial)
                else:
                    payload = self._take()
                    if payload is not None:
                        self.handle(payload)
            except Exception:  # a bad command never takes the agent down
                logger.exception("remote config: command handling failed")
            self._wake.wait(POLL_S if self._trial is not None else self._idle())
            self._wake.clear()

    def _take(self) -> bytes | None:
        with self._lock:
            if self._retry_at is not None and time.monotonic() < self._retry_at:
                return None
            payload, self._latest, self._retry_at = self._latest, None, None
            return payload

    def _idle(self) -> float | None:
        """How long to wait for news: none when a command waits (it came during a trial)."""
        with self._lock:
            if self._latest is None:
                if self.updates is not None and self.updates.in_flight:
                    return UPDATE_POLL_S  # the root updater writes its outcome to a file
                return None
            retry = self._retry_at
        return 0.0 if retry is None else max(0.0, retry - time.monotonic())

    # -- one command -----------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        """Decide on one command payload and answer it (at most once per process)."""
        digest = hashlib.sha256(payload).hexdigest()
        if digest in self._answered:
            return
        try:
            command = Command.from_json(payload)
        except SchemaError as exc:
            self._answered.add(digest)
            seq = _peek_seq(payload)
            logger.warning("remote command refused: %s", exc)
            if seq is not None:
                self._ack(seq, "refused", errors=(str(exc),))
            else:  # nothing to answer to: say it on the event topic
                self.on_event("remote_config", {"status": "refused", "reason": str(exc)})
            return
        last_seq, last_digest = self.files.last()
        if command.seq == last_seq and digest == last_digest:
            logger.debug("remote command %d already acted on", command.seq)
            self._answered.add(digest)
            return
        try:
            self._decide(command, digest, last_seq)
        except SignerUnavailable as exc:
            logger.warning("remote command %d: %s; retry in %g s", command.seq, exc, RETRY_SIGNER_S)
            if self._first_try(digest):  # said once, not at every try
                self._ack(command.seq, "refused", errors=(f"{exc} (retrying)",))
            self._try_again(command, payload, RETRY_SIGNER_S)
            return
        except UpdateInProgress as exc:  # answered once the running update is done
            if self._first_try(digest):
                logger.info("remote command %d waits: %s", command.seq, exc)
            self._try_again(command, payload, UPDATE_POLL_S)
            return
        except Refused as exc:
            logger.warning("remote command %d refused: %s", command.seq, exc)
            self._ack(command.seq, "refused", errors=(str(exc),))
        except Rejected as exc:
            logger.warning("remote command %d rejected: %s", command.seq, exc)
            self._ack(command.seq, "rejected", errors=tuple(exc.errors))
        self._answered.add(digest)

    def _first_try(self, digest: str) -> bool:
        first = digest not in self._retrying
        self._retrying.add(digest)
        return first

    def _try_again(self, command: Command, payload: bytes, after_s: float) -> None:
        """Handle ``payload`` again in ``after_s``, unless a newer command came or it expired."""
        with self._lock:
            if self._latest is None and command.expires > self.clock():
                self._latest, self._retry_at = payload, time.monotonic() + after_s

    def _decide(self, command: Command, digest: str, last_seq: int) -> None:
        device = self.settings.device_id
        if command.device_id != device:
            raise Refused(
                f"command.device_id: expected {device!r}. Received: device_id={command.device_id!r}"
            )
        now = self.clock()
        self.auth.check(command, now)
        if command.expires < now:
            raise Refused(
                f"command.expires: expected a time after the board's clock ({_iso(now)}). "
                f"Received: expires={_iso(command.expires)} (expired)"
            )
        if command.seq <= last_seq:
            raise Refused(
                f"command.seq: expected more than {last_seq}, the last command acted on. "
                f"Received: seq={command.seq} (replayed or stale)"
            )
        if command.kind == "update":
            self._update(command, digest)
            return
        base, current = self._base(), self._current_overlay()
        candidate = build(base, current, command.patch, source=f"command {command.seq}")
        restart = live.restart_keys(candidate.changed)
        settings = candidate.settings
        self.files.keep_last_good()
        if restart:
            self.files.write_pending(_pending(command.seq, candidate, now))
            self.files.write_overlay(candidate.overlay)
            self.files.record(command.seq, digest)
            self._ack(command.seq, "restarting")  # with the version that runs until then
            self._restart(f"remote config {command.seq} changes {', '.join(restart)}")
            return
        self.files.write_overlay(candidate.overlay)
        self.files.record(command.seq, digest)
        try:
            self.live.apply(settings, candidate.changed)
        except Exception as exc:  # take it by a restart instead, on trial like any other
            logger.exception("remote config %d: live update failed", command.seq)
            self.files.write_pending(_pending(command.seq, candidate, now))
            self._ack(command.seq, "restarting")
            self._restart(f"remote config {command.seq}: live update failed ({exc})")
            return
        self.settings = replace(settings, source=str(self.source))
        logger.info(
            "remote config %d applied live: %s (config %s)",
            command.seq,
            ", ".join(candidate.changed) or "no change",
            candidate.config_version,
        )
        self._ack(command.seq, "applied", version=candidate.config_version, is_live=True)

    # -- software updates --------------------------------------------------------------------

    def _update(self, command: Command, digest: str) -> None:
        """Stage the release and hand it to the root updater (agent/software/)."""
        updates, ref = self.updates, command.update
        if updates is None:
            raise Refused(
                "command.kind: expected config (this agent was not installed by orchard-provision: "
                "no updater). Received: kind='update'"
            )
        assert ref is not None  # Command.validate
        if updates.installing:  # staging now would take the root updater's files from it
            raise UpdateInProgress(f"the updater is installing {updates.installing}")
        self.files.record(command.seq, digest)
        running = updates.running_version
        if ref.version == running:
            self._ack(command.seq, "applied", agent_version=running)
            return
        signer_pem = self.auth.signer_pem(command)
        try:
            updates.begin(command.seq, ref, signer_pem)
        except (AgentError, OSError) as exc:  # StageError, or the disk (full while copying)
            logger.warning("update %d to %s rejected: %s", command.seq, ref.version, exc)
            self._ack(command.seq, "rejected", errors=(str(exc),), agent_version=running)
            return
        logger.info("update %d: release %s staged for the updater", command.seq, ref.version)
        self._ack(command.seq, "updating", agent_version=running)

    def _update_outcome(self) -> None:
        if self.updates is None:
            return
        result = self.updates.take_result()
        if result is None:
            return
        self._ack(
            result.seq,
            result.outcome,
            errors=(result.reason,) if result.reason else (),
            agent_version=result.running,
        )
        self.on_event(
            "software_update",
            {
                "seq": result.seq,
                "version": result.version,
                "outcome": result.outcome,
                "running": result.running,
                **{k: v for k, v in result.timings.items()},
            },
        )

    def _base(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise Rejected([str(InvalidConfig(str(self.source), [str(exc)]))]) from None

    def _current_overlay(self) -> Overlay | None:
        try:
            return read_overlay(self.files.overlay)
        except OverlayError as exc:  # it was skipped at load as well: start from the file
            logger.warning("remote overlay unreadable, replaced by this change: %s", exc)
            return None

    # -- a change on trial -----------------------------------------------------------------

    def _resume(self) -> None:
        """At start: report a rollback made before the config loaded, or begin judging."""
        pending = self.files.read_pending()
        if pending is None:
            return
        if pending.outcome == "rolled_back":
            self._ack(pending.seq, "rolled_back", errors=(pending.reason or "",))
            self.files.clear_pending()
            return
        if pending.config_version != self.settings.config_version:
            skipped = "; ".join(self.settings.overlay.skipped) or "another config loaded"
            self._roll_back(pending, f"the new config did not load: {skipped}")
            return
        self._trial = pending

    def _judge(self, pending: Pending) -> None:
        if not self._ready.is_set():
            why: str | None = "the agent has not started"
        else:
            why = self.health(pending.need_broker)
        if why is None:
            self.files.clear_pending()
            self._trial = None
            logger.info("remote config %d kept: the agent is healthy with it", pending.seq)
            self._ack(pending.seq, "applied", version=self.settings.config_version)
            return
        if time.monotonic() - self.started > pending.healthy_within_s:
            self._roll_back(pending, f"not healthy within {pending.healthy_within_s:g} s: {why}")

    def _roll_back(self, pending: Pending, reason: str) -> None:
        """Put the last good overlay back and restart with it; the next start sends the ack."""
        logger.warning("remote config %d: %s; back to the last good config", pending.seq, reason)
        self._trial = None
        self.files.restore_last_good()
        self.files.write_pending(replace(pending, outcome="rolled_back", reason=reason))
        self._stop.set()
        self.restart(f"remote config {pending.seq} rolled back")

    # -- acks ------------------------------------------------------------------------------

    def _restart(self, reason: str) -> None:
        """Let the ack leave (bounded), then stop taking commands and have the agent restart."""
        deadline = time.monotonic() + FLUSH_S
        while not self.flushed() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.05)
        self._stop.set()
        self.restart(reason)

    def _ack(
        self,
        seq: int,
        status: AckStatus,
        *,
        version: str | None = None,
        is_live: bool = False,
        errors: tuple[str, ...] = (),
        agent_version: str | None = None,
    ) -> None:
        ack = Ack(
            seq=seq,
            ts=self.clock(),
            status=status,
            config_version=version or self.settings.config_version or None,
            live=is_live,
            errors=tuple(_short(e) for e in errors[:MAX_ITEMS]),
            agent_version=agent_version,
        )
        try:
            self.send(ack)
        except Exception:
            logger.exception("remote config: the ack could not be queued")


def _pending(seq: int, candidate: Candidate, now: float) -> Pending:
    """The trial of ``candidate``, with the ``[remote]`` settings it brings."""
    remote = candidate.settings.remote
    return Pending(
        seq=seq,
        config_version=candidate.config_version,
        keys=candidate.changed,
        need_broker=live.needs_broker(candidate.changed),
        healthy_within_s=remote.healthy_within_s,
        trial_starts=remote.trial_starts,
        written=now,
    )


def _peek_seq(payload: bytes) -> int | None:
    """The ``seq`` of a command that failed validation, when it has a readable one."""
    try:
        seq = json.loads(payload).get("seq")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


def _short(text: str) -> str:
    """At most the schema's string length: the start (key, expectation) and the end (value)."""
    if len(text) <= MAX_STR:
        return text
    head = MAX_STR // 2
    return text[:head] + "…" + text[-(MAX_STR - head - 1) :]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
