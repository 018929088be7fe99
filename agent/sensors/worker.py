"""One daemon thread per driver, so a ``read()`` that hangs blocks only its own driver.

A hung read keeps its thread; :meth:`ReadWorker.submit` then refuses new work (returns None)
instead of piling up threads, and the daemon thread never holds up interpreter exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from agent.sensors.base import SensorDriver
from agent.types import Reading

logger = logging.getLogger(__name__)


class ReadWorker:
    """Runs ``driver.read()`` on request in its own thread, handing back a Future."""

    def __init__(self, driver: SensorDriver) -> None:
        self._driver = driver
        self._requests: queue.SimpleQueue[Future[list[Reading]] | None] = queue.SimpleQueue()
        self._current: Future[list[Reading]] | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True while a submitted read has not finished (a hung read stays busy)."""
        return self._current is not None and not self._current.done()

    def submit(self) -> Future[list[Reading]] | None:
        """Start a read; None if the previous one is still running."""
        if self.busy:
            return None
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"sensor-{self._driver.name}", daemon=True
            )
            self._thread.start()
        future: Future[list[Reading]] = Future()
        self._current = future
        self._requests.put(future)
        return future

    def stop(self) -> None:
        """Let the thread end after its current read (returns at once)."""
        if self._thread is not None:
            self._requests.put(None)

    def _run(self) -> None:
        while (future := self._requests.get()) is not None:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._driver.read())
            except BaseException as exc:  # handed to the sampler, which records it
                future.set_exception(exc)
