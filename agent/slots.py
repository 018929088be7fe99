"""The agent's model directory: two slots, an ``ACTIVE`` pointer and an atomic swap.

    root/
      ACTIVE      "slot-a" or "slot-b", replaced atomically (tmp + fsync + rename + dir fsync)
      slot-a/     a complete bundle (model.tflite + manifest.json)
      slot-b/     the other one: the previous model, kept for rollback
      .incoming/  a candidate being copied and verified; removed by ``load()``
      .verifying  which candidate (path, sha256) a verification is running for

``install()`` copies a candidate into ``.incoming``, verifies it there in a child process under a
memory limit and a timeout (size, sha256, tensor shapes, golden samples, a latency bound; see
:mod:`agent.verify_child`), loads it in this process only once the child says it is good, renames
it over the inactive slot and only then rewrites ``ACTIVE``. A refused candidate never touches
either slot, and a process killed at any step leaves ``ACTIVE`` naming a complete slot: the old
model or the new one, never a part.

A process killed while it verifies a candidate (the OOM killer, on a board) leaves ``.verifying``
behind: the next ``install()`` of that same candidate refuses it instead of trying again, so the
runner moves it to ``rejected/`` rather than crash-looping. ``load()`` forgets the marker when the
candidate is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, ModelSlotError
from agent.verify_child import verify_in_child
from models.errors import ModelError, ModelMissingError
from models.manifest import MANIFEST_FILE, Manifest, fsync_dir, write_atomic
from models.runtime import Predictor

logger = logging.getLogger(__name__)

SLOTS = ("slot-a", "slot-b")
ACTIVE_FILE = "ACTIVE"
INCOMING_DIR = ".incoming"
VERIFYING_FILE = ".verifying"
VERIFY_MEMORY_MB = 128.0  # address space a candidate may add to the verifier's runtime
VERIFY_TIMEOUT_S = 20.0  # under half of WatchdogSec=60s: the runner's loop waits on it

EventSink = Callable[[str, dict[str, Any]], None]


def model_ref(manifest: Manifest) -> dict[str, str]:
    """What health, ``/healthz`` and events say about a model."""
    return {
        "version": manifest.version,
        "sha256": manifest.sha256,
        "quantization": manifest.quantization,
    }


class ModelSlots:
    """Owns ``root`` and the serving :class:`Predictor`; ``current()`` is a lock-free read."""

    def __init__(
        self,
        root: Path,
        *,
        num_threads: int = 1,
        latency_bound_ms: float = 50.0,
        verify_memory_mb: float = VERIFY_MEMORY_MB,
        verify_timeout_s: float = VERIFY_TIMEOUT_S,
        on_event: EventSink | None = None,
    ) -> None:
        for key, value in (
            ("verify_memory_mb", verify_memory_mb),
            ("verify_timeout_s", verify_timeout_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(key, value, "a positive number")
        self.root = Path(root)
        self.num_threads = num_threads
        self.latency_bound_ms = latency_bound_ms
        self.verify_memory_mb = float(verify_memory_mb)
        self.verify_timeout_s = float(verify_timeout_s)
        self._on_event = on_event
        self._lock = threading.Lock()  # one load/install at a time
        self._predictor: Predictor | None = None
        self._slot: str | None = None
        self._loaded_at: float | None = None
        self._swaps = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._step_hook: Callable[[str], None] | None = None  # tests: kill the process here

    # -- reading -------------------------------------------------------------------------------

    def current(self) -> Predictor | None:
        return self._predictor

    def info(self) -> dict[str, Any]:
        predictor = self._predictor
        return {
            "root": str(self.root),
            "slot": self._slot,
            "model": None if predictor is None else model_ref(predictor.manifest),
            "loaded_at": self._loaded_at,
            "swaps": self._swaps,
            "rejected": self._rejected,
            "last_error": self._last_error,
        }

    # -- startup -------------------------------------------------------------------------------

    def load(self) -> Predictor | None:
        """Serve the active slot, else the other one ("rollback"), else nothing. Never raises."""
        with self._lock:
            self._cleanup()
            self._forget_verifying_if_gone()
            named = self._read_active()
            order = [named, _other(named)] if named else list(SLOTS)
            reasons: dict[str, str] = {}
            for slot in order:
                try:
                    predictor = Predictor.load(self.root / slot, num_threads=self.num_threads)
                except Exception as exc:  # a bad model on disk must not stop the agent
                    reasons[slot] = _reason(exc)
                    if (self.root / slot).exists():
                        self._last_error = f"{slot}: {reasons[slot]}"
                        logger.warning("model slot %s cannot serve: %s", slot, reasons[slot])
                        self._event("model_load_failed", {"slot": slot, "reason": reasons[slot]})
                    continue
                if slot != named:
                    self._repoint(slot, named, reasons.get(named or "", ""))
                self._serve(predictor, slot)
                self._event("model_loaded", {**model_ref(predictor.manifest), "slot": slot})
                logger.info("serving model %s from %s", predictor.manifest.version, slot)
                return predictor
            self._predictor, self._slot = None, None
            logger.warning("no model to serve in %s; predictions answer 503", self.root)
            self._event("no_model", {"root": str(self.root)})
            return None

    # -- installing ----------------------------------------------------------------------------

    def install(self, candidate: Path) -> Manifest:
        """Verify ``candidate`` (a bundle dir) and make it the serving model, or raise.

        Raises :class:`ModelSlotError` when the candidate is refused; the serving model is then
        unchanged.
        """
        with self._lock:
            try:
                predictor, target = self._stage_and_swap(Path(candidate))
            except Exception as exc:  # whatever the candidate does, the old model keeps serving
                reason = _reason(exc)
                self._rejected += 1
                self._last_error = f"{candidate}: {reason}"
                logger.warning("model candidate %s refused: %s", candidate, reason)
                self._event("model_rejected", {"candidate": str(candidate), "reason": reason})
                shutil.rmtree(self.root / INCOMING_DIR, ignore_errors=True)
                (self.root / VERIFYING_FILE).unlink(missing_ok=True)
                raise ModelSlotError(f"model candidate {candidate} refused: {reason}") from exc
            previous = self._predictor
            self._serve(predictor, target)
            self._swaps += 1
        manifest = predictor.manifest
        if previous is not None:
            _log_schema_change(previous.manifest, manifest)
        logger.info("model %s now serving from %s", manifest.version, target)
        self._event("model_swapped", {**model_ref(manifest), "slot": target})
        return manifest

    def _stage_and_swap(self, candidate: Path) -> tuple[Predictor, str]:
        manifest = Manifest.load(candidate / MANIFEST_FILE)
        if Path(manifest.file).name != manifest.file or manifest.file in ("", ".", ".."):
            raise ModelSlotError(
                f"{candidate}: expected a plain file name in the manifest's file.name. "
                f"Received: {manifest.file!r}"
            )
        if not (candidate / manifest.file).is_file():
            raise ModelMissingError(
                f"{candidate / manifest.file}: expected the model file named in the manifest. "
                "It does not exist."
            )
        self._refuse_if_it_killed_us(candidate, manifest)
        staging = self.root / INCOMING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._step("staging")
        _copy_synced(candidate / manifest.file, staging / manifest.file)
        self._step("copied_model")
        _copy_synced(candidate / MANIFEST_FILE, staging / MANIFEST_FILE)
        fsync_dir(staging)
        self._step("staged")

        self._mark_verifying(candidate, manifest)
        self._step("verifying")
        verify_in_child(
            staging,
            num_threads=self.num_threads,
            latency_bound_ms=self.latency_bound_ms,
            memory_mb=self.verify_memory_mb,
            timeout_s=self.verify_timeout_s,
        )
        predictor = Predictor.load(staging, num_threads=self.num_threads)  # as the child did
        (self.root / VERIFYING_FILE).unlink(missing_ok=True)
        self._step("verified")

        target = _other(self._slot or self._read_active())  # slot-a when there is none
        slot_dir = self.root / target
        shutil.rmtree(slot_dir, ignore_errors=True)
        fsync_dir(self.root)
        self._step("cleared")
        os.rename(staging, slot_dir)
        fsync_dir(self.root)
        self._step("renamed")
        write_atomic(self.root / ACTIVE_FILE, f"{target}\n".encode())
        self._step("activated")
        predictor.path = slot_dir
        return predictor, target

    # -- a verification the process did not survive ----------------------------------------------

    def _mark_verifying(self, candidate: Path, manifest: Manifest) -> None:
        record = {
            "candidate": str(candidate.absolute()),
            "sha256": manifest.sha256,
            "since": time.time(),
        }
        write_atomic(self.root / VERIFYING_FILE, json.dumps(record).encode())

    def _read_verifying(self) -> dict[str, Any] | None:
        try:
            record = json.loads((self.root / VERIFYING_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.root / VERIFYING_FILE, exc)
            return None
        return record if isinstance(record, dict) else None

    def _refuse_if_it_killed_us(self, candidate: Path, manifest: Manifest) -> None:
        record = self._read_verifying()  # installs hold the lock: this is a dead process's
        if record is None or record.get("candidate") != str(candidate.absolute()):
            return
        if record.get("sha256") != manifest.sha256:
            return
        since = record.get("since")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
            if isinstance(since, float)
            else "?"
        )
        raise ModelSlotError(
            f"the agent stopped while verifying this candidate (since {when}), probably killed "
            "out of memory; not trying it again"
        )

    def _forget_verifying_if_gone(self) -> None:
        record = self._read_verifying()
        candidate = Path(str(record.get("candidate") or "")) if record else None
        if candidate is not None and candidate.is_absolute() and candidate.exists():
            logger.warning(
                "the agent stopped while verifying %s; it will be refused, not retried", candidate
            )
            return
        (self.root / VERIFYING_FILE).unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------------------

    def _serve(self, predictor: Predictor, slot: str) -> None:
        self._predictor, self._slot = predictor, slot
        self._loaded_at = time.time()

    def _read_active(self) -> str | None:
        try:
            name = (self.root / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read %s: %s", self.root / ACTIVE_FILE, exc)
            return None
        if name not in SLOTS:
            logger.warning("%s names %r; expected one of %s", ACTIVE_FILE, name, SLOTS)
            return None
        return name

    def _repoint(self, slot: str, named: str | None, reason: str) -> None:
        try:
            write_atomic(self.root / ACTIVE_FILE, f"{slot}\n".encode())
        except OSError as exc:
            logger.warning("cannot point %s at %s: %s", ACTIVE_FILE, slot, exc)
        if named is not None:
            logger.warning("rolled back from %s to %s", named, slot)
            self._event("rollback", {"from": named, "to": slot, "reason": reason})

    def _cleanup(self) -> None:
        shutil.rmtree(self.root / INCOMING_DIR, ignore_errors=True)
        for tmp in self.root.glob(f".{ACTIVE_FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)

    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(name, payload)
        except Exception:
            logger.exception("model event handler failed for %s", name)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ModelError | ModelSlotError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _other(slot: str | None) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def _copy_synced(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _log_schema_change(old: Manifest, new: Manifest) -> None:
    changes = [
        f"{what}: {a!r} -> {b!r}"
        for what, a, b in (
            ("task", old.task.value, new.task.value),
            ("input shape", old.input.shape, new.input.shape),
            ("features", old.input.feature_names, new.input.feature_names),
            ("labels", old.labels, new.labels),
            ("outputs", old.outputs, new.outputs),
        )
        if a != b
    ]
    if changes:
        logger.warning("the new model changes its schema: %s", "; ".join(changes))
