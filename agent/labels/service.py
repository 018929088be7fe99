"""Labels from the field: checked against the serving model, stored on the prediction log and
on the reading the prediction was computed from, and live metrics per model version.

    labels = LabelService(settings, store, model=current_manifest, on_event=runner_event)
    labels.start()
    labels.submit(body)                  # POST /api/labels; LabelError when refused
    reporter.subscribe(settings.mqtt_topic, labels.on_mqtt)
    labels.live_models(manifest)         # health's ``models`` section
    labels.close()

Where a label goes (all or nothing per request: every item is checked and resolved before
anything is written):

* the prediction log entry (``prediction_id`` form), or every successful prediction computed
  from the matched reading (``timestamp`` form); these feed accuracy / MAE in health;
* the stored reading, so the trainer learns from it: the reading a ``/api/predict/latest``
  prediction was computed from (``prediction_id`` form; predictions on a request body have no
  stored reading, their labels stay on the log) or the newest reading at or before
  ``timestamp`` within ``[labels] match_tolerance_s``. Classification sets the reading's label
  (``store.dataset(labels=True)``); regression adds the value under the output's name (the
  trainer's regression target); a forecast's target is the next reading itself, so its labels
  stay on the log.

Labels never leave the board: health carries counts, accuracy and MAE; a refused MQTT label is
reported as an ``event`` (``label_refused``) with the field and a reason token, not the value.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import AgentError
from agent.health.schema import LiveModel
from agent.labels.bucket import TokenBucket
from agent.labels.live import live_model
from agent.labels.log import PredictionLog
from agent.labels.logdb import Entry, LabelWrite
from agent.labels.requests import (
    MAX_BATCH,
    Checked,
    LabelError,
    LabelItem,
    check_label,
    cost,
    output_names,
    parse_items,
    parse_json,
)
from agent.labels.settings import LabelSettings
from agent.store.base import SampleLabel, Store
from agent.store.memory import MemoryStore
from models.manifest import Manifest
from models.spec import Task

logger = logging.getLogger(__name__)

MQTT_QUEUE = 64
EVENT_GAP_S = 60.0
CACHE_S = 5.0

Event = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Labelled:
    """What one label reached: the predictions (ids) and the stored reading (its ts)."""

    prediction_ids: tuple[str, ...]
    sample_ts: float | None

    def to_json(self) -> dict[str, Any]:
        return {"prediction_ids": list(self.prediction_ids), "sample_ts": self.sample_ts}


def open_log(settings: LabelSettings, store: Store | None, *, skip_ids: int = 0) -> PredictionLog:
    """The prediction log beside ``store``: ``settings.path``, or memory with a memory store."""
    path = None if store is None or isinstance(store, MemoryStore) else settings.path
    return PredictionLog(
        path,
        max_predictions=settings.max_predictions,
        max_age_s=settings.max_age_s,
        skip_ids=skip_ids,
    )


class LabelService:
    def __init__(
        self,
        settings: LabelSettings,
        store: Store | None,
        *,
        model: Callable[[], Manifest | None],
        log: PredictionLog | None = None,
        on_event: Event | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        cache_s: float = CACHE_S,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log if log is not None else open_log(settings, store)
        self._model = model
        self._on_event = on_event
        self._monotonic = monotonic
        self._cache_s = cache_s
        self.bucket = TokenBucket(settings.max_per_minute, clock=monotonic)
        self.max_batch = min(MAX_BATCH, settings.max_per_minute)
        self._lock = threading.Lock()  # one label request resolves and writes at a time
        self._inbox: queue.Queue[bytes | None] = queue.Queue(MQTT_QUEUE)
        self._worker: threading.Thread | None = None
        self._cache: tuple[str | None, int, float, tuple[LiveModel, ...]] | None = None
        self._serving: str | None = None
        self._last_event = -math.inf
        self._suppressed = 0
        self.refused_mqtt = 0

    def update(self, settings: LabelSettings) -> None:
        """Take what can change while running (a remote configuration change): the rate limit
        and the timestamp tolerance. The log's file, bounds and the MQTT topic need a restart."""
        with self._lock:
            if settings.max_per_minute != self.settings.max_per_minute:
                self.bucket = TokenBucket(settings.max_per_minute, clock=self._monotonic)
                self.max_batch = min(MAX_BATCH, settings.max_per_minute)
            self.settings = dataclasses.replace(
                self.settings,
                max_per_minute=settings.max_per_minute,
                match_tolerance_s=settings.match_tolerance_s,
            )

    def start(self) -> None:
        self.log.start()
        if self.settings.mqtt_topic is not None and self._worker is None:
            self._worker = threading.Thread(target=self._drain, name="label-intake", daemon=True)
            self._worker.start()

    def close(self) -> None:
        """Stop the MQTT intake (labels queued are handled first) and close the log."""
        if self._worker is not None:
            self._inbox.put(None)
            self._worker.join(10.0)
            self._worker = None
        self.log.close()

    # -- labels -------------------------------------------------------------------------------

    def submit(self, body: bytes) -> list[Labelled]:
        """Check and store the labels in ``body``; ``LabelError`` refuses the whole body and
        changes nothing stored."""
        try:
            payload = parse_json(body)
        except LabelError:
            self._admit(1)  # a flood of garbage is limited too
            raise
        self._admit(cost(payload, self.max_batch))
        items = parse_items(payload, self.max_batch)
        manifest = self._model()
        if manifest is None:
            raise LabelError(
                503,
                "model",
                "expected a serving model to check labels against. Received: none",
                "no_model",
            )
        checked = [check_label(item, manifest) for item in items]
        with self._lock:
            try:
                return self._store(items, checked, manifest)
            except AgentError as exc:
                if isinstance(exc, LabelError):
                    raise
                logger.warning("labels: storing failed: %s", exc)
                raise LabelError(
                    503,
                    "store",
                    f"expected the labels to be stored. Received: {exc}",
                    "unavailable",
                ) from exc

    def _admit(self, n: int) -> None:
        """Take ``n`` tokens from the rate limit, or refuse with 429 and ``Retry-After``."""
        wait = self.bucket.take(n)
        if wait > 0:
            retry = TokenBucket.retry_after(wait)
            raise LabelError(
                429,
                "labels",
                f"expected at most {self.settings.max_per_minute} labels a minute "
                f"([labels] max_per_minute). Received: more; retry in {retry} s",
                "rate_limited",
                retry_after_s=retry,
            )

    def _store(
        self, items: list[LabelItem], checked: list[Checked], manifest: Manifest
    ) -> list[Labelled]:
        log, tolerance = self.log, self.settings.match_tolerance_s
        # 1. resolve every item (404 before anything is written)
        seqs = [None if i.prediction_id is None else log.seq_of(i.prediction_id) for i in items]
        found = log.entries([s for s in seqs if s is not None])
        stamps = [i.timestamp for i in items if i.timestamp is not None]
        matched: list[float | None] = []
        if stamps:
            if self.store is None:
                raise LabelError(
                    404,
                    f"{_first_timestamp(items)}timestamp",
                    "expected a local store to find the reading in. Received: none",
                    "no_reading",
                )
            matched = self.store.match_samples(stamps, tolerance_s=tolerance)
        targets: list[tuple[list[Entry], float | None]] = []
        stamp_index = 0
        for item, seq in zip(items, seqs, strict=True):
            if item.prediction_id is not None:
                entry = None if seq is None else found.get(seq)
                if entry is None:
                    raise LabelError(
                        404,
                        f"{item.where}prediction_id",
                        "expected the id of a prediction this agent served (the log keeps "
                        f"{log.max_predictions} at most). Received: an unknown id",
                        "unknown_prediction",
                    )
                targets.append(([entry], entry.sample_ts))
                continue
            at = matched[stamp_index]
            stamp_index += 1
            if at is None:
                raise LabelError(
                    404,
                    f"{item.where}timestamp",
                    f"expected a stored reading at most {tolerance:g} s before the timestamp "
                    "([labels] match_tolerance_s). Received: none that close",
                    "no_reading",
                )
            targets.append(([], at))
        # a reading a logged prediction read may have gone since (store retention)
        read = [at for entries, at in targets if entries and at is not None]
        if read and self.store is not None:
            kept = {t for t in self.store.match_samples(read, tolerance_s=0.0) if t is not None}
            targets = [(e, at if not e or at in kept else None) for e, at in targets]
        elif read:
            targets = [(e, at if not e else None) for e, at in targets]
        by_sample = log.from_samples(
            [at for entries, at in targets if not entries and at is not None]
        )
        # 2. write: the readings first (what training needs), then the log
        sample_labels: list[SampleLabel] = []
        writes: list[LabelWrite] = []
        results: list[Labelled] = []
        for (entries, at), label in zip(targets, checked, strict=True):
            if not entries and at is not None:
                entries = by_sample.get(at, [])
            writes.extend(_write(entry, label) for entry in entries)
            sample = None if at is None else _sample_label(at, label, manifest)
            if sample is not None:
                sample_labels.append(sample)
            results.append(Labelled(tuple(log.id_of(e.seq) for e in entries), at))
        if sample_labels and self.store is not None:
            self.store.label_samples(sample_labels)
        log.set_labels(writes)
        return results

    # -- MQTT -----------------------------------------------------------------------------------

    def on_mqtt(self, topic: str, payload: bytes) -> None:
        """``HealthReporter.subscribe`` handler: runs on paho's network thread, so it only
        queues the payload for the intake thread (a full queue refuses it)."""
        try:
            self._inbox.put_nowait(bytes(payload))
        except queue.Full:
            self._refused(LabelError(429, "labels", "the label queue is full", "queue_full"))

    def _drain(self) -> None:
        while True:
            body = self._inbox.get()
            if body is None:
                return
            try:
                self.submit(body)
            except LabelError as exc:
                self._refused(exc)
            except Exception:  # a bug must not stop the intake
                logger.exception("labels: an MQTT label failed")

    def _refused(self, exc: LabelError) -> None:
        """Log every refusal; report one ``label_refused`` event a minute at most."""
        self.refused_mqtt += 1
        logger.warning("labels: MQTT label refused (%d): %s", exc.status, exc.detail)
        now = self._monotonic()
        if now - self._last_event < EVENT_GAP_S:
            self._suppressed += 1
            return
        self._last_event = now
        data = {
            "field": exc.field,
            "reason": exc.reason,
            "status": exc.status,
            "source": "mqtt",
            "suppressed": self._suppressed,
        }
        self._suppressed = 0
        if self._on_event is not None:
            try:
                self._on_event("label_refused", data)
            except Exception:
                logger.exception("labels: reporting a refusal failed")

    # -- live metrics -------------------------------------------------------------------------

    def begin_period(self, version: str) -> None:
        """A model was just installed: its live figures restart from zero (a version rolled
        back and installed again must not carry the figures it was judged on)."""
        try:
            if self.log.begin_period(version):
                logger.info("labels: %s serves again; its earlier figures are archived", version)
        except AgentError as exc:  # the log is unusable: health drops its models section
            logger.warning("labels: cannot start a serving period for %s: %s", version, exc)
        self._serving = version
        self._cache = None

    def live_models(self, manifest: Manifest | None) -> tuple[LiveModel, ...]:
        """The serving version's live metrics, then the previous version's (if it has
        predictions). Recomputed at most every ``cache_s`` while the log changes."""
        serving = None if manifest is None else manifest.version
        now = self._monotonic()
        self.log.flush()  # so the generation counts every prediction served so far
        cached = self._cache
        if cached is not None and cached[0] == serving:
            fresh = cached[1] == self.log.generation or now - cached[2] < self._cache_s
            if fresh:
                return cached[3]
        if serving is not None and serving != self._serving:
            self.log.note_serving(serving)
            self._serving = serving
        models: list[LiveModel] = []
        current = None if serving is None else self.log.summary(serving)
        before = self.log.previous(serving)
        previous = None if before is None else self.log.summary(before)
        if current is not None:
            models.append(live_model(current, previous))
        if previous is not None:
            models.append(live_model(previous))
        result = tuple(models)
        self._cache = (serving, self.log.generation, now, result)
        return result


def _first_timestamp(items: list[LabelItem]) -> str:
    return next(i.where for i in items if i.timestamp is not None)


def _write(entry: Entry, label: Checked) -> LabelWrite:
    """The label of one log entry, with its correctness (class) or absolute error (values)."""
    correct = None
    error = None
    if label.cls is not None:
        correct = int(entry.output == label.cls) if entry.output is not None else None
    elif label.values is not None and entry.output_values is not None:
        error = _mean_abs_error(entry.output_values, label.values)
    return LabelWrite(entry.seq, label.text(), correct, error)


def _mean_abs_error(predicted: str, actual: tuple[float, ...]) -> float | None:
    try:
        values = json.loads(predicted)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != len(actual):
        return None
    return sum(abs(float(p) - a) for p, a in zip(values, actual, strict=True)) / len(actual)


def _sample_label(ts: float, label: Checked, manifest: Manifest) -> SampleLabel | None:
    """What the stored reading gets: the class, or regression targets by output name."""
    if label.cls is not None:
        return SampleLabel(ts, label=label.cls)
    if manifest.task is Task.REGRESS and label.values is not None:
        inputs = set(manifest.input.feature_names)
        values: Mapping[str, float] = {
            name: value
            for name, value in zip(output_names(manifest), label.values, strict=True)
            if name not in inputs  # never overwrite a reading
        }
        return SampleLabel(ts, values=values) if values else None
    return None
