"""Bring the serving model to the desired state (docs/architecture.md, Model delivery).

The coordinator publishes a retained :class:`~agent.delivery.desired.Desired` on the device's
``<base>/desired`` topic; the health reporter's MQTT connection receives it on every connect, so
a board that was offline gets it when it returns. This service:

1. takes the newest message (a lower ``seq`` than one already taken is stale and ignored);
2. if the desired version already serves (same version and model digest), does nothing;
3. otherwise stages the bundle under ``<models.dir>/.delivery/``: from the inactive slot when it
   holds exactly the desired files (a rollback costs no download), else fetched over HTTP(S)
   and checked against the sizes and digests the message names;
4. checks the signature when the message is signed, and refuses an unsigned one when
   ``[models] require_signed`` (a board provisioned with an identity);
5. installs it through :class:`~agent.slots.ModelSlots` (verifier child, golden inputs, atomic
   swap): whatever fails, the old model keeps serving.

A failure is reported (``Health.delivery``, an ``event`` of kind ``delivery``) and retried with
backoff (``retry_min_s`` doubling to ``retry_max_s``) until it works or the desired state
changes. One worker thread does all of this; the MQTT callback only hands the message over.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.config import ModelSettings
from agent.delivery.desired import Artifact, Desired
from agent.delivery.fetch import Fetcher
from agent.errors import DeliveryError, ModelSlotError
from agent.health.codec import SchemaError
from agent.health.schema import Delivery, DeliveryState
from agent.slots import SLOTS, ModelSlots
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from orchard_common.procs import Backoff

logger = logging.getLogger(__name__)

STAGING_DIR = ".delivery"
SIGNER_FILE = "signer.pem"
EventSink = Callable[[str, dict[str, Any]], None]
# Checks ``artifact``'s signature with the signer certificate fetched beside it; raises
# DeliveryError(refused=True) when it does not hold.
SignatureCheck = Callable[[Artifact, bytes], None]
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass
class _Job:
    desired: Desired
    attempts: int = 0
    next_try: float = 0.0
    done: bool = False


class DeliveryService:
    def __init__(
        self,
        settings: ModelSettings,
        slots: ModelSlots,
        *,
        device_id: str,
        fetcher: Fetcher,
        check_signature: SignatureCheck | None = None,
        on_event: EventSink | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.device_id = device_id
        self.fetcher = fetcher
        self.check_signature = check_signature
        self.on_event = on_event
        self.monotonic = monotonic
        self.staging = settings.dir / STAGING_DIR
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._job: _Job | None = None
        self._seq = -1
        self._state = Delivery()
        self._backoff = Backoff(settings.retry_min_s, settings.retry_max_s)

    # -- public API ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def section(self) -> Delivery:
        """The ``delivery`` section of health."""
        with self._lock:
            return self._state

    def on_message(self, topic: str, payload: bytes) -> None:
        """The MQTT callback: validate and hand over; never raises, never blocks."""
        if not payload:  # the retained message was cleared: nothing is desired any more
            return
        try:
            desired = Desired.from_json(payload)
            if desired.device_id != self.device_id:
                raise SchemaError("desired.device_id", desired.device_id, repr(self.device_id))
        except SchemaError as exc:
            logger.warning("refused the desired state on %s: %s", topic, exc)
            self._emit("refused", None, str(exc))
            return
        with self._lock:
            if desired.seq < self._seq:
                logger.info("ignored a stale desired state (seq %d < %d)", desired.seq, self._seq)
                return
            same = self._job is not None and self._job.desired == desired
            self._seq = desired.seq
            if not same:
                self._job = _Job(desired)
                self._backoff.reset()
                version = desired.model.version if desired.model else None
                self._state = Delivery(desired=version, state="idle", rollout=desired.rollout)
        self._wake.set()

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                job = self._job
            timeout = None
            if job is not None and not job.done:
                wait = job.next_try - self.monotonic()
                if wait <= 0:
                    self._attempt(job)
                    continue
                timeout = wait
            self._wake.wait(timeout)
            self._wake.clear()

    def _attempt(self, job: _Job) -> None:
        model = job.desired.model
        if model is None or self._serving(model):
            self._finish(job, "installed" if model else "idle", None)
            return
        job.attempts += 1
        last_error = self.section().last_error  # kept until this try ends: why the last failed
        self._set(job, "fetching", last_error)
        try:
            bundle = self._stage(model)
            self._set(job, "verifying", last_error)
            self.slots.install(bundle)
        except (DeliveryError, ModelSlotError) as exc:
            refused = isinstance(exc, ModelSlotError) or exc.refused
            self._retry(job, "refused" if refused else "failed", str(exc))
            return
        except Exception as exc:  # a bug or the disk: report it, keep serving, retry later
            logger.exception("delivery of %s failed", model.version)
            self._retry(job, "failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._finish(job, "installed", None)
        self._emit("installed", model.version, None, attempts=job.attempts)

    def _serving(self, model: Artifact) -> bool:
        predictor = self.slots.current()
        return (
            predictor is not None
            and predictor.manifest.version == model.version
            and predictor.manifest.sha256 == model.sha256
        )

    def _stage(self, model: Artifact) -> Path:
        """A complete, checked bundle directory for ``model``; ``DeliveryError`` otherwise."""
        shutil.rmtree(self.staging, ignore_errors=True)
        bundle = self.staging / _SAFE.sub("_", model.version)
        bundle.mkdir(parents=True)
        local = self._from_inactive_slot(model)
        if local is not None:
            shutil.copyfile(local / MANIFEST_FILE, bundle / MANIFEST_FILE)
            shutil.copyfile(local / MODEL_FILE, bundle / MODEL_FILE)
            logger.info("model %s taken from %s (no download)", model.version, local.name)
        else:
            self._fetch(model, MANIFEST_FILE, bundle, model.manifest_size, model.manifest_sha256)
            self._fetch(model, MODEL_FILE, bundle, model.size, model.sha256)
        if model.signed:
            self._fetch(model, SIGNER_FILE, self.staging, None, None)
            if self.check_signature is None:
                raise DeliveryError(
                    f"model {model.version} is signed but [models] trust_ca is not set: "
                    "expected the fleet CA to check the signature with",
                    refused=True,
                )
            self.check_signature(model, (self.staging / SIGNER_FILE).read_bytes())
        elif self.settings.require_signed:
            raise DeliveryError(
                f"model {model.version}: expected a signed delivery ([models] require_signed). "
                "Received: no signature",
                refused=True,
            )
        manifest = Manifest.load(bundle / MANIFEST_FILE)
        if manifest.version != model.version or manifest.sha256 != model.sha256:
            raise DeliveryError(
                f"expected the manifest of {model.version} (model sha256 {model.sha256}). "
                f"Received: version={manifest.version!r}, sha256={manifest.sha256}",
                refused=True,
            )
        if manifest.file != MODEL_FILE:
            raise DeliveryError(
                f"expected the manifest of {model.version} to name {MODEL_FILE}. "
                f"Received: file={manifest.file!r}",
                refused=True,
            )
        return bundle

    def _from_inactive_slot(self, model: Artifact) -> Path | None:
        for slot in SLOTS:
            path = self.settings.dir / slot
            try:
                if _sha256(path / MANIFEST_FILE) == model.manifest_sha256 and (
                    _sha256(path / MODEL_FILE) == model.sha256
                ):
                    return path
            except OSError:
                continue
        return None

    def _fetch(
        self, model: Artifact, name: str, into: Path, size: int | None, sha: str | None
    ) -> None:
        self.fetcher.fetch(f"{model.url.rstrip('/')}/{name}", into / name, size=size, sha256=sha)

    # -- state -----------------------------------------------------------------------------

    def _set(self, job: _Job, state: DeliveryState, error: str | None) -> None:
        with self._lock:
            if self._job is job:
                self._state = replace(
                    self._state,
                    state=state,
                    attempts=job.attempts,
                    last_error=error,
                )

    def _finish(self, job: _Job, state: DeliveryState, error: str | None) -> None:
        job.done = True
        self._backoff.reset()
        self._set(job, state, error)

    def _retry(self, job: _Job, state: DeliveryState, reason: str) -> None:
        delay = self._backoff.next()
        job.next_try = self.monotonic() + delay
        model = job.desired.model
        version = model.version if model else None
        logger.warning("delivery of %s %s (retry in %.1f s): %s", version, state, delay, reason)
        self._set(job, state, reason)
        self._emit(state, version, reason, attempts=job.attempts, retry_s=round(delay, 1))

    def _emit(self, outcome: str, version: str | None, reason: str | None, **extra: Any) -> None:
        if self.on_event is not None:
            data: dict[str, Any] = {"outcome": outcome, "version": version, **extra}
            if reason is not None:
                data["reason"] = reason
            self.on_event("delivery", data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()
