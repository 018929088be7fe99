"""The reporter's persistent counters: the MQTT ``session`` and the health ``seq``.

Kept in one small JSON file next to the outbox. ``session`` is written once per successful
connect. ``seq`` is reserved in blocks (one write per ``SEQ_BLOCK`` messages), so after a crash
or restart numbering resumes above anything already sent: ``seq`` only ever increases.
A missing or unreadable file starts from zero; a write failure is logged and counting goes on
in memory (health must never stop the agent).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

SEQ_BLOCK: Final = 1000


class ReporterState:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._session = 0
        self._seq = 0
        self._reserved = 0
        self._load()
        self._seq = self._reserved  # resume above any seq a previous run may have used

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._session = max(0, int(data["session"]))
            self._reserved = max(0, int(data["seq_reserved"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("health state %s unreadable (%s); counting from zero", self.path, exc)

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"session": self._session, "seq_reserved": self._reserved}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot write health state %s: %s", self.path, exc)

    @property
    def session(self) -> int:
        """The session of the last successful connect (0 before the first)."""
        with self._lock:
            return self._session

    def commit_session(self, session: int) -> None:
        with self._lock:
            self._session = max(self._session, session)
            self._save()

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            if self._seq > self._reserved:
                self._reserved = self._seq + SEQ_BLOCK - 1
                self._save()
            return self._seq
