"""The suite's one bounded poll: ``wait_until(condition, timeout, what)``.

Tests wait on real processes, brokers and sockets, whose progress they can only observe; this
polls such an observation until it is truthy and fails the test, naming what it waited for,
when ``timeout`` passes first. Waits on something that can signal (an event, a condition, a
socket read with a timeout) should use that signal instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    timeout: float = 10.0,
    what: str = "the condition",
    every: float = 0.02,
) -> T:
    """Return the first truthy value of ``condition()``; ``AssertionError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: a sleep that a debugger can see through
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        pause.wait(every)
